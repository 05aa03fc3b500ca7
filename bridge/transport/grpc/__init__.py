"""``grpc://HOST:PORT[,HOST:PORT...]`` and ``grpcs://...`` (TLS): the gRPC wire (docs/grpc.md).

Server side: one gRPC server per bound address in the process (grpc.server, or
grpc.aio on an event loop thread: ``server_flavour``), shared by every listener on
that address. Requests are routed by target (exchange, topic, server; a fanout
cast reaches every local listener of the topic) through a :class:`Router`; what
no local listener serves goes to the router's fallback hook, else NOT_FOUND.
Each request becomes a :class:`GrpcIncoming` handed to the server's
``on_incoming`` (the server's executor runs the dispatcher); ``reply()`` hands
the encoded answer back to the gRPC handler waiting for it.

A URL with several hosts makes one server listen on every address, and a client
fail over between them (see :func:`channel_target`).

Client side: one channel per transport, reused by every call and cast.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import copy
import dataclasses
import functools
import itertools
import logging
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.exceptions import (
    InvalidTarget,
    InvalidTransportURL,
    MessageDeliveryFailure,
    MessagingTimeout,
)
from bridge.stats import record_refusal
from bridge.target import Target
from bridge.timer import Timer
from bridge.transport.base import Capabilities, Driver, IncomingMessage, Listener, OnIncoming
from bridge.transport.grpc import tls_reload
from bridge.transport.grpc.credentials import COUNTED_BY_SERVER, credentials_of, refused_cast
from bridge.transport.grpc.status import (
    Rejection,
    exception_for_error,
    failure_from_exception,
    failure_from_metadata,
    status_of,
)
from bridge.transport.grpc.values import fill_map, fill_value, from_map, from_value
from bridge.values import InvalidValueError

LOG = logging.getLogger(__name__)

SERVICE_NAME = "bridge.v1.Bridge"
DEFAULT_PORT = 50051
MIB = 1024 * 1024

_CALL = f"/{SERVICE_NAME}/Call"
_CAST = f"/{SERVICE_NAME}/Cast"
_STREAM = f"/{SERVICE_NAME}/CallStream"

#: bridge_refusals_total's reason label of each Failure reason: "target_not_found"...
_REASON_LABELS = {value: name.removeprefix("REASON_").lower()
                  for name, value in pb.Failure.Reason.items()}


def _count_refusal(failure: pb.Failure) -> bool:
    """Count a request refused before any listener took it (bridge_refusals_total); False
    for a refusal of the server's admission step, which counted and logged it."""
    if failure.reason in COUNTED_BY_SERVER:
        return False
    record_refusal("grpc", _REASON_LABELS.get(failure.reason, "unspecified"))
    return True


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client_host(host: str) -> str:
    """Where a client reaches a server listening on ``host`` (a wildcard: this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def channel_target(hosts: Sequence[tuple[str, int]]) -> str:
    """The gRPC channel target that reaches the servers at ``hosts``, ``(host, port)`` pairs.

    A wildcard host (``0.0.0.0``, ``::``) means this machine. One host gives
    ``host:port``, which gRPC's DNS resolver resolves. Several give every address
    they resolve to now (``socket.getaddrinfo``, in the URL's order), as
    ``ipv4:a:p,b:p``, or ``ipv6:[a]:p,...`` with IPv4 addresses IPv4-mapped when
    some are IPv6; the channel's default ``pick_first`` policy then connects to the
    first address that accepts, and to the next when that connection fails. A host
    that does not resolve is skipped; :class:`OSError` when none does.
    """
    hosts = [(_client_host(host), port) for host, port in hosts]
    if len(hosts) == 1:
        return _host_port(*hosts[0])
    addresses: list[tuple[int, str, int]] = []
    failures = []
    for host, port in hosts:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            LOG.warning("gRPC host %s does not resolve, skipped: %s", host, exc)
            failures.append(f"{host}: {exc}")
            continue
        for family, _, _, _, sockaddr in infos:
            address = (family, str(sockaddr[0]), int(sockaddr[1]))
            if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
                addresses.append(address)
    if not addresses:
        raise OSError(f"none of the gRPC hosts resolve ({'; '.join(failures)})")
    if all(family == socket.AF_INET for family, _, _ in addresses):
        return "ipv4:" + ",".join(f"{ip}:{port}" for _, ip, port in addresses)
    return "ipv6:" + ",".join(f"[{ip}]:{port}" if family == socket.AF_INET6
                              else f"[::ffff:{ip}]:{port}" for family, ip, port in addresses)


# -- options -------------------------------------------------------------------------------

def _at_least_0(default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"minimum": 0})


@dataclasses.dataclass(frozen=True)
class GrpcOptions:
    """Options of the gRPC driver: the ``[grpc]`` conf group, overridden by the URL query."""

    #: Largest request (server) or reply (client) accepted, in bytes.
    max_receive_message_length: int = _at_least_0(4 * MIB)
    #: Largest message sent, in bytes.
    max_send_message_length: int = _at_least_0(4 * MIB)
    #: Calls a server address runs at once; more get RESOURCE_EXHAUSTED (0: no limit).
    max_concurrent_calls: int = _at_least_0(0)
    #: Interval of HTTP/2 keepalive pings this side sends, in ms.
    keepalive_time_ms: int = _at_least_0(30_000)
    #: How long a keepalive ping may go unanswered before the connection is closed, in ms.
    keepalive_timeout_ms: int = _at_least_0(20_000)
    #: Shortest interval between client pings a server tolerates, in ms.
    min_ping_interval_ms: int = _at_least_0(5_000)
    #: Send formatted tracebacks of endpoint failures to callers.
    include_traceback: bool = False
    #: The grpcio server: ``sync`` (grpc.server) or ``aio`` (grpc.aio); see docs/performance.md.
    server_flavour: str = dataclasses.field(default="sync",
                                            metadata={"choices": ("sync", "aio")})
    #: Seconds a server waits for replies in flight when its last listener is released.
    shutdown_grace: float = _at_least_0(5.0)
    #: Serve grpc.reflection.v1alpha (and v1) server reflection.
    reflection: bool = True
    #: PEM certificate chain: the server's, or the client's for mutual TLS.
    tls_cert_file: str = ""
    #: PEM private key of ``tls_cert_file``.
    tls_key_file: str = ""
    #: PEM CA bundle: clients verify the server with it (system roots when empty);
    #: servers verify client certificates with it.
    tls_ca_file: str = ""
    #: Servers require a client certificate signed by ``tls_ca_file`` (mutual TLS).
    tls_client_auth: bool = False
    #: Clients expect this name in the server certificate instead of the URL's host.
    tls_server_name: str = ""


def check_options(url: Any, options: GrpcOptions) -> None:
    """Refuse options that do not go together, naming them."""
    tls_set = [name for name in ("tls_cert_file", "tls_key_file", "tls_ca_file")
               if getattr(options, name)] + (["tls_client_auth"] if options.tls_client_auth
                                             else [])
    if url.driver_name == "grpc" and tls_set:
        raise InvalidTransportURL(str(url), f"{', '.join(tls_set)} need a grpcs:// URL, "
                                  f"not {url}")
    if bool(options.tls_cert_file) != bool(options.tls_key_file):
        raise InvalidTransportURL(str(url), "tls_cert_file and tls_key_file go together")
    if options.tls_client_auth and not options.tls_ca_file:
        raise InvalidTransportURL(str(url), "tls_client_auth needs tls_ca_file (the CA that "
                                  "signs client certificates)")


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# -- incoming messages ---------------------------------------------------------------------

class GrpcIncoming(IncomingMessage):
    """A Call, Cast or CallStream request taken from a gRPC server.

    ``ctxt["client_timeout"]`` is the seconds left before the gRPC deadline when
    the request arrived (None without a deadline); ``deadline`` is that instant.
    There is no call monitor on gRPC: ``client_timeout`` (the attribute) is None.
    """

    wire = "grpc"

    def __init__(self, ctxt: dict[str, Any], message: dict[str, Any],
                 deadline: float | None, remaining: float | None,
                 answer: Callable[[Any], None] | None, make_reply: Callable[[Any], bytes],
                 include_traceback: bool, max_send: int) -> None:
        ctxt["client_timeout"] = remaining
        self.ctxt = ctxt
        self.message = message
        self.deadline = deadline
        self.wants_reply = answer is not None
        self._answer = answer
        self._make_reply = make_reply
        self._include_traceback = include_traceback
        self._max_send = max_send

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if self._answer is None:
            return
        outcome: Any
        if failure is None:
            try:
                outcome = self._make_reply(result)
            except Exception as exc:  # a result no Value can hold
                failure = exc
            else:
                if len(outcome) > self._max_send:
                    outcome = Rejection(
                        pb.Failure.REASON_RESOURCE_EXHAUSTED,
                        f"the reply of {self.method!r} is {len(outcome)} bytes, over "
                        f"max_send_message_length ({self._max_send})",
                        "max_send_message_length", self._max_send).failure
        if failure is not None:
            try:
                outcome = failure_from_exception(failure, self._include_traceback,
                                                 self.failure_expected)
            except Exception as exc:
                LOG.error("Could not encode the failure of %s: %s", self.method, exc)
                outcome = Rejection(pb.Failure.REASON_ENDPOINT_ERROR, str(failure)).failure
        answer, self._answer = self._answer, None
        answer(outcome)

    def copy_for_fanout(self) -> GrpcIncoming:
        """A copy of this cast for one more listener (each dispatcher gets its own dicts)."""
        twin = GrpcIncoming(copy.deepcopy(self.ctxt), copy.deepcopy(self.message),
                            self.deadline, self.ctxt.get("client_timeout"), None,
                            self._make_reply, self._include_traceback, self._max_send)
        twin.credentials = self.credentials
        return twin


def _call_reply(result: Any) -> bytes:
    response = pb.CallResponse()
    fill_value(response.result, result, "the result")
    return response.SerializeToString()


# -- routing -------------------------------------------------------------------------------

#: A fallback for targets no local listener serves: given the request's target,
#: return a callable that takes the IncomingMessage (it must answer it with
#: reply()), or None for NOT_FOUND. The seam for a gateway that forwards
#: unrouted requests over another wire.
Fallback = Callable[[Target], "OnIncoming | None"]


class Router:
    """Which local listener serves a target. Thread-safe."""

    def __init__(self, default_exchange: str) -> None:
        self.default_exchange = default_exchange
        self.fallback: Fallback | None = None
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, str], list[_GrpcListener]] = {}
        self._servers: dict[tuple[str, str, str], list[_GrpcListener]] = {}
        self._fanout: dict[str, list[_GrpcListener]] = {}
        self._turn = itertools.count()

    def add(self, listener: _GrpcListener) -> None:
        exchange, topic, server = listener.key
        with self._lock:
            self._topics.setdefault((exchange, topic), []).append(listener)
            self._servers.setdefault((exchange, topic, server), []).append(listener)
            self._fanout.setdefault(topic, []).append(listener)

    def remove(self, listener: _GrpcListener) -> int:
        """Forget ``listener``; return how many listeners remain."""
        exchange, topic, server = listener.key
        with self._lock:
            _discard(self._topics, (exchange, topic), listener)
            _discard(self._servers, (exchange, topic, server), listener)
            _discard(self._fanout, topic, listener)
            return sum(len(items) for items in self._topics.values())

    @property
    def serving(self) -> bool:
        """True when some listener takes messages."""
        with self._lock:
            return any(item.started for items in self._topics.values() for item in items)

    def candidates(self, target: pb.Target) -> list[_GrpcListener]:
        """The listeners that may take a message for ``target``, in round-robin order."""
        with self._lock:
            if target.fanout:
                return list(self._fanout.get(target.topic, ()))
            exchange = target.exchange or self.default_exchange
            if target.server:
                items = self._servers.get((exchange, target.topic, target.server), ())
            else:
                items = self._topics.get((exchange, target.topic), ())
            if len(items) <= 1:
                return list(items)
            start = next(self._turn) % len(items)
            return list(items[start:]) + list(items[:start])


def _discard(table: dict[Any, list[_GrpcListener]], key: Any, listener: _GrpcListener) -> None:
    items = table.get(key)
    if items and listener in items:
        items.remove(listener)
        if not items:
            del table[key]


# -- the shared server ---------------------------------------------------------------------

def _target_text(target: pb.Target) -> str:
    parts = [f"topic={target.topic!r}"]
    if target.exchange:
        parts.insert(0, f"exchange={target.exchange!r}")
    if target.server:
        parts.append(f"server={target.server!r}")
    if target.fanout:
        parts.append("fanout")
    return " ".join(parts)


class _Admission:
    """Counts the calls running on one server address against ``max_concurrent_calls``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.limit and self.running >= self.limit:
                raise Rejection(pb.Failure.REASON_RESOURCE_EXHAUSTED,
                                f"over max_concurrent_calls ({self.limit}): retry later",
                                "max_concurrent_calls", self.limit)
            self.running += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


def _remaining(context: Any) -> float | None:
    """Seconds before the call's deadline; None without one (sync grpc says ~2**63 ns)."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e9:
        return None
    return max(0.0, remaining)


def _error_response(call_id: int, failure: pb.Failure) -> bytes:
    code, message, _ = status_of(failure)
    return pb.StreamResponse(id=call_id, error=pb.StreamError(
        code=code.value[0], message=message, failure=failure)).SerializeToString()


class _StreamCalls:
    """The calls of one CallStream: start each request, emit each answer once.

    ``emit(bytes)`` queues a response for the stream; ``hand_back(resolve, outcome)``
    runs ``resolve`` where ``emit`` may be called; ``schedule(delay, fn)`` returns a
    callable that cancels it.
    """

    def __init__(self, server: GrpcServer, remaining: float | None,
                 emit: Callable[[bytes], None], hand_back: Callable[[Callable, Any], None],
                 schedule: Callable[[float, Callable[[], None]], Any],
                 credentials: Any = None) -> None:
        self.server = server
        self.credentials = credentials
        self.deadline = None if remaining is None else time.monotonic() + remaining
        self.emit = emit
        self.hand_back = hand_back
        self.schedule = schedule
        self.lock = threading.Lock()

    def start(self, data: bytes) -> None:
        """Start the call in ``data``; exactly one response is emitted for it."""
        server = self.server
        try:
            request = pb.StreamRequest.FromString(data)
        except Exception as exc:
            LOG.warning("gRPC CallStream request refused: undecodable: %s", exc)
            failure = Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                                f"undecodable StreamRequest: {exc}").failure
            _count_refusal(failure)
            self.emit(_error_response(0, failure))
            return
        call_id = request.id
        state: dict[str, Any] = {"answered": False, "timer": None}

        def finish(payload: bytes, refused: pb.Failure | None = None) -> None:
            with self.lock:
                if state["answered"]:
                    return
                state["answered"] = True
            if state["timer"] is not None:
                state["timer"]()
            server.admission.leave()
            if refused is not None:
                _count_refusal(refused)
            self.emit(payload)

        def resolve(outcome: Any) -> None:
            finish(outcome if isinstance(outcome, bytes) else _error_response(call_id, outcome))

        def make_reply(result: Any) -> bytes:
            response = pb.StreamResponse(id=call_id)
            fill_value(response.result, result, "the result")
            return response.SerializeToString()

        def expire() -> None:
            resolve(Rejection(pb.Failure.REASON_DEADLINE_EXCEEDED,
                              f"call {call_id} ran past its timeout").failure)

        try:
            server.admission.enter()
        except Rejection as rejection:
            LOG.warning("gRPC CallStream call %s refused: %s", call_id, rejection)
            _count_refusal(rejection.failure)
            self.emit(_error_response(call_id, rejection.failure))
            return
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if request.timeout > 0:
            remaining = request.timeout if remaining is None else min(remaining, request.timeout)
            state["timer"] = self.schedule(remaining, expire)
        try:
            incoming = server.decode(request.envelope, remaining,
                                     lambda outcome: self.hand_back(resolve, outcome),
                                     make_reply, self.credentials)
            server.deliver(request.envelope.target, incoming)
        except Rejection as rejection:
            LOG.warning("gRPC CallStream call %s refused: %s", call_id, rejection)
            finish(_error_response(call_id, rejection.failure), refused=rejection.failure)


class GrpcServer:
    """One gRPC server on its addresses, shared by its listeners, with its router.

    ``endpoints`` are the ``(host, port)`` pairs it listens on (the bound port where
    port 0 was asked for); ``host`` and ``port`` are the first. ``server_flavour``
    picks grpc.server (``sync``: handlers on grpc's thread pool) or grpc.aio
    (``aio``: handlers on an event loop in a thread of its own).
    """

    def __init__(self, scheme: str, endpoints: Sequence[tuple[str, int]],
                 options: GrpcOptions, default_exchange: str) -> None:
        self.scheme = scheme
        self.endpoints: list[tuple[str, int]] = list(endpoints)
        self.host, port = self.endpoints[0]
        self.options = options
        self.flavour = options.server_flavour
        self.router = Router(default_exchange)
        self.admission = _Admission(options.max_concurrent_calls)
        self._server: Any = None
        self._health: Any = None
        #: False while the process says it cannot serve (set through a listener).
        self.process_serving = True
        self._pool: Any = None
        # Per-call timeouts of sync CallStreams: one thread for all of them.
        self._timeouts = Timer("bridge-grpc-timeouts")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # aio: answers from worker threads, drained on the loop, one wake-up per batch.
        self._answers: collections.deque[tuple[Callable[[Any], None], Any]] = (
            collections.deque())
        self._wake_pending = False
        if self.flavour == "aio":
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run_loop,
                                            name=f"bridge-grpc-{port}", daemon=True)
            self._thread.start()
            try:
                self._run(self._start_aio())
            except BaseException:
                self._stop_loop()
                raise
        else:
            self._start_sync()
        self.port = self.endpoints[0][1]
        self.running = True

    @property
    def address(self) -> str:
        """``scheme://host:port``, or ``scheme://h1:p1,h2:p2`` (a URL clients can use)."""
        return f"{self.scheme}://{','.join(_host_port(*item) for item in self.endpoints)}"

    # -- setting up --------------------------------------------------------------------------

    def _grpc_options(self) -> list[tuple[str, Any]]:
        opts = self.options
        return [
            ("grpc.max_receive_message_length", opts.max_receive_message_length),
            ("grpc.max_send_message_length", opts.max_send_message_length),
            ("grpc.keepalive_time_ms", opts.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", opts.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", opts.min_ping_interval_ms),
            ("grpc.http2.min_ping_interval_without_data_ms", opts.min_ping_interval_ms),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.so_reuseport", 0),
        ]

    def _add_services(self, server: Any, handlers: dict[str, Any], health: Any) -> None:
        from grpc_health.v1 import health as health_module
        from grpc_health.v1 import health_pb2_grpc

        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE_NAME,
                                                                              handlers)])
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        self._health = health
        names = [SERVICE_NAME, health_module.SERVICE_NAME]
        if self.options.reflection:
            from grpc_reflection.v1alpha import reflection

            names.append(reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)

    def _bind_all(self, server: Any) -> None:
        """Add a port for every endpoint; the bound ports replace the ports asked for."""
        self.endpoints = [(host, self._bind(server, host, port))
                          for host, port in self.endpoints]

    def _bind(self, server: Any, host: str, port: int) -> int:
        address = _host_port(host, port)
        try:
            if self.scheme == "grpcs":
                bound = server.add_secure_port(address, self._server_credentials())
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen on {address} (in use, or not a local address?)")
        return bound

    def _start_sync(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from grpc_health.v1 import health, health_pb2

        # Each call in flight holds one of these threads while the executor runs it; the
        # spare ones answer health checks and refuse calls over the limit. Threads are
        # made only when needed.
        workers = (self.options.max_concurrent_calls or 1000) + 16
        pool = ThreadPoolExecutor(workers,
                                  thread_name_prefix=f"bridge-grpc-{self.endpoints[0][1]}")
        self._pool = pool
        server = grpc.server(pool, options=self._grpc_options())
        self._add_services(server, {
            "Call": grpc.unary_unary_rpc_method_handler(self._sync_call),
            "Cast": grpc.unary_unary_rpc_method_handler(self._sync_cast),
            "CallStream": grpc.stream_stream_rpc_method_handler(self._sync_stream),
        }, health.HealthServicer())
        for name in ("", SERVICE_NAME):
            self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self._bind_all(server)
        except BaseException:
            # Only a server that started frees the ports bound before the failure.
            server.start()
            server.stop(None).wait(10)
            pool.shutdown(wait=False)
            raise
        server.start()
        self._server = server

    async def _start_aio(self) -> None:
        from grpc_health.v1 import health, health_pb2

        server = aio.server(options=self._grpc_options())
        self._add_services(server, {
            "Call": grpc.unary_unary_rpc_method_handler(self._aio_call),
            "Cast": grpc.unary_unary_rpc_method_handler(self._aio_cast),
            "CallStream": grpc.stream_stream_rpc_method_handler(self._aio_stream),
        }, health.aio.HealthServicer())
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self._bind_all(server)
        except BaseException:
            # Only a server that started frees the ports bound before the failure.
            await server.start()
            await server.stop(None)
            raise
        await server.start()
        self._server = server

    def _server_credentials(self) -> grpc.ServerCredentials:
        opts = self.options
        if not (opts.tls_cert_file and opts.tls_key_file):
            raise ValueError("a grpcs:// server needs tls_cert_file and tls_key_file")
        # Follows its files: a rotated certificate is used from the next connection on.
        return tls_reload.server_credentials(opts.tls_cert_file, opts.tls_key_file,
                                             opts.tls_ca_file or None, opts.tls_client_auth)

    # -- the aio event loop ------------------------------------------------------------------

    def _run_loop(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _run(self, coro: Any, timeout: float | None = 30) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _stop_loop(self) -> None:
        assert self.loop is not None and self._thread is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()

    def _on_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def hand_back(self, resolve: Callable[[Any], None], outcome: Any) -> None:
        """Run ``resolve(outcome)`` on the loop (aio); callable from any thread."""
        if self._on_loop():
            resolve(outcome)
            return
        self._answers.append((resolve, outcome))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._drain_answers)  # type: ignore[union-attr]
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _drain_answers(self) -> None:
        self._wake_pending = False
        answers = self._answers
        while answers:
            resolve, outcome = answers.popleft()
            try:
                resolve(outcome)
            except Exception:
                LOG.exception("Could not hand an answer back to its gRPC call")

    # -- lifecycle ---------------------------------------------------------------------------

    def update_health(self) -> None:
        """Publish SERVING while some listener takes messages, else NOT_SERVING.

        ``process_serving`` (see :meth:`_GrpcListener.set_serving`) can hold it at
        NOT_SERVING while the process cannot serve (an AMQP listener lost its broker).
        """
        from grpc_health.v1 import health_pb2

        status = (health_pb2.HealthCheckResponse.SERVING
                  if self.router.serving and self.process_serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        if not self.running:
            return
        if self.flavour != "aio":
            for name in ("", SERVICE_NAME):
                self._health.set(name, status)
            return

        async def publish() -> None:
            for name in ("", SERVICE_NAME):
                await self._health.set(name, status)

        if self._on_loop():
            self.loop.create_task(publish())  # type: ignore[union-attr]
        else:
            self._run(publish())

    def shutdown(self) -> None:
        """Stop the server, letting replies in flight finish for ``shutdown_grace``."""
        if not self.running:
            return
        self.running = False
        server, self._server = self._server, None
        grace = self.options.shutdown_grace
        if self.flavour != "aio":
            if server is not None:
                server.stop(grace).wait(grace + 10)
            self._timeouts.close()
            self._pool.shutdown(wait=False)
            return
        if self._on_loop():
            # Released from the loop itself (a blocking executor): stop without waiting.
            if server is not None:
                self.loop.create_task(server.stop(grace))  # type: ignore[union-attr]
            return
        if server is not None:
            try:
                self._run(server.stop(grace), grace + 10)
            except Exception:
                LOG.exception("Error while stopping the gRPC server on %s", self.address)
        self._stop_loop()

    # -- requests, whatever the flavour ------------------------------------------------------

    def decode(self, envelope: pb.Envelope, remaining: float | None,
               answer: Callable[[Any], None] | None, make_reply: Callable[[Any], bytes],
               credentials: Any = None) -> GrpcIncoming:
        """The IncomingMessage of ``envelope``; raise :class:`Rejection` when malformed."""
        target = envelope.target
        if not target.topic:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                            "the envelope's target has no topic")
        if not envelope.method:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT, "the envelope has no method")
        if answer is not None and target.fanout:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                            "A call cannot be used with fanout")
        try:
            ctxt = from_map(envelope.context, "context")
            args = from_map(envelope.args, "argument")
        except InvalidValueError as exc:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT, str(exc)) from None
        message: dict[str, Any] = {"method": envelope.method, "args": args}
        if envelope.HasField("namespace"):
            message["namespace"] = envelope.namespace
        if envelope.HasField("version"):
            message["version"] = envelope.version
        deadline = None if remaining is None else time.monotonic() + remaining
        incoming = GrpcIncoming(ctxt, message, deadline, remaining, answer, make_reply,
                                self.options.include_traceback,
                                self.options.max_send_message_length)
        incoming.credentials = credentials
        return incoming

    def deliver(self, target: pb.Target, incoming: GrpcIncoming) -> None:
        """Hand ``incoming`` to one listener of ``target`` (every one for fanout)."""
        listeners = self.router.candidates(target)
        delivered = 0
        for listener in listeners:
            if listener.deliver(incoming.copy_for_fanout() if delivered else incoming):
                delivered += 1
                if not target.fanout:
                    return
        if delivered:
            return
        if listeners:
            raise Rejection(pb.Failure.REASON_UNAVAILABLE,
                            f"the servers of {_target_text(target)} are stopping or not "
                            "started")
        fallback = self.router.fallback
        if fallback is not None:
            incoming.target = Target(exchange=target.exchange or None, topic=target.topic,
                                     server=target.server or None, fanout=target.fanout or None)
            handler = fallback(incoming.target)
            if handler is not None:
                handler(incoming)
                return
        raise Rejection(pb.Failure.REASON_TARGET_NOT_FOUND,
                        f"no server of {_target_text(target)} at {self.address}")

    def _start_cast(self, data: bytes, context: Any) -> None:
        try:
            request = pb.CastRequest.FromString(data)
        except Exception as exc:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                            f"undecodable CastRequest: {exc}") from None
        incoming = self.decode(request.envelope, None, None, _call_reply,
                               self.credentials(context))
        self.deliver(request.envelope.target, incoming)
        refused_cast(incoming)

    def credentials(self, context: Any) -> Any:
        """What the request behind ``context`` tells about its sender (bridge.auth)."""
        return credentials_of(context, self.scheme == "grpcs" and self.options.tls_client_auth)

    def _decode_call(self, data: bytes, remaining: float | None,
                     answer: Callable[[Any], None], context: Any,
                     ) -> tuple[pb.Target, GrpcIncoming]:
        """Decode a Call into its target and IncomingMessage; raise Rejection if malformed."""
        try:
            request = pb.CallRequest.FromString(data)
        except Exception as exc:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                            f"undecodable CallRequest: {exc}") from None
        envelope = request.envelope
        return envelope.target, self.decode(envelope, remaining, answer, _call_reply,
                                            self.credentials(context))

    def _start_call(self, data: bytes, remaining: float | None,
                    answer: Callable[[Any], None], context: Any) -> GrpcIncoming:
        """Decode and deliver a Call; the admission was entered by the caller."""
        target, incoming = self._decode_call(data, remaining, answer, context)
        self.deliver(target, incoming)
        return incoming

    # -- sync handlers (grpc.server threads) -------------------------------------------------

    def _sync_abort(self, context: grpc.ServicerContext, failure: pb.Failure,
                    what: str) -> None:
        """Refuse a request no listener took: count it, log it, end the RPC (raises)."""
        code, message, metadata = status_of(failure)
        if _count_refusal(failure):
            LOG.warning("gRPC %s refused: %s", what, message)
        context.set_trailing_metadata(metadata)
        context.abort(code, message)

    def _sync_call(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        # This thread only waits for the answer, so the executor may run the method right
        # here (may_run_inline): then reply() has filled the box before deliver() returns
        # and the answer goes back without a wake-up. Otherwise a pool worker answers and
        # a bare lock, the cheapest wait, hands it over.
        done = _thread.allocate_lock()
        done.acquire()
        box: list[Any] = []

        def answer(outcome: Any) -> None:
            box.append(outcome)
            done.release()

        try:
            self.admission.enter()
        except Rejection as rejection:
            self._sync_abort(context, rejection.failure, "Call")
        try:
            remaining = _remaining(context)
            try:
                target, incoming = self._decode_call(data, remaining, answer, context)
                incoming.may_run_inline = True
                # Runs when the RPC ends; before the answer, that means the caller went
                # away. Added before delivery so that it also reaches an inline run.
                context.add_callback(lambda: None if box else incoming.caller_cancelled())
                self.deliver(target, incoming)
            except Rejection as rejection:
                self._sync_abort(context, rejection.failure, "Call")
            if not box:
                # Past the deadline gRPC has answered the caller already: stop waiting.
                done.acquire(timeout=-1 if remaining is None else remaining + 1.0)
        finally:
            self.admission.leave()
        if not box:
            return b""  # the deadline passed; nobody reads this
        outcome = box[0]
        if isinstance(outcome, bytes):
            return outcome
        code, message, metadata = status_of(outcome)
        context.set_trailing_metadata(metadata)
        context.abort(code, message)
        raise AssertionError("unreachable")  # abort() raises

    def _sync_cast(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            self._start_cast(data, context)
        except Rejection as rejection:
            self._sync_abort(context, rejection.failure, "Cast")
        return b""  # an empty CastResponse

    def _sync_stream(self, requests: Any, context: grpc.ServicerContext) -> Any:
        out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        counts = {"started": 0, "done_reading": False}

        def schedule(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
            timeouts = self._timeouts
            return functools.partial(timeouts.cancel,
                                     timeouts.schedule(time.monotonic() + delay, fn))

        calls = _StreamCalls(self, _remaining(context), out.put,
                             lambda resolve, outcome: resolve(outcome), schedule,
                             self.credentials(context))

        def read() -> None:
            try:
                for data in requests:
                    counts["started"] += 1
                    calls.start(data)
            except Exception as exc:  # the client cancelled, or the stream broke
                LOG.debug("CallStream reader ended: %s", exc)
            finally:
                counts["done_reading"] = True
                out.put(None)

        reader = threading.Thread(target=read, name="bridge-grpc-stream", daemon=True)
        reader.start()
        sent = 0
        context.add_callback(lambda: out.put(None))
        while context.is_active():
            if counts["done_reading"] and sent >= counts["started"]:
                break
            item = out.get()
            if item is None:
                continue
            sent += 1
            yield item

    # -- aio handlers (on the event loop) ----------------------------------------------------

    async def _aio_abort(self, context: aio.ServicerContext, failure: pb.Failure,
                         what: str) -> None:
        """Refuse a request no listener took: count it, log it, end the RPC (raises)."""
        code, message, metadata = status_of(failure)
        if _count_refusal(failure):
            LOG.warning("gRPC %s refused: %s", what, message)
        await context.abort(code, message, metadata)

    async def _aio_call(self, data: bytes, context: aio.ServicerContext) -> bytes:
        future: asyncio.Future = self.loop.create_future()  # type: ignore[union-attr]

        def resolve(outcome: Any) -> None:
            if not future.done():
                future.set_result(outcome)

        try:
            self.admission.enter()
        except Rejection as rejection:
            await self._aio_abort(context, rejection.failure, "Call")
        try:
            try:
                incoming = self._start_call(data, _remaining(context),
                                            lambda outcome: self.hand_back(resolve, outcome),
                                            context)
            except Rejection as rejection:
                await self._aio_abort(context, rejection.failure, "Call")
            try:
                outcome = await future
            except asyncio.CancelledError:
                incoming.caller_cancelled()  # the caller went away
                raise
        finally:
            self.admission.leave()
        if isinstance(outcome, bytes):
            return outcome
        code, message, metadata = status_of(outcome)
        await context.abort(code, message, metadata)
        raise AssertionError("unreachable")  # abort() raises

    async def _aio_cast(self, data: bytes, context: aio.ServicerContext) -> bytes:
        try:
            self._start_cast(data, context)
        except Rejection as rejection:
            await self._aio_abort(context, rejection.failure, "Cast")
        return b""  # an empty CastResponse

    async def _aio_stream(self, requests: AsyncIterator[bytes],
                          context: aio.ServicerContext) -> AsyncIterator[bytes]:
        loop = self.loop
        assert loop is not None
        out: asyncio.Queue = asyncio.Queue()
        counts = {"started": 0, "done_reading": False}
        calls = _StreamCalls(self, _remaining(context), out.put_nowait, self.hand_back,
                             lambda delay, fn: loop.call_later(delay, fn).cancel,
                             self.credentials(context))

        async def read() -> None:
            try:
                async for data in requests:
                    counts["started"] += 1
                    calls.start(data)
            finally:
                counts["done_reading"] = True
                out.put_nowait(None)

        reader = loop.create_task(read())
        sent = 0
        try:
            while True:
                if counts["done_reading"] and sent >= counts["started"]:
                    break
                item = await out.get()
                if item is None:
                    continue
                sent += 1
                yield item
        finally:
            reader.cancel()


# -- listeners -----------------------------------------------------------------------------

_SERVERS: dict[tuple[str, int], GrpcServer] = {}
_SERVERS_LOCK = threading.Lock()


def servers() -> list[GrpcServer]:
    """The gRPC servers running in this process (one per set of bound addresses)."""
    with _SERVERS_LOCK:
        return list({id(server): server for server in _SERVERS.values()}.values())


class _GrpcListener(Listener):
    """One target served on one shared gRPC server."""

    def __init__(self, server: GrpcServer, key: tuple[str, str, str], release: Callable) -> None:
        super().__init__()
        self.server = server
        self.key = key
        self.address = server.address
        self.client_url = server.address
        self._release = release
        self._cleaned = False

    def deliver(self, incoming: IncomingMessage) -> bool:
        """Hand ``incoming`` over; False when the listener is not started.

        A hand-over that races with ``stop()`` and the server's release gets a failure
        reply from the server (it counts a message only while its executor is there).
        """
        return self.hand_over(incoming)

    def _start(self) -> None:
        self.server.update_health()

    def _stop(self) -> None:
        self.server.update_health()

    def cleanup(self) -> None:
        with self.lock:
            if self._cleaned:
                return
            self._cleaned = True
            self.started = False
            self._on_incoming = None
        self._release(self)

    @property
    def healthy(self) -> bool:
        return self.server.running

    def set_serving(self, serving: bool) -> None:
        """Say whether the process can serve; False holds health at NOT_SERVING.

        ``bridge serve`` sets it every ``health_interval`` from ``server.healthy``, so the
        health service turns NOT_SERVING while an AMQP listener of the same server has
        lost its broker, and SERVING again once it is back.
        """
        self.server.process_serving = bool(serving)
        self.server.update_health()


# -- the driver ----------------------------------------------------------------------------

def _hosts_of(url: Any) -> tuple[tuple[str, int], ...]:
    """The ``(host, port)`` of each host of ``url``; 127.0.0.1:50051 fills in what is missing."""
    hosts = tuple((host.hostname or "127.0.0.1",
                   DEFAULT_PORT if host.port is None else host.port) for host in url.hosts)
    hosts = hosts or (("127.0.0.1", DEFAULT_PORT),)
    for index, (host, port) in enumerate(hosts):
        if port and (host, port) in hosts[:index]:
            raise InvalidTransportURL(str(url), f"{_host_port(host, port)} is listed twice "
                                      f"in {url}")
    return hosts


class GrpcDriver(Driver):
    """The gRPC wire: ``grpc://HOST:PORT`` (plain) and ``grpcs://HOST:PORT`` (TLS).

    With several hosts (``grpc://h1:p1,h2:p2``) a server listens on each, and a
    client connects to the first that answers (see :func:`channel_target`).
    """

    wire = "grpc"
    implements = Capabilities(schemes=("grpc", "grpcs"), option_group="grpc",
                              options_type=GrpcOptions, unrouted=True, process_health=True,
                              health_check=True)

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        check_options(url, self.options)
        self._unrouted: Fallback | None = None
        self.scheme = url.driver_name
        #: The URL's hosts as ``(host, port)``; port 0 asks for a free port.
        self.hosts = _hosts_of(url)
        self._bound_ports: tuple[int, ...] | None = None  # the ports port 0 was given
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: dict[str, Any] = {}

    # -- server side ------------------------------------------------------------------------

    def _endpoints(self) -> list[tuple[str, int]]:
        """The URL's hosts, with the ports that port 0 was given once bound."""
        if self._bound_ports is None:
            return list(self.hosts)
        return [(host, port) for (host, _), port in zip(self.hosts, self._bound_ports, strict=True)]

    def listen(self, target: Target) -> Listener:
        exchange = target.exchange or self.settings.control_exchange
        key = (exchange, str(target.topic), str(target.server))
        with _SERVERS_LOCK:
            endpoints = self._endpoints()
            found = {id(item): item for item in (_SERVERS.get(endpoint)
                                                 for endpoint in endpoints if endpoint[1])
                     if item is not None}
            server = None
            if found:
                existing = list(found.values())
                if len(existing) > 1 or set(existing[0].endpoints) != set(endpoints):
                    raise InvalidTransportURL(
                        str(self.url), f"{self.url} shares addresses with the gRPC server(s) "
                        f"{', '.join(item.address for item in existing)}: transports on the "
                        "same addresses must list the same hosts")
                server = existing[0]
            if server is not None and server.scheme != self.scheme:
                raise InvalidTransportURL(str(self.url), f"{server.address} already serves "
                                          f"{server.scheme}://, not {self.scheme}://")
            if server is None:
                server = GrpcServer(self.scheme, endpoints, self.options,
                                    self.settings.control_exchange)
                for endpoint in server.endpoints:
                    _SERVERS[endpoint] = server
                if any(port == 0 for _, port in self.hosts):
                    self._bound_ports = tuple(port for _, port in server.endpoints)
                LOG.info("gRPC server listening on %s", server.address)
            listener = _GrpcListener(server, key, self._release)
            server.router.add(listener)
            if self._unrouted is not None:
                server.router.fallback = self._unrouted
        return listener

    def serve_unrouted(self, handler: Fallback | None) -> None:
        """Hand requests for targets no listener serves to ``handler`` (None: NOT_FOUND)."""
        self._unrouted = handler
        with _SERVERS_LOCK:
            for endpoint in self._endpoints():
                server = _SERVERS.get(endpoint)
                if server is not None:
                    server.router.fallback = handler

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """Ask the gRPC health service (grpc.health.v1) at this URL; the status name.

        Raises :class:`MessageDeliveryFailure` (``CODE: details``) when the server cannot
        be reached or has no health service, :class:`InvalidTransportURL` when no host
        resolves, ``OSError`` when a TLS file cannot be read.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            channel = self._make_channel()
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise
            raise InvalidTransportURL(str(self.url), f"cannot resolve {self.url}: {exc}") from None
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            raise MessageDeliveryFailure(f"{err.code().name}: {err.details()}") from None
        finally:
            channel.close()
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def _release(self, listener: _GrpcListener) -> None:
        server = listener.server
        with _SERVERS_LOCK:
            remaining = server.router.remove(listener)
            if remaining == 0:
                for endpoint in server.endpoints:
                    if _SERVERS.get(endpoint) is server:
                        del _SERVERS[endpoint]
        if remaining == 0:
            server.shutdown()
            LOG.info("gRPC server on %s stopped", server.address)
        else:
            server.update_health()

    # -- client side ------------------------------------------------------------------------

    @property
    def connect_address(self) -> str:
        """host:port this transport's clients connect to (comma-separated, several hosts)."""
        return ",".join(_host_port(_client_host(host), port)
                        for host, port in self._endpoints())

    def _stub(self, method: str) -> Any:
        stub = self._stubs.get(method)
        if stub is not None:
            return stub
        with self._lock:
            if self._channel is None:
                try:
                    self._channel = self._make_channel()
                except OSError as exc:
                    raise MessageDeliveryFailure(
                        f"cannot connect to gRPC {self.connect_address}: {exc}") from None
            stub = self._stubs[method] = self._channel.unary_unary(method)
            return stub

    def _make_channel(self) -> grpc.Channel:
        opts = self.options
        endpoints = self._endpoints()
        if self.scheme == "grpcs" and len(endpoints) > 1 and not opts.tls_server_name:
            raise InvalidTransportURL(
                str(self.url), f"a grpcs:// client of several hosts ({self.url}) needs "
                "tls_server_name, the name every server's certificate holds: one channel "
                "cannot check each server against its own host name")
        target = channel_target(endpoints)
        channel_options = [
            ("grpc.max_receive_message_length", opts.max_receive_message_length),
            ("grpc.max_send_message_length", opts.max_send_message_length),
            ("grpc.keepalive_time_ms", opts.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", opts.keepalive_timeout_ms),
            ("grpc.enable_retries", 0),
        ]
        if self.scheme != "grpcs":
            return grpc.insecure_channel(target, channel_options)
        if opts.tls_server_name:
            channel_options.append(("grpc.ssl_target_name_override", opts.tls_server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(opts.tls_ca_file) if opts.tls_ca_file else None,
            private_key=_read(opts.tls_key_file) if opts.tls_key_file else None,
            certificate_chain=_read(opts.tls_cert_file) if opts.tls_cert_file else None)
        return grpc.secure_channel(target, credentials, channel_options)

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        if wait_for_reply and target.fanout:
            raise InvalidTarget("A call cannot be used with fanout", target)
        request = pb.CallRequest() if wait_for_reply else pb.CastRequest()
        envelope = request.envelope
        envelope.target.exchange = target.exchange or self.settings.control_exchange
        envelope.target.topic = str(target.topic)
        if target.server:
            envelope.target.server = target.server
        if target.fanout:
            envelope.target.fanout = True
        envelope.method = message["method"]
        if message.get("namespace") is not None:
            envelope.namespace = message["namespace"]
        if message.get("version") is not None:
            envelope.version = message["version"]
        fill_map(envelope.context, ctxt, "the request context")
        fill_map(envelope.args, message.get("args") or {}, "argument")
        data = request.SerializeToString()
        if not wait_for_reply:
            timeout = timeout or self.settings.rpc_response_timeout
        reply = self._invoke(_CALL if wait_for_reply else _CAST, data, target, timeout, retry,
                             at_least_once)
        if not wait_for_reply:
            return None
        return from_value(pb.CallResponse.FromString(reply).result, "the result")

    def _invoke(self, method: str, data: bytes, target: Target, timeout: float | None,
                retry: int | None, at_least_once: bool) -> bytes:
        stub = self._stub(method)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempts = 0
        delay = 0.05
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise MessagingTimeout(f"Timed out sending to {target} at "
                                       f"{self.connect_address}")
            try:
                return stub(data, timeout=remaining)
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
                details = err.details() if hasattr(err, "details") else str(err)
                failure = failure_from_metadata(
                    err.trailing_metadata() if hasattr(err, "trailing_metadata") else None)
                if code == grpc.StatusCode.UNAVAILABLE and (retry is None or retry < 0
                                                            or attempts < retry):
                    attempts += 1
                    pause = delay if remaining is None else min(delay, max(0.0, remaining))
                    LOG.debug("gRPC %s to %s unavailable (%s); retry %d in %.2f s", method,
                              self.connect_address, details, attempts, pause)
                    time.sleep(pause)
                    delay = min(delay * 2, 1.0)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise MessageDeliveryFailure(
                        f"gRPC server {self.connect_address} unavailable for {target} after "
                        f"{attempts + 1} attempt(s): {details}") from None
                raise exception_for_error(code, details, failure, self.allowed_remote_exmods,
                                          at_least_once, target) from None

    def cleanup(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
            self._stubs.clear()
        if channel is not None:
            channel.close()
