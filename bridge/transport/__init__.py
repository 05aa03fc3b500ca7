"""Transports: ``get_transport(conf, url)`` picks a driver by the URL's scheme.

Drivers are imported only when a URL names them, so ``import bridge`` costs no
grpc or kombu connection, and no driver imports another.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from bridge.conf import Settings, load_settings
from bridge.exceptions import DriverLoadFailure, InvalidTarget, InvalidTransportURL
from bridge.target import Target
from bridge.transport.base import (
    Capabilities,
    Driver,
    IncomingMessage,
    Listener,
    UnroutedHandler,
)
from bridge.transport.url import TransportHost, TransportURL

LOG = logging.getLogger(__name__)

#: URL scheme -> "module:class" of its driver.
DRIVERS = {
    "memory": "bridge.transport.memory:MemoryDriver",
    "grpc": "bridge.transport.grpc:GrpcDriver",
    "grpcs": "bridge.transport.grpc:GrpcDriver",
    "http": "bridge.transport.http:HttpDriver",
    "https": "bridge.transport.http:HttpDriver",
    "rabbit": "bridge.transport.amqp:AmqpDriver",
    "kombu": "bridge.transport.amqp:AmqpDriver",
    "amqp": "bridge.transport.amqp:AmqpDriver",
}


class Transport:
    """A connection to one wire, shared by the servers and clients built on it.

    The layers above use only this object and the driver's declared
    :attr:`implements`; they never look behind the driver interface.
    """

    def __init__(self, driver: Driver, settings: Settings) -> None:
        self._driver = driver
        self.settings = settings
        self.url = driver.url
        self._lock = threading.Lock()
        self._closed = False

    @property
    def conf(self) -> Settings:
        return self.settings

    @property
    def driver(self) -> Driver:
        return self._driver

    @property
    def wire(self) -> str:
        return self._driver.wire

    @property
    def implements(self) -> Capabilities:
        """What the driver offers beyond the core (see :class:`Capabilities`)."""
        return self._driver.implements

    def listen(self, target: Target) -> Listener:
        """A listener for a server's ``target`` (topic and server names required)."""
        if not (target.topic and target.server):
            raise InvalidTarget("A server's target must have topic and server names specified",
                                target)
        return self._driver.listen(target)

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool = False, timeout: float | None = None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        """Send one call (``wait_for_reply``) or cast; see :meth:`Driver.send`."""
        if not target.topic:
            raise InvalidTarget("A topic is required to send", target)
        return self._driver.send(target, ctxt, message, wait_for_reply=wait_for_reply,
                                 timeout=timeout, call_monitor_timeout=call_monitor_timeout,
                                 retry=retry, at_least_once=at_least_once)

    def send_async(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
                   wait_for_reply: bool = False, timeout: float | None = None,
                   call_monitor_timeout: float | None = None, retry: int | None = None,
                   at_least_once: bool = False) -> Future:
        """:meth:`send` without blocking: a Future of the outcome (:meth:`Driver.send_async`)."""
        if not target.topic:
            future: Future = Future()
            future.set_exception(InvalidTarget("A topic is required to send", target))
            return future
        return self._driver.send_async(target, ctxt, message, wait_for_reply=wait_for_reply,
                                       timeout=timeout,
                                       call_monitor_timeout=call_monitor_timeout,
                                       retry=retry, at_least_once=at_least_once)

    def call_many(self, target: Target, ctxt: dict[str, Any],
                  messages: Sequence[dict[str, Any]], *, timeout: float | None,
                  ) -> Iterator[tuple[int, Any]]:
        """Call every message at once; ``(index, result or exception)`` in the order the
        answers come (:meth:`Driver.call_many`)."""
        if not target.topic:
            raise InvalidTarget("A topic is required to send", target)
        if target.fanout:
            raise InvalidTarget("A call cannot be used with fanout", target)
        return self._driver.call_many(target, ctxt, messages, timeout=timeout)

    def serve_unrouted(self, handler: UnroutedHandler | None) -> None:
        """Hand requests no listener serves to ``handler`` (``implements.unrouted``)."""
        self._driver.serve_unrouted(handler)

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """The health status of the server at this URL (``implements.health_check``)."""
        return self._driver.check_health(service, timeout)

    def describe(self, timeout: float = 5.0) -> dict[str, Any]:
        """What the server at this URL serves (``implements.describe``; see
        :meth:`Driver.describe`)."""
        return self._driver.describe(timeout)

    @property
    def connected(self) -> bool:
        """False while the driver's client connection is known to be lost
        (:attr:`Driver.connected`)."""
        return self._driver.connected

    def cleanup(self) -> None:
        """Release the driver's connections; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._driver.cleanup()

    def __repr__(self) -> str:
        return f"<Transport {self.url}>"


RPCTransport = Transport


def driver_class(url: str | TransportURL) -> type[Driver]:
    """The driver class a URL names (imported now); :class:`DriverLoadFailure` if none."""
    parsed = url if isinstance(url, TransportURL) else TransportURL.parse(url)
    return _load_driver_class(parsed.transport, str(parsed))


def option_groups() -> dict[str, type]:
    """Every driver's conf group and its options type (imports every driver)."""
    groups: dict[str, type] = {}
    for scheme in DRIVERS:
        implements = _load_driver_class(scheme, f"{scheme}://").implements
        if implements.option_group and implements.options_type is not None:
            groups[implements.option_group] = implements.options_type
    return groups


def _load_driver_class(scheme: str, url: str) -> type[Driver]:
    name = scheme.split("+", 1)[0]
    path = DRIVERS.get(name)
    if path is None:
        raise DriverLoadFailure(name, f"no driver for scheme {name!r} in {url!r}; known: "
                                f"{', '.join(sorted(DRIVERS))}")
    module_name, _, class_name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise DriverLoadFailure(name, exc) from exc


def get_transport(conf: Any = None, url: str | TransportURL | None = None,
                  allowed_remote_exmods: list[str] | None = None) -> Transport:
    """Build a transport from ``url``, else ``conf``'s ``transport_url``.

    ``conf`` may be an oslo.config ConfigOpts, a mapping or None; with neither a
    URL nor a configured ``transport_url``, ``BRIDGE_TRANSPORT_URL`` is read, and
    then ``memory://`` (the in-process transport) is used.
    """
    settings = load_settings(conf)
    if isinstance(url, TransportURL):
        parsed = url
    else:
        parsed = TransportURL.parse(url if url is not None else settings.transport_url)
    driver_cls = _load_driver_class(parsed.transport, str(parsed))
    driver = driver_cls(parsed, settings, list(allowed_remote_exmods or []))
    return Transport(driver, settings)


def get_rpc_transport(conf: Any = None, url: str | TransportURL | None = None,
                      allowed_remote_exmods: list[str] | None = None) -> Transport:
    """The recommended name of :func:`get_transport` for RPC."""
    return get_transport(conf, url, allowed_remote_exmods)


__all__ = ["DRIVERS", "Capabilities", "Driver", "IncomingMessage", "InvalidTransportURL",
           "Listener", "RPCTransport", "Transport", "TransportHost", "TransportURL", "driver_class",
           "get_rpc_transport", "get_transport", "option_groups"]
