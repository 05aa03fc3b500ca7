"""The contract suite: one set of behaviour tests, run against every driver through the
public API only (``bridge.get_transport``, ``get_rpc_server``, ``get_rpc_client``,
``Target``, serializers, exceptions).

Every test takes the ``wire`` fixture, parametrized over:

=========  ==============================================  =====================================
id         URL                                             needs
=========  ==============================================  =====================================
memory     ``memory://contract-<uuid>``                    nothing
grpc-sync  ``grpc://127.0.0.1:0``                          nothing
grpc-aio   ``grpc://127.0.0.1:0?server_flavour=aio``       nothing
amqp       ``rabbit://guest:guest@127.0.0.1:5672/``        RabbitMQ 3.10 (``broker_available``)
amqp-4.3   ``rabbit://guest:guest@127.0.0.1:5673/``        RabbitMQ 4.3 (``broker43_available``)
=========  ==============================================  =====================================

``amqp-4.3`` runs the AMQP driver with its default options against RabbitMQ 4.3's
upstream defaults (transient non-exclusive queues refused, quorum queues by default).

Where the wires differ on purpose
---------------------------------
:data:`DIFFERENCES` states each difference by wire family (``memory``, ``grpc``,
``amqp``); a test that meets one reads ``wire.differences[behaviour]`` and checks
what that wire promises. In words:

====================  ===================================  ==================================
behaviour             memory, amqp (a broker)              grpc (the server is the address)
====================  ===================================  ==================================
unrouted              a call to a topic, server or         refused at once: NOT_FOUND,
                      exchange nobody serves times out     ``MessageDeliveryFailure``
                      (``MessagingTimeout``)
unrouted_cast         a cast (or fanout cast) to nobody    refused: ``MessageDeliveryFailure``
                      is accepted and dropped
stopped_server        a message sent while the topic's     refused: UNAVAILABLE, retried until
                      only server is stopped waits in its  the timeout; with ``retry=0``
                      queue and is served after restart    ``MessageDeliveryFailure``; never
                                                           served later
scope                 round robin and fanout reach every   round robin and fanout reach the
                      server of the topic on the broker    servers in the process at the
                                                           client's address only
client_timeout        ``ctxt["client_timeout"]`` is the    it is the seconds left before the
                      caller's ``call_monitor_timeout``    call's deadline (there is no call
                      (None without one)                   monitor)
remote_traceback      a remote failure carries its         omitted unless ``include_traceback``
                      traceback                            is set
blocking_cast         a cast returns once the message is   under the ``blocking`` executor a
                      queued, whatever the executor        cast returns once the method has
                                                           run (it runs on the thread of the
                                                           Cast RPC); other executors: queued
size_limit            no limit of its own (5 MiB crosses)  4 MiB each way
                                                           (``max_send/receive_message_length``):
                                                           ``MessageDeliveryFailure``
lone_surrogate        a str with a lone surrogate crosses  refused (protobuf strings are
                      (JSON escapes it)                    UTF-8): an argument raises
                                                           ``ValueError`` before sending, a
                                                           result ``MessageDeliveryFailure``
====================  ===================================  ==================================

With ``TransportOptions(at_least_once=True)`` every wire raises ``MessageUndeliverable``
for a call nobody serves.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import brokers
import pytest

import bridge

#: behaviour -> wire family -> what that family does (see the module docstring).
DIFFERENCES: dict[str, dict[str, str]] = {
    "unrouted": {"memory": "timeout", "amqp": "timeout", "grpc": "refused"},
    "unrouted_cast": {"memory": "dropped", "amqp": "dropped", "grpc": "refused"},
    "stopped_server": {"memory": "queued", "amqp": "queued", "grpc": "refused"},
    "scope": {"memory": "broker", "amqp": "broker", "grpc": "process"},
    "client_timeout": {"memory": "call_monitor", "amqp": "call_monitor", "grpc": "deadline"},
    "remote_traceback": {"memory": "sent", "amqp": "sent", "grpc": "omitted"},
    "blocking_cast": {"memory": "queued", "amqp": "queued", "grpc": "after_method"},
    "size_limit": {"memory": "none", "amqp": "none", "grpc": "4MiB"},
    "lone_surrogate": {"memory": "crosses", "amqp": "crosses", "grpc": "refused"},
}

#: id -> (family, URL, the fixture that makes its service available, or None).
WIRES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("memory", "memory://contract-{uuid}", None),
    "grpc-sync": ("grpc", "grpc://127.0.0.1:0", None),
    "grpc-aio": ("grpc", "grpc://127.0.0.1:0?server_flavour=aio", None),
    "amqp": ("amqp", brokers.BROKER310.url, "broker_available"),
    "amqp-4.3": ("amqp", brokers.BROKER43.url, "broker43_available"),
}
_MARKS = {"amqp": [pytest.mark.broker], "amqp-4.3": [pytest.mark.broker43]}


def unique(prefix: str) -> str:
    """A name no other test (or test run on the same broker) uses."""
    return f"contract-{prefix}-{uuid.uuid4().hex[:10]}"


class ServerStartFailed(RuntimeError):
    """A server of the wire under test did not start; the message says why."""


class Wire:
    """One wire under test, hiding how its clients find its servers.

    ``transport()`` is the servers' transport (the same one each time unless ``new``);
    ``server(...)`` builds, starts and remembers a server; ``client(...)`` builds a
    client that reaches the servers: on gRPC its transport is made from the listening
    address of a started server (port 0 gets a real port), elsewhere from the wire's URL.
    Everything made is released by :meth:`close`, and on AMQP the queues and exchange
    the servers declared are deleted.
    """

    def __init__(self, name: str) -> None:
        family, url, _ = WIRES[name]
        self.name = name
        self.family = family
        self.url = url.format(uuid=uuid.uuid4().hex)
        #: This wire's side of every difference in :data:`DIFFERENCES`.
        self.differences = {behaviour: by_family[family]
                            for behaviour, by_family in DIFFERENCES.items()}
        #: A control exchange of its own, so nothing else on a broker sees its topics.
        self.exchange = unique("exchange")
        self.conf = {"control_exchange": self.exchange}
        self._transports: list[bridge.Transport] = []
        self._main: bridge.Transport | None = None
        self._clients: dict[tuple[str, tuple[str, ...]], bridge.Transport] = {}
        self._retired: list[bridge.Transport] = []  # client transports no longer handed out
        self._servers: list[bridge.MessageHandlingServer] = []
        self._shared: set[int] = set()  # id() of the servers kept for the whole module
        self._addresses: dict[int, str] = {}  # id(server transport) -> a client URL
        self._queues: set[str] = set()
        self._exchanges: set[str] = {self.exchange}

    def __repr__(self) -> str:
        return f"<Wire {self.name}>"

    # -- servers -------------------------------------------------------------------------

    def transport(self, new: bool = False) -> bridge.Transport:
        """The servers' transport; ``new=True`` makes another (on gRPC: another port)."""
        if self._main is not None and not new:
            return self._main
        transport = bridge.get_transport(self.conf, self.url)
        self._transports.append(transport)
        if self._main is None:
            self._main = transport
        return transport

    def server(self, target: bridge.Target, endpoints: Sequence[Any],
               executor: str = "threading", transport: bridge.Transport | None = None,
               start: bool = True, shared: bool = False, **kwargs: Any,
               ) -> bridge.MessageHandlingServer:
        """A server of ``endpoints`` for ``target`` on this wire, started unless told not.

        It is stopped and waited for at the end of the test that made it, or with
        ``shared=True`` (a module-scoped fixture's) at the end of the module.
        """
        transport = transport or self.transport()
        server = bridge.get_rpc_server(transport, target, endpoints, executor=executor,
                                       **kwargs)
        self._servers.append(server)
        if shared:
            self._shared.add(id(server))
        self._queues.update({str(target.topic), f"{target.topic}.{target.server}"})
        if start:
            try:
                server.start()
            except Exception as exc:
                # One line, not the broker client's deep traceback for each test it fails
                # (formatting that dominated the run time of amqp-4.3's expected failures).
                cause = f" (caused by {exc.__cause__!r})" if exc.__cause__ else ""
                raise ServerStartFailed(f"{self.name}: {exc!r}{cause}") from None
            self._addresses.setdefault(id(transport), self._client_url(server))
        return server

    def _client_url(self, server: bridge.MessageHandlingServer) -> str:
        if self.family != "grpc":
            return self.url
        return server.addresses[0]  # grpc://127.0.0.1:<the bound port>

    # -- clients -------------------------------------------------------------------------

    def client_transport(self, via: Any = None,
                         allowed_remote_exmods: Sequence[str] = ()) -> bridge.Transport:
        """A client's transport that reaches the servers of ``via`` (a server or a server
        transport; default: the main transport), allowing ``allowed_remote_exmods``:
        the same one each time for the same arguments."""
        if isinstance(via, bridge.MessageHandlingServer):
            url = self._client_url(via)
        else:
            server_transport = via or self.transport()
            url = self._addresses.get(id(server_transport))
            if url is None:
                if self.family == "grpc":
                    raise RuntimeError("a gRPC client needs a started server to reach")
                url = self.url
        key = (url, tuple(allowed_remote_exmods))
        transport = self._clients.get(key)
        if transport is None:
            transport = bridge.get_transport(self.conf, url,
                                             allowed_remote_exmods=list(allowed_remote_exmods))
            self._clients[key] = transport
        return transport

    def client(self, target: bridge.Target, via: Any = None,
               allowed_remote_exmods: Sequence[str] = (), **kwargs: Any,
               ) -> bridge.RPCClient:
        """A client for ``target`` (see :meth:`client_transport`); ``kwargs`` are RPCClient
        options (timeout 10 s unless given, so that a broken behaviour fails instead of
        hanging)."""
        kwargs.setdefault("timeout", 10)
        if target.exchange:
            self._exchanges.add(target.exchange)
        if target.fanout:  # declared by the first fanout cast, even to nobody
            self._exchanges.add(f"{target.topic}_fanout")
        transport = self.client_transport(via, allowed_remote_exmods)
        return bridge.get_rpc_client(transport, target, **kwargs)

    # -- teardown ------------------------------------------------------------------------

    def release(self, server: bridge.MessageHandlingServer) -> None:
        """Stop and wait for ``server`` now (each is released once)."""
        with contextlib.suppress(Exception):
            server.stop()
            server.wait(30)
        if server in self._servers:
            self._servers.remove(server)

    def release_test_servers(self) -> None:
        """Release every server a test made (not the module's shared ones)."""
        released = [server for server in self._servers if id(server) not in self._shared]
        for server in released:
            self.release(server)
        if released and self.family == "grpc":
            # The next test's server gets the same port: a client that saw this one go
            # would first wait out its reconnection backoff. Later tests get new clients.
            self._retired.extend(self._clients.values())
            self._clients.clear()

    def close(self) -> None:
        for server in list(self._servers):
            self.release(server)
        for transport in [*self._clients.values(), *self._retired, *self._transports]:
            with contextlib.suppress(Exception):
                transport.cleanup()
        self._clients.clear()
        self._retired.clear()
        self._transports.clear()
        if self.family == "amqp":
            _delete_amqp(self.url, sorted(self._queues), sorted(self._exchanges))


