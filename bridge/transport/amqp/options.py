"""Options of the AMQP driver: oslo.messaging's ``[oslo_messaging_rabbit]`` names.

Values come from the conf group ``oslo_messaging_rabbit`` and are overridden by the
transport URL's query string. Every name oslo.messaging 18.3 accepts is accepted;
an unknown name is an :class:`InvalidTransportURL` naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import ssl
import sys
import uuid
from typing import Any

from bridge.exceptions import InvalidTransportURL
from bridge.transport.url import TransportHost, TransportURL

LOG = logging.getLogger(__name__)

GROUP = "oslo_messaging_rabbit"


def _compat(default: Any) -> Any:
    """An oslo.messaging option accepted for compatibility; it changes nothing here."""
    return dataclasses.field(default=default, metadata={"supported": False})


def _at_least(minimum: float, default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"minimum": minimum})


@dataclasses.dataclass(frozen=True)
class AmqpOptions:
    """The options of one AMQP transport: oslo.messaging 18.3's ``[oslo_messaging_rabbit]``
    names and defaults, from the conf group, overridden by the URL query
    (:func:`bridge.transport.options.parse_options`)."""

    amqp_durable_queues: bool = False
    amqp_auto_delete: bool = False
    rpc_conn_pool_size: int = _compat(30)
    conn_pool_min_size: int = _compat(2)
    conn_pool_ttl: int = _compat(1200)
    ssl: bool = False
    ssl_version: str = ""
    ssl_key_file: str = ""
    ssl_cert_file: str = ""
    ssl_ca_file: str = ""
    ssl_enforce_hostname_verification: bool = True
    ssl_enforce_fips_mode: bool = _compat(False)
    kombu_reconnect_delay: float = _at_least(0, 1.0)
    kombu_reconnect_splay: float = _at_least(0, 0.0)
    kombu_compression: str | None = dataclasses.field(
        default=None, metadata={"choices": (None, "gzip", "bz2")})
    kombu_missing_consumer_retry_timeout: float = _at_least(0, 60.0)
    kombu_failover_strategy: str = dataclasses.field(
        default="round-robin", metadata={"choices": ("round-robin", "shuffle")})
    rabbit_login_method: str = dataclasses.field(
        default="AMQPLAIN", metadata={"choices": ("PLAIN", "AMQPLAIN", "EXTERNAL",
                                                  "RABBIT-CR-DEMO")})
    rabbit_retry_interval: float = _at_least(0, 1.0)
    rabbit_retry_backoff: float = _at_least(0, 2.0)
    rabbit_interval_max: float = _at_least(0, 30.0)
    rabbit_ha_queues: bool = False
    rabbit_quorum_queue: bool = False
    rabbit_transient_quorum_queue: bool = False
    rabbit_quorum_delivery_limit: int = _at_least(0, 0)
    rabbit_quorum_max_memory_length: int = _at_least(0, 0)
    rabbit_quorum_max_memory_bytes: int = _at_least(0, 0)
    rabbit_transient_queues_ttl: int = _at_least(0, 1800)
    rabbit_qos_prefetch_count: int = _at_least(0, 0)
    heartbeat_timeout_threshold: int = _at_least(0, 60)
    heartbeat_rate: int = 3
    direct_mandatory_flag: bool = True
    enable_cancel_on_failover: bool = False
    #: rpc-bridge's own: the largest message body taken, in bytes, as sent or once
    #: decompressed (RabbitMQ 4's default ``max_message_size``).
    max_body_size: int = _at_least(1, 16 * 1024 * 1024)
    # RabbitMQ 4.x deployments (kolla-ansible, OpenStack-Ansible): stable queue names, and
    # fanout through a stream (queue_names.py, streams.py).
    use_queue_manager: bool = False
    hostname: str = socket.gethostname()
    processname: str = os.path.basename(sys.argv[0] or "python")
    rabbit_stream_fanout: bool = False
    heartbeat_in_pthread: bool = _compat(False)  # removed from oslo; still in old configs

    def __post_init__(self) -> None:
        if self.rabbit_quorum_queue and self.rabbit_ha_queues:
            raise ValueError("rabbit_quorum_queue cannot be combined with rabbit_ha_queues")
        if self.heartbeat_rate <= 0:  # as oslo.messaging reads it
            object.__setattr__(self, "heartbeat_rate", 2)
        if self.rabbit_stream_fanout and not (self.rabbit_transient_quorum_queue
                                              and self.rabbit_qos_prefetch_count > 0):
            # As oslo.messaging requires: its fanout exchange is durable only with transient
            # quorum queues, and RabbitMQ reads a stream only to a consumer with a prefetch.
            raise ValueError("rabbit_stream_fanout needs rabbit_transient_quorum_queue=true and "
                             "rabbit_qos_prefetch_count greater than 0")

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
    """One kombu connection description per host of ``url`` (docs/wire.md 1.2)."""
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
