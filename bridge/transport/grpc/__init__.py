"""``grpc://HOST:PORT[,HOST:PORT...]`` and ``grpcs://...`` (TLS): the gRPC wire (docs/grpc.md).

Server side: one gRPC server per set of bound addresses in the process
(:class:`~bridge.transport.grpc.sync_server.SyncGrpcServer`, or
:class:`~bridge.transport.grpc.aio_server.AioGrpcServer`: ``server_flavour``), shared
by every listener on those addresses. Requests are routed by target (exchange, topic,
server; a fanout cast reaches every local listener of the topic) through a
:class:`~bridge.transport.shared_server.Router`; what no local listener serves goes
to the handler given to :meth:`GrpcDriver.serve_unrouted`, else NOT_FOUND. Each
request becomes a :class:`~bridge.transport.grpc.incoming.GrpcIncoming` handed to
the listener's server; ``reply()`` hands the encoded answer back to the gRPC handler
waiting for it.

Client side: one channel per transport (:class:`~bridge.transport.grpc.client.GrpcClient`),
reused by every call and cast.

The modules: ``addresses`` (host/port pairs, channel targets), ``options``,
``incoming``, ``decoding`` (the decode budget), ``streams``
(CallStream calls), ``server`` (the shared server) with its flavours ``sync_server``
and ``aio_server``, ``listener``, ``client``, ``status`` (failures <-> statuses) and
``values`` (Python values <-> ``bridge.v1.Value``). Routing to listeners and
``max_concurrent_calls`` are :mod:`bridge.transport.shared_server`'s, as on HTTP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from bridge.exceptions import InvalidTransportURL
from bridge.target import Target
from bridge.timer import MONOTONIC, Clock
from bridge.transport.base import Capabilities, Driver, Listener, UnroutedHandler
from bridge.transport.grpc.addresses import DEFAULT_PORT, Address, channel_target, hosts_of
from bridge.transport.grpc.aio_server import AioGrpcServer
from bridge.transport.grpc.client import GrpcClient
from bridge.transport.grpc.listener import GrpcListener
from bridge.transport.grpc.options import GrpcOptions, check_options
from bridge.transport.grpc.server import SERVICE_NAME, GrpcServer
from bridge.transport.grpc.sync_server import SyncGrpcServer

__all__ = ["DEFAULT_PORT", "SERVICE_NAME", "GrpcDriver", "GrpcOptions", "GrpcServer",
           "channel_target", "servers"]

LOG = logging.getLogger(__name__)

#: The server class of each ``server_flavour``.
FLAVOURS: dict[str, type[GrpcServer]] = {"sync": SyncGrpcServer, "aio": AioGrpcServer}


class SharedServers:
    """The gRPC servers of this process, by bound address: listeners of every transport
    on the same addresses share one server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._by_address: dict[Address, GrpcServer] = {}

    def all(self) -> list[GrpcServer]:
        """Every running server, once."""
        with self.lock:
            return list({id(item): item for item in self._by_address.values()}.values())

    def find(self, addresses: list[Address]) -> list[GrpcServer]:
        """The servers on any of ``addresses`` (port 0 matches none); lock held."""
        found = {id(item): item for item in (self._by_address.get(address)
                                             for address in addresses if address[1])
                 if item is not None}
        return list(found.values())

    def add(self, server: GrpcServer) -> None:
        """Register ``server`` on its bound addresses; lock held."""
        for address in server.addresses:
            self._by_address[address] = server

    def discard(self, server: GrpcServer) -> None:
        """Forget ``server``; lock held."""
        for address in server.addresses:
            if self._by_address.get(address) is server:
                del self._by_address[address]


def servers() -> list[GrpcServer]:
    """The gRPC servers running in this process (one per set of bound addresses)."""
    return GrpcDriver.shared.all()