def _delete_amqp(url: str, queues: list[str], exchanges: list[str]) -> None:
    """Remove the topic queues and the exchanges a module declared (they outlive their
    servers and clients); fanout and reply queues go with their listeners and transports."""
    import kombu

    host = bridge.TransportURL.parse(url).hosts[0]
    with contextlib.suppress(Exception), kombu.Connection(
            f"amqp://guest:guest@{host.hostname}:{host.port or 5672}//",
            connect_timeout=5) as conn:
        for name in queues:
            with contextlib.suppress(Exception):
                conn.channel().queue_delete(name)
        for name in exchanges:
            with contextlib.suppress(Exception):
                conn.channel().exchange_delete(name)


@pytest.fixture(scope="module",
                params=[pytest.param(name, id=name, marks=_MARKS.get(name, []))
                        for name in WIRES])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    """Each wire in turn, once per module: its servers are shared by the module's tests."""
    needs = WIRES[request.param][2]
    if needs is not None:
        request.getfixturevalue(needs)
    made = Wire(request.param)
    yield made
    made.close()


@pytest.fixture(autouse=True)
def _release_test_servers(wire: Wire) -> Iterator[None]:
    yield
    wire.release_test_servers()


@pytest.fixture
def topic() -> str:
    """A topic no other test uses."""
    return unique("topic")
