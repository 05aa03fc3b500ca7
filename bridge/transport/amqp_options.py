"""Options of the AMQP driver: oslo.messaging's ``[oslo_messaging_rabbit]`` names.

Values come from the conf group ``oslo_messaging_rabbit`` and are overridden by the
transport URL's query string. Every name oslo.messaging 18.3 accepts is accepted;
an unknown name is an :class:`InvalidTransportURL` naming it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.exceptions import InvalidTransportURL
from bridge.transport.url import TransportHost, TransportURL

LOG = logging.getLogger(__name__)

GROUP = "oslo_messaging_rabbit"


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


#: name -> (converter, default, supported). Unsupported names are accepted and ignored
#: (a warning is logged when they are set to something else than their default).
OPTIONS: dict[str, tuple[Callable[[Any], Any], Any, bool]] = {
    "amqp_durable_queues": (_bool, False, True),
    "amqp_auto_delete": (_bool, False, True),
    "rpc_conn_pool_size": (int, 30, False),
    "conn_pool_min_size": (int, 2, False),
    "conn_pool_ttl": (int, 1200, False),
    "ssl": (_bool, False, True),
    "ssl_version": (str, "", True),
    "ssl_key_file": (str, "", True),
    "ssl_cert_file": (str, "", True),
    "ssl_ca_file": (str, "", True),
    "ssl_enforce_hostname_verification": (_bool, True, True),
    "ssl_enforce_fips_mode": (_bool, False, False),
    "kombu_reconnect_delay": (float, 1.0, True),
    "kombu_reconnect_splay": (float, 0.0, True),
    "kombu_compression": (_opt_str, None, True),
    "kombu_missing_consumer_retry_timeout": (float, 60.0, True),
    "kombu_failover_strategy": (str, "round-robin", True),
    "rabbit_login_method": (str, "AMQPLAIN", True),
    "rabbit_retry_interval": (float, 1.0, True),
    "rabbit_retry_backoff": (float, 2.0, True),
    "rabbit_interval_max": (float, 30.0, True),
    "rabbit_ha_queues": (_bool, False, True),
    "rabbit_quorum_queue": (_bool, False, True),
    "rabbit_transient_quorum_queue": (_bool, False, True),
    "rabbit_quorum_delivery_limit": (int, 0, True),
    "rabbit_quorum_max_memory_length": (int, 0, True),
    "rabbit_quorum_max_memory_bytes": (int, 0, True),
    "rabbit_transient_queues_ttl": (int, 1800, True),
    "rabbit_qos_prefetch_count": (int, 0, True),
    "heartbeat_timeout_threshold": (int, 60, True),
    "heartbeat_rate": (int, 3, True),
    "direct_mandatory_flag": (_bool, True, True),
    "enable_cancel_on_failover": (_bool, False, True),
    "use_queue_manager": (_bool, False, False),
    "hostname": (str, socket.gethostname(), False),
    "processname": (str, os.path.basename(sys.argv[0] or "python"), False),
    "rabbit_stream_fanout": (_bool, False, False),
    "heartbeat_in_pthread": (_bool, False, False),  # removed from oslo; still in old configs
}


@dataclass
class AmqpOptions:
    """The resolved options of one AMQP transport (see :data:`OPTIONS`)."""

    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def build(cls, conf_group: Mapping[str, Any], query: Mapping[str, str],
              url: str = "") -> AmqpOptions:
        """Conf group values, overridden by the URL query; unknown names are errors."""
        values = {name: default for name, (_, default, _) in OPTIONS.items()}
        for source, items in (("configuration", conf_group), ("URL", query)):
            for name, raw in items.items():
                if name not in OPTIONS:
                    raise InvalidTransportURL(
                        url, f"Unknown option {name!r} in the {source} of the rabbit "
                             f"transport; known options: {', '.join(sorted(OPTIONS))}")
                convert, default, supported = OPTIONS[name]
                try:
                    value = convert(raw) if raw is not None else default
                except (TypeError, ValueError) as exc:
                    raise InvalidTransportURL(
                        url, f"Invalid value {raw!r} for option {name!r}: {exc}") from None
                if not supported and value != default and source == "URL":
                    LOG.warning("Option %s is accepted for compatibility but has no effect "
                                "in rpc-bridge", name)
                values[name] = value
        if values["rabbit_quorum_queue"] and values["rabbit_ha_queues"]:
            raise InvalidTransportURL(url, "rabbit_quorum_queue cannot be combined with "
                                           "rabbit_ha_queues")
        if values["kombu_compression"] not in (None, "", "gzip", "bz2"):
            raise InvalidTransportURL(url, f"Unsupported kombu_compression "
                                           f"{values['kombu_compression']!r}: use gzip or bz2")
        if values["heartbeat_rate"] <= 0:
            values["heartbeat_rate"] = 2
        return cls(values)

    # -- queue and exchange flags (WIRE 2.2, 2.3) -------------------------------------------

    @property
    def topic_durable(self) -> bool:
        return bool(self.amqp_durable_queues or self.rabbit_quorum_queue)

    def topic_queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.rabbit_ha_queues:
            args["x-ha-policy"] = "all"
        if self.rabbit_quorum_queue:
            args.update(self._quorum_arguments())
        return args

    def transient_queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.rabbit_transient_queues_ttl > 0:
            args["x-expires"] = self.rabbit_transient_queues_ttl * 1000
        if self.rabbit_ha_queues:
            args["x-ha-policy"] = "all"
        if self.rabbit_transient_quorum_queue:
            args.update(self._quorum_arguments())
        return args

    def _quorum_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.rabbit_quorum_delivery_limit:
            args["x-delivery-limit"] = self.rabbit_quorum_delivery_limit
        if self.rabbit_quorum_max_memory_length:
            args["x-max-in-memory-length"] = self.rabbit_quorum_max_memory_length
        if self.rabbit_quorum_max_memory_bytes:
            args["x-max-in-memory-bytes"] = self.rabbit_quorum_max_memory_bytes
        return args

    def consumer_arguments(self) -> dict[str, Any] | None:
        return {"x-cancel-on-ha-failover": True} if self.enable_cancel_on_failover else None

    # -- reconnection ---------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before connection attempt ``attempt`` (1 = first retry)."""
        interval = min(self.rabbit_retry_interval + (attempt - 1) * self.rabbit_retry_backoff,
                       self.rabbit_interval_max)
        splay = random.uniform(0, self.kombu_reconnect_splay) if self.kombu_reconnect_splay else 0
        return max(0.0, interval) + splay

    # -- kombu connection parameters --------------------------------------------------------

    def ssl_params(self, hostname: str = "") -> dict[str, Any] | bool:
        """py-amqp's ``ssl`` argument for a connection to ``hostname``, as oslo.messaging's.

        The broker's certificate is always verified: against ``ssl_ca_file``, or
        without one against the system's trusted CAs (py-amqp's default, and so
        oslo.messaging's). Its host name is checked against ``hostname`` (the URL's)
        when ``ssl_ca_file`` is set and ``ssl_enforce_hostname_verification`` is on.
        """
        if not self.ssl:
            return False
        params: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
        if self.ssl_ca_file:
            params["ca_certs"] = self.ssl_ca_file
            if self.ssl_enforce_hostname_verification:
                # Named here: kombu would check 127.0.0.1 for localhost.
                params["server_hostname"] = hostname.strip("[]") or None
        if self.ssl_cert_file:
            params["certfile"] = self.ssl_cert_file
        if self.ssl_key_file:
            params["keyfile"] = self.ssl_key_file
        if self.ssl_version:
            wanted = "PROTOCOL_" + self.ssl_version.replace(".", "_").upper()
            version = next((getattr(ssl, name) for name in dir(ssl)
                            if name.upper() == wanted), None)
            if version is None:
                raise InvalidTransportURL("", f"Unknown ssl_version {self.ssl_version!r}")
            params["ssl_version"] = version
        return params


def kombu_urls(url: TransportURL) -> list[dict[str, Any]]:
    """One kombu connection description per host of ``url`` (WIRE 1.2)."""
    hosts = list(url.hosts) or [TransportHost("localhost", 5672, "guest", "guest")]
    if len(hosts) > 1 and any(h.username for h in hosts) and not all(h.username for h in hosts):
        LOG.warning("Some hosts of %s have credentials and others do not", url)
    vhost = url.virtual_host or "/"
    return [{
        "hostname": (f"[{host.hostname}]" if host.hostname and ":" in host.hostname
                     else host.hostname or "localhost"),
        "port": host.port or 5672,
        "userid": host.username if host.username is not None else "guest",
        "password": host.password if host.password is not None else "guest",
        "virtual_host": vhost,
    } for host in hosts]


def connection_name() -> str:
    """The client-provided connection name oslo.messaging uses: ``<argv0>:<pid>:<uuid>``."""
    return f"{os.path.basename(sys.argv[0] or 'python')}:{os.getpid()}:{uuid.uuid4()}"