class GrpcDriver(Driver):
    """The gRPC wire: ``grpc://HOST:PORT`` (plain) and ``grpcs://HOST:PORT`` (TLS).

    With several hosts (``grpc://h1:p1,h2:p2``) a server listens on each, and a
    client connects to the first that answers (see :func:`channel_target`).
    """

    wire = "grpc"
    implements = Capabilities(schemes=("grpc", "grpcs"), option_group="grpc",
                              options_type=GrpcOptions, unrouted=True, process_health=True,
                              health_check=True, describe=True, call_stream=True)
    #: The servers of this process, shared by every transport.
    shared = SharedServers()

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        check_options(url, self.options)
        self.scheme = url.driver_name
        #: The URL's hosts as ``(host, port)``; port 0 asks for a free port.
        self.hosts = hosts_of(url)
        #: The clock of the servers this driver starts (CallStream timeouts); a test may
        #: set a :class:`~bridge.timer.ManualClock` before the first ``listen``.
        self.clock: Clock = MONOTONIC
        self._unrouted: UnroutedHandler | None = None
        self._bound_ports: tuple[int, ...] | None = None  # the ports port 0 was given
        self.client = GrpcClient(url, self.options, self.addresses, settings,
                                 allowed_remote_exmods)

    def addresses(self) -> list[Address]:
        """The URL's hosts, with the ports that port 0 was given once bound."""
        if self._bound_ports is None:
            return list(self.hosts)
        return [(host, port) for (host, _), port in zip(self.hosts, self._bound_ports,
                                                        strict=True)]

    # -- server side ------------------------------------------------------------------------

    def listen(self, target: Target) -> Listener:
        exchange = target.exchange or self.settings.control_exchange
        key = (exchange, str(target.topic), str(target.server))
        with self.shared.lock:
            server = self._shared_server()
            listener = GrpcListener(server, key, self._release)
            server.router.add(listener)
            if self._unrouted is not None:
                server.router.fallback = self._unrouted
        return listener

    def _shared_server(self) -> GrpcServer:
        """The server on this URL's addresses, started if there is none (lock held)."""
        addresses = self.addresses()
        existing = self.shared.find(addresses)
        if existing:
            server = existing[0]
            if len(existing) > 1 or set(server.addresses) != set(addresses):
                raise InvalidTransportURL(
                    str(self.url), f"{self.url} shares addresses with the gRPC server(s) "
                    f"{', '.join(item.address for item in existing)}: transports on the "
                    "same addresses must list the same hosts")
            if server.scheme != self.scheme:
                raise InvalidTransportURL(str(self.url), f"{server.address} already serves "
                                          f"{server.scheme}://, not {self.scheme}://")
            return server
        server = FLAVOURS[self.options.server_flavour](
            self.scheme, addresses, self.options, self.settings.control_exchange, self.clock)
        self.shared.add(server)
        if any(port == 0 for _, port in self.hosts):
            self._bound_ports = tuple(port for _, port in server.addresses)
        LOG.info("gRPC server listening on %s", server.address)
        return server

    def serve_unrouted(self, handler: UnroutedHandler | None) -> None:
        """Hand requests for targets no listener serves to ``handler`` (None: NOT_FOUND)."""
        self._unrouted = handler
        with self.shared.lock:
            for server in self.shared.find(self.addresses()):
                server.router.fallback = handler

    def _release(self, listener: GrpcListener) -> None:
        """Forget ``listener``; stop its server with its last listener (unless another
        listener comes while the server lingers: see :meth:`GrpcServer.linger`)."""
        server = listener.server
        with self.shared.lock:
            remaining = server.router.remove(listener)
        if remaining:
            server.update_health()
            return
        server.update_health()
        server.linger()
        with self.shared.lock:
            if server.router.count():  # a new listener took the server on meanwhile
                server.release_held()
                return
            self.shared.discard(server)
        server.shutdown()
        LOG.info("gRPC server on %s stopped", server.address)

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """Ask the gRPC health service (grpc.health.v1) at this URL; the status name.

        See :meth:`GrpcClient.check_health` for what it raises.
        """
        return self.client.check_health(service, timeout)

    def describe(self, timeout: float = 5.0) -> dict[str, Any]:
        """What the server at this URL serves (``bridge.v1.Bridge/Describe``)."""
        return self.client.describe(timeout)

    # -- client side ------------------------------------------------------------------------

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        return self.client.send(target, ctxt, message, wait_for_reply=wait_for_reply,
                                timeout=timeout, retry=retry, at_least_once=at_least_once)

    def call_many(self, target: Target, ctxt: dict[str, Any],
                  messages: Sequence[dict[str, Any]], *, timeout: float | None,
                  ) -> Iterator[tuple[int, Any]]:
        """The calls over one ``CallStream`` (:meth:`GrpcClient.call_many`)."""
        return self.client.call_many(target, ctxt, messages, timeout=timeout)

    def cleanup(self) -> None:
        self.client.close()
