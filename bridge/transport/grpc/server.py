"""The gRPC server shared by every listener on its addresses: what both flavours share.

One :class:`GrpcServer` listens on a set of addresses and serves ``bridge.v1.Bridge``,
the health service and (optionally) reflection. Each request is decoded into a
:class:`~bridge.transport.grpc.incoming.GrpcIncoming` (:meth:`GrpcServer.decode`) and
handed to a listener of its target (:meth:`GrpcServer.deliver`, through the
:class:`~bridge.transport.shared_server.Router`). A request refused before any listener
took it (malformed, no such target, over a limit, server stopping) raises
:class:`~bridge.transport.grpc.status.Rejection`, which the flavour's handler turns into
the status.

The flavours (:mod:`~bridge.transport.grpc.sync_server`, grpc.server with its thread
pool; :mod:`~bridge.transport.grpc.aio_server`, grpc.aio on an event loop thread) add
only what must differ: how the server runs, how a handler waits for its answer, and
how it aborts an RPC.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.target import Target
from bridge.timer import MONOTONIC, Clock, Timer
from bridge.transport.grpc.addresses import Address, host_port
from bridge.transport.grpc.credentials import Sender, refused_cast, sender_of
from bridge.transport.grpc.decoding import DecodeBudget, detached
from bridge.transport.grpc.describe import describe_response
from bridge.transport.grpc.health import health_statuses
from bridge.transport.grpc.incoming import Answer, GrpcIncoming, call_reply
from bridge.transport.grpc.listener import GrpcListener
from bridge.transport.grpc.options import GrpcOptions
from bridge.transport.grpc.reflection import enable_reflection
from bridge.transport.grpc.status import (
    Rejection,
    count_refusal,
    failure_from_exception,
    status_of,
)
from bridge.transport.grpc.tls_reload import server_credentials
from bridge.transport.grpc.values import decode_error_text, from_map
from bridge.transport.shared_server import Admission, Router
from bridge.transport.shared_server import target_text as shared_target_text
from bridge.values import InvalidValueError

LOG = logging.getLogger(__name__)

SERVICE_NAME = "bridge.v1.Bridge"
#: The longest deadline or per-call timeout that counts, in seconds (about 31 years); a
#: longer one counts as none, so that no later sum or wait with it can overflow.
MAX_TIMEOUT = 1e9
#: While shutting down: how long no request must have been refused before the port closes,
#: and the longest such wait (see :meth:`GrpcServer.shutdown`).
QUIET = 0.05
MAX_LINGER = 2.0


def target_text(target: pb.Target) -> str:
    """``exchange='x' topic='t' server='s' fanout``: a target in an error message."""
    return shared_target_text(target.exchange, target.topic, target.server, target.fanout)


def _over_the_limit(limit: int) -> Rejection:
    return Rejection(pb.Failure.REASON_RESOURCE_EXHAUSTED,
                     f"over max_concurrent_calls ({limit}): retry later",
                     "max_concurrent_calls", limit)

_monotonic = time.monotonic

#: ``(code, details, trailing metadata)`` of an error status.
Status = tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]


def remaining_time(context: Any) -> float | None:
    """Seconds before the call's deadline; None without one (sync grpc says ~2**63 ns), or
    one past :data:`MAX_TIMEOUT`."""
    remaining = context.time_remaining()
    if remaining is None or not remaining <= MAX_TIMEOUT:
        return None
    return max(0.0, remaining)


class GrpcServer(abc.ABC):
    """One gRPC server on its addresses, shared by its listeners, with its router.

    ``addresses`` are the ``(host, port)`` pairs it listens on (the bound port where
    port 0 was asked for). ``clock`` times the per-call timeouts of CallStream
    requests (a :class:`~bridge.timer.ManualClock` in tests).
    """

    #: ``sync`` or ``aio``: the ``server_flavour`` option's value.
    flavour = ""

    def __init__(self, scheme: str, addresses: Sequence[Address], options: GrpcOptions,
                 default_exchange: str, clock: Clock = MONOTONIC) -> None:
        self.scheme = scheme
        self.addresses: list[Address] = list(addresses)
        self.options = options
        self.clock = clock
        self.router: Router[GrpcListener] = Router(default_exchange)
        self.admission = Admission(options.max_concurrent_calls, _over_the_limit)
        self.decode_budget = DecodeBudget()
        #: Per-call timeouts of CallStream requests: one thread for all of them.
        self.timeouts = Timer("bridge-grpc-timeouts", clock)
        #: False while the process says it cannot serve (set through a listener).
        self.process_serving = True
        self.running = False
        #: When the last request was decoded (see :meth:`linger`).
        self.last_request = 0.0
        #: True while refused requests are held (see :meth:`linger`).
        self.lingering = False
        self._server: Any = None
        self._health: Any = None
        self._start()
        self.running = True

    @property
    def address(self) -> str:
        """``scheme://host:port``, or ``scheme://h1:p1,h2:p2`` (a URL clients can use)."""
        return f"{self.scheme}://{','.join(host_port(*item) for item in self.addresses)}"

    # -- setting up --------------------------------------------------------------------------

    @abc.abstractmethod
    def _start(self) -> None:
        """Make the grpc server, :meth:`_prepare` it and start it; set ``_server``."""

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The method handlers of ``bridge.v1.Bridge``."""
        return {
            "Call": grpc.unary_unary_rpc_method_handler(self.call),
            "Cast": grpc.unary_unary_rpc_method_handler(self.cast),
            "CallStream": grpc.stream_stream_rpc_method_handler(self.call_stream),
            "Describe": grpc.unary_unary_rpc_method_handler(self.describe),
        }

    # The handlers, sync or ``async def`` depending on the flavour.

    @abc.abstractmethod
    def call(self, data: bytes, context: Any) -> Any:
        """Call: the encoded CallResponse, or the RPC aborted with the failure."""

    @abc.abstractmethod
    def cast(self, data: bytes, context: Any) -> Any:
        """Cast: an empty CastResponse once a listener took the cast."""

    @abc.abstractmethod
    def call_stream(self, requests: Any, context: Any) -> Any:
        """CallStream: one StreamResponse per StreamRequest, as the calls finish."""

    @abc.abstractmethod
    def describe(self, data: bytes, context: Any) -> Any:
        """Describe: what the servers behind this address serve, for this caller."""

    def description(self, context: Any) -> bytes:
        """The encoded DescribeResponse for the caller behind ``context``: what each
        server's listeners here serve (its ``describe``), then the unrouted handler's."""
        sender = self.sender(context)
        credentials = sender.credentials if sender is not None else None
        callables: list[Any] = []
        for listener in self.router.listeners():
            if listener.started and listener.describe is not None \
                    and listener.describe not in callables:
                callables.append(listener.describe)
        unrouted = getattr(self.router.fallback, "describe", None)
        if unrouted is not None:
            callables.append(unrouted)
        targets: list[Any] = []
        for describe in callables:
            targets.extend(describe(credentials).get("targets", ()))
        return describe_response({"targets": targets}).SerializeToString()

    def _prepare(self, server: Any, health: Any) -> None:
        """Add the services to ``server`` and bind every address (the bound ports replace
        the ports asked for)."""
        from grpc_health.v1 import health as health_module
        from grpc_health.v1 import health_pb2_grpc

        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            SERVICE_NAME, self._handlers())])
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        self._health = health
        names = [SERVICE_NAME, health_module.SERVICE_NAME]
        if self.options.reflection:
            enable_reflection(server, names)
        self.addresses = [(host, self._bind(server, host, port))
                          for host, port in self.addresses]

    def _bind(self, server: Any, host: str, port: int) -> int:
        address = host_port(host, port)
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

    def _server_credentials(self) -> grpc.ServerCredentials:
        opts = self.options
        if not (opts.tls_cert_file and opts.tls_key_file):
            raise ValueError("a grpcs:// server needs tls_cert_file and tls_key_file")
        # Follows its files: a rotated certificate is used from the next connection on.
        return server_credentials(opts.tls_cert_file, opts.tls_key_file,
                                  opts.tls_ca_file or None, opts.tls_client_auth)

    # -- lifecycle ---------------------------------------------------------------------------

    def update_health(self) -> None:
        """Publish liveness (some listener takes messages) and readiness (that, and the
        process can serve: ``process_serving``, see :meth:`GrpcListener.set_serving`)
        under the health service's names (:mod:`~bridge.transport.grpc.health`)."""
        if self.running:
            self._publish_health(health_statuses(self.router.serving, self.process_serving))

    @abc.abstractmethod
    def _publish_health(self, statuses: dict[str, int]) -> None:
        """Set each health service name's status."""

    def linger(self) -> None:
        """Wait, after the last listener went, until no client is being refused any more.

        Requests for released listeners are refused with UNAVAILABLE (so a client retries
        elsewhere) until the port closes; but grpc cancels (CANCELLED) the requests it
        holds and has not handed to a handler yet when its server stops. So from now on
        each Call or Cast refused as UNAVAILABLE is held (its client waits for the answer
        instead of sending more) until :meth:`release_held`, which :meth:`shutdown` calls
        once grpc takes no request in; and this waits until no request has come for
        :data:`QUIET` seconds, so that grpc has handed every request it took in to a
        handler (at most ``shutdown_grace`` and :data:`MAX_LINGER`).
        """
        if not self._may_block():
            return
        self._hold_from_now()
        self.lingering = True
        limit = min(self.options.shutdown_grace, MAX_LINGER)
        began = time.monotonic()
        while True:
            now = time.monotonic()
            quiet_for = now - self.last_request
            if quiet_for >= QUIET or now - began >= limit:
                return
            time.sleep(min(QUIET - quiet_for, limit - (now - began)))

    def release_held(self) -> None:
        """Answer the requests held while lingering; hold none from now on."""
        self.lingering = False
        self._release_held()

    @abc.abstractmethod
    def _hold_from_now(self) -> None:
        """Make ``_abort`` hold the requests it refuses as UNAVAILABLE (while lingering)."""

    @abc.abstractmethod
    def _release_held(self) -> None:
        """Let every request held in ``_abort`` go on."""

    def shutdown(self) -> None:
        """Stop the server, letting replies in flight finish for ``shutdown_grace``; a
        request that arrives meanwhile is refused with UNAVAILABLE."""
        if not self.running:
            return
        self.running = False
        server, self._server = self._server, None
        self._stop(server, self.options.shutdown_grace)
        self.timeouts.close()

    def _may_block(self) -> bool:
        """False on a thread that must not wait (the aio flavour's event loop)."""
        return True

    @abc.abstractmethod
    def _stop(self, server: Any, grace: float) -> None:
        """Stop the grpc ``server`` (None if it never started) within ``grace`` seconds."""

    # -- requests, whatever the flavour ------------------------------------------------------

    def hand_back(self, resolve: Callable[[Any], None], outcome: Any) -> None:
        """Run ``resolve(outcome)`` where the RPC's handler may use it; from any thread."""
        resolve(outcome)

    def refuse(self, failure: pb.Failure, what: str, log: bool = True) -> Status:
        """Count and log a request refused before any listener took it; its status."""
        status = status_of(failure)
        if count_refusal(failure) and log:  # else the admission step logged it
            LOG.warning("gRPC %s refused: %s", what, status[1])
        return status

    def sender(self, context: Any) -> Sender | None:
        """What the request behind ``context`` tells about its sender (bridge.auth) and
        its trace context (None without a context)."""
        if context is None:
            return None
        return sender_of(context, self.scheme == "grpcs" and self.options.tls_client_auth)

    def unexpected(self, exc: Exception, what: str) -> pb.Failure:
        """The Failure answering a request whose decoding or delivery raised ``exc``, an
        error no rule foresaw (logged once, with its traceback)."""
        LOG.error("gRPC %s failed before dispatch", what, exc_info=exc)
        try:
            return failure_from_exception(exc)
        except Exception:
            return Rejection(pb.Failure.REASON_ENDPOINT_ERROR,
                             f"{type(exc).__name__} before dispatch").failure

    def decode(self, envelope: pb.Envelope, remaining: float | None,
               answer: Answer | None, make_reply: Callable[[Any], bytes],
               sender: Sender | None = None) -> GrpcIncoming:
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
        self.last_request = now = _monotonic()
        deadline = None if remaining is None else now + remaining
        incoming = GrpcIncoming(ctxt, message, deadline, remaining, answer, make_reply,
                                self.options.include_traceback,
                                self.options.max_send_message_length)
        if sender is not None:
            incoming.credentials, incoming.headers = sender
        return incoming

    def deliver(self, target: pb.Target, incoming: GrpcIncoming) -> None:
        """Hand ``incoming`` to one listener of ``target`` (every one for fanout)."""
        listeners = self.router.candidates(target.exchange, target.topic, target.server,
                                           target.fanout)
        delivered = 0
        for listener in listeners:
            if listener.hand_over(incoming.copy_for_fanout() if delivered else incoming):
                delivered += 1
                if not target.fanout:
                    return
        if delivered:
            return
        if listeners:
            raise Rejection(pb.Failure.REASON_UNAVAILABLE,
                            f"the servers of {target_text(target)} are stopping or not "
                            "started")
        fallback = self.router.fallback
        if fallback is not None:
            incoming.target = Target(exchange=target.exchange or None, topic=target.topic,
                                     server=target.server or None, fanout=target.fanout or None)
            handler = fallback(incoming.target)
            if handler is not None:
                handler(incoming)
                return
        if not self.running or self.router.stopped(target.exchange, target.topic,
                                                   target.server, target.fanout):
            raise Rejection(pb.Failure.REASON_UNAVAILABLE,
                            f"the servers of {target_text(target)} stopped")
        raise Rejection(pb.Failure.REASON_TARGET_NOT_FOUND,
                        f"no server of {target_text(target)} at {self.address}")

    def decode_call(self, data: bytes, remaining: float | None, answer: Answer,
                    context: Any = None) -> tuple[pb.Target, GrpcIncoming]:
        """Decode a Call into its target and IncomingMessage; raise Rejection if malformed."""
        with self.decode_budget.decoding(len(data)):
            return self._decode_request(pb.CallRequest, data, remaining, answer, context)

    def start_cast(self, data: bytes, context: Any = None) -> None:
        """Decode and deliver a Cast; raise Rejection when it is refused."""
        with self.decode_budget.decoding(len(data)):
            target, incoming = self._decode_request(pb.CastRequest, data, None, None, context)
        self.deliver(target, incoming)
        refused_cast(incoming)  # refused by the server's admission step: not accepted

    def _decode_request(self, kind: Any, data: bytes, remaining: float | None,
                        answer: Answer | None, context: Any) -> tuple[pb.Target, GrpcIncoming]:
        """A CallRequest's or CastRequest's target and IncomingMessage (the target apart
        from a large request, see :func:`~bridge.transport.grpc.decoding.detached`)."""
        try:
            request = kind.FromString(data)
        except Exception as exc:
            raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                            f"undecodable {kind.__name__}: {decode_error_text(exc)}") from None
        incoming = self.decode(request.envelope, remaining, answer, call_reply,
                               self.sender(context))
        return detached(request.envelope.target, len(data)), incoming
