"""MessageHandlingServer: listeners on one or more transports, one executor, one handler.

The server owns the lifecycle (``start``/``stop``/``wait``/``reset``) and the
bookkeeping of every message in flight: counting it, observers, call-monitor
heartbeats, logging a failure once, ``reply`` then ``acknowledge``. What a message
means is its :class:`~bridge.rpc.handlers.Handler`'s business: dispatch to endpoints
(the default), or forwarding (the gateway).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bridge.auth.guard import DEFAULT_GUARD, Guard
from bridge.exceptions import (
    ExpectedException,
    InvalidTarget,
    MessagingServerError,
    ServerListenError,
    TaskTimeout,
)
from bridge.failures import OK, Kind, classify, log_failure
from bridge.rpc.dispatcher import RPCAccessPolicyBase, RPCDispatcher
from bridge.rpc.executors import AsyncioExecutor, Executor, executor_class
from bridge.rpc.handlers import DispatchHandler, Handler
from bridge.rpc.heartbeat import HeartbeatScheduler
from bridge.serializer import Serializer
from bridge.target import Target
from bridge.transport import Transport
from bridge.transport.base import IncomingMessage, Listener

if TYPE_CHECKING:
    from bridge.auth.identity import Credentials
    from bridge.rpc.describe import Allow

LOG = logging.getLogger(__name__)

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


class ServerObserver(Protocol):
    """What a server tells its observers about each message (metrics, log context).

    ``on_start`` runs on the thread (or event loop task) that dispatches the message,
    just before dispatch; ``on_finish`` runs once the message has been replied to and
    acknowledged, with the outcome (see :func:`outcome_of`) and the seconds since the
    listener handed it over. An observer that raises is logged and ignored: it never
    breaks message handling. Register one with :meth:`MessageHandlingServer.add_observer`.
    """

    def on_start(self, incoming: IncomingMessage) -> None:
        """Called before dispatch, where the endpoint method will run."""

    def on_finish(self, incoming: IncomingMessage, outcome: str, seconds: float) -> None:
        """Called after reply and acknowledge."""


def outcome_of(failure: BaseException | None) -> str:
    """How a message ended, as observers see it: :func:`bridge.failures.classify`'s outcome
    (``ok``, ``expected_error``, ``error``, ``no_such_method``, ...)."""
    return classify(failure).outcome


class MessageHandlingServer:
    """Takes messages from its transports' listeners and hands them to its handler.

    ``start()`` listens on every transport; ``stop()`` takes no new messages;
    ``wait()`` returns once every message already taken has been answered and
    acknowledged, then releases the listeners. ``start()`` again begins a new cycle.
    ``dispatcher`` may be an :class:`RPCDispatcher` (its endpoints are served) or any
    :class:`~bridge.rpc.handlers.Handler`.

    Every message passes ``guard`` (:class:`bridge.auth.Guard`; by default one that
    only takes the identities the wire verified and allows everything) before its
    handler: the one place where callers are authenticated and authorized, for every
    wire and every handler. A refused message is answered with the refusal, and never
    reaches the handler or the observers.
    """

    def __init__(self, transport: Transport | Sequence[Transport], target: Target,
                 dispatcher: RPCDispatcher | Handler, executor: str | None = "threading",
                 guard: Guard | None = None) -> None:
        transports = [transport] if isinstance(transport, Transport) else list(transport)
        self.transports = transports
        self.target = target
        self.handler = (dispatcher if isinstance(dispatcher, Handler)
                        else DispatchHandler(dispatcher))
        #: The dispatcher of a server of endpoints (None for another handler).
        self.dispatcher = getattr(self.handler, "dispatcher", None)
        self.executor_name = executor or "threading"
        self._executor_cls = executor_class(self.executor_name)
        self._state = _NEW
        # Per-message paths take the bare lock (cheaper than entering the Condition);
        # the Condition, on the same lock, is for stop() and wait().
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._executor: Executor | None = None
        self._heartbeats: HeartbeatScheduler | None = None
        self.listeners: list[Listener] = []
        self._unrouted: list[Transport] = []
        self._lifecycle_lock = threading.RLock()
        self._observers: list[ServerObserver] = []
        self._accepted_at: dict[int, float] = {}
        self.guard = guard or DEFAULT_GUARD
        #: The exchange of requests that name none (the policy matches on it).
        self.default_exchange = (transports[0].settings.control_exchange if transports
                                 else "openstack")
        #: Given a caller's credentials, what that caller may see in :meth:`describe`
        #: (an ``allow`` callback of :mod:`bridge.rpc.describe`, or None for all). None:
        #: what the guard's policy lets that caller call
        #: (:func:`bridge.rpc.describe.policy_filter`).
        self.describe_filter: Callable[[Credentials | None], Allow | None] | None = None

    def add_observer(self, observer: ServerObserver) -> None:
        """Tell ``observer`` about every message from now on (see :class:`ServerObserver`)."""
        self._observers = [*self._observers, observer]

    def _notify(self, hook: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                LOG.exception("Observer %r failed in %s", observer, hook)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, override_pool_size: int | None = None) -> None:
        """Listen on every transport and start handling. A no-op while running."""
        with self._lifecycle_lock:
            if self._state == _RUNNING:
                LOG.debug("Server %s is already running", self.target)
                return
            if self._state == _STOPPED:
                self._drain_and_release()
            pool_size = override_pool_size or (
                self.transports[0].settings.executor_thread_pool_size if self.transports else 64)
            self.handler.open()
            self._executor = self._executor_cls(pool_size, self._process, self._process_async)
            self._heartbeats = HeartbeatScheduler()
            listeners: list[Listener] = []
            try:
                for transport in self.transports:
                    listeners.append(transport.listen(self.target))
            except Exception as exc:
                for listener in listeners:
                    _quietly(listener.cleanup)
                self._executor.shutdown(wait=False)
                self._heartbeats.close()
                self.handler.close()
                if isinstance(exc, (MessagingServerError, InvalidTarget)):
                    raise
                raise ServerListenError(self.target, exc) from exc
            self.listeners = listeners
            with self._cond:
                self._state = _RUNNING
            for listener in listeners:
                listener.describe = self.describe
                listener.start(self._on_incoming)
            if listeners:
                LOG.info("Serving %s on %s", self.target,
                         ", ".join(str(item.address) for item in listeners))

    def serve_unrouted(self, transport: Transport) -> None:
        """Also take, on ``transport``, the requests for targets that no listener of this
        process serves and that the handler accepts (``implements.unrouted``).

        Undone by :meth:`stop`. Requests the handler does not accept are refused by the
        driver as usual (a target nobody serves).
        """

        def route(target: Target) -> Any:
            if self._state == _RUNNING and self.handler.accepts_unrouted(target):
                return self._on_unrouted
            return None

        route.describe = self.describe  # type: ignore[attr-defined] # see UnroutedHandler
        transport.serve_unrouted(route)
        self._unrouted.append(transport)

    def stop(self) -> None:
        """Take no new messages. Returns at once if the server never started."""
        with self._lifecycle_lock:
            for transport in self._unrouted:
                _quietly(lambda transport=transport: transport.serve_unrouted(None))
            self._unrouted = []
            if self._state != _RUNNING:
                return
            with self._cond:
                self._state = _STOPPED
                self._cond.notify_all()
            for listener in self.listeners:
                _quietly(listener.stop)

    def wait(self, timeout: float | None = None) -> None:
        """Return once every message already taken is answered; then release the listeners.

        Called while the server runs, it first waits for ``stop()`` from another thread.
        """
        with self._cond:
            if self._state == _NEW:
                return
            if not self._cond.wait_for(lambda: self._state != _RUNNING, timeout):
                raise TaskTimeout(f"wait() timed out after {timeout} s waiting for stop()")
        with self._lifecycle_lock:
            if self._state == _STOPPED:
                self._drain_and_release(timeout)

    def describe(self, credentials: Credentials | None = None,
                 allow: Allow | None = None) -> dict[str, Any]:
        """What this server serves, in the plain form of
        :meth:`bridge.rpc.describe.Description.as_dict`.

        ``allow`` (when None: :attr:`describe_filter` given ``credentials``, else the
        guard's policy for the identity ``credentials`` establish) leaves out what it
        refuses. Listeners get this method (``Listener.describe``) for their wire.
        """
        from bridge.rpc.describe import Description, policy_filter

        if allow is None:
            allow = (self.describe_filter(credentials) if self.describe_filter is not None
                     else policy_filter(self.guard, credentials, self.default_exchange))
        return Description(tuple(self.handler.describe(self.target, allow))).as_dict()

    def reset(self) -> None:
        """Ask each listener to renew its connections (drivers with ``implements.reset``)."""
        for listener in list(self.listeners):
            _quietly(listener.reset)

    def set_serving(self, serving: bool) -> None:
        """Publish the process's readiness through the listeners whose wire can tell
        (``implements.process_health``: the gRPC health service)."""
        for listener in list(self.listeners):
            _quietly(lambda listener=listener: listener.set_serving(serving))

    def _drain_and_release(self, timeout: float | None = None) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise TaskTimeout(f"{self._in_flight} messages still running after {timeout} s")
            # In the same hold of the lock as the count: from here on a late hand-over
            # sees no executor (see _on_incoming).
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self._heartbeats is not None:
            self._heartbeats.close()
            self._heartbeats = None
        for listener in self.listeners:
            _quietly(listener.cleanup)
        self.listeners = []
        _quietly(self.handler.close)
        with self._cond:
            self._state = _NEW

    # -- state -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == _RUNNING

    @property
    def healthy(self) -> bool:
        """True while running and every listener can take messages."""
        return self._state == _RUNNING and all(item.healthy for item in self.listeners)

    @property
    def addresses(self) -> list[str]:
        """Where each listener can be reached."""
        return [str(listener.address) for listener in self.listeners]

    @property
    def in_flight(self) -> int:
        """Messages taken and not yet answered."""
        return self._in_flight

    # -- processing ------------------------------------------------------------------------

    def _on_unrouted(self, incoming: IncomingMessage) -> None:
        incoming.unrouted = True
        self._on_incoming(incoming)

    def _on_incoming(self, incoming: IncomingMessage) -> None:
        # May run the whole request before it returns (the threading executor runs a
        # message with may_run_inline on this thread when a permit is free).
        # Authentication and authorization, before anything else sees the message.
        try:
            refusal = self.guard.admit(incoming, self.target, self.default_exchange)
        except Exception:  # a defect in the step must not let the message through
            LOG.exception("The admission step failed for %s", incoming.method)
            refusal = MessagingServerError("the server could not check the request")
        with self._lock:
            # Counted only while the executor is there: a listener that hands a message
            # over while wait() releases it gets a failure, not a shut-down executor.
            executor = self._executor
            self._in_flight += 1
            if self._observers and refusal is None:
                self._accepted_at[id(incoming)] = time.monotonic()
        if refusal is not None:
            self._refuse(incoming, refusal)
            return
        try:
            if executor is None:
                raise MessagingServerError("the server is not running")
            if self.handler.blocking:
                executor.submit(incoming)
            else:
                self._process(incoming)
        except Exception as exc:
            LOG.error("Could not hand %s over to the executor: %s", incoming.method, exc)
            self._answer(incoming, None, exc)

    def _refuse(self, incoming: IncomingMessage, refusal: BaseException) -> None:
        """Answer a message the guard refused (it counted and logged the refusal)."""
        incoming.refusal = refusal
        try:
            try:
                incoming.reply(failure=refusal)
            except Exception:
                LOG.exception("Can not send the refusal of %s", incoming.method)
            try:
                incoming.acknowledge()
            except Exception:
                LOG.exception("Can not acknowledge %s", incoming.method)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._cond.notify_all()

    def _begin(self, incoming: IncomingMessage) -> Any:
        """Observers and heartbeats, where the request is handled; the answer callback."""
        if self._observers:
            self._notify("on_start", incoming)
        watch = self._heartbeats.watch(incoming) if self._heartbeats else None
        answered = []

        def answer(result: Any, failure: BaseException | None) -> None:
            if answered:
                LOG.error("%s answered twice; the second answer is dropped", incoming.method)
                return
            answered.append(True)
            if watch is not None:
                watch.cancel()
            self._answer(incoming, result, failure)

        return answer

    def _process(self, incoming: IncomingMessage) -> None:
        if not self.handler.blocking:
            answer = self._begin(incoming)
            try:
                self.handler.handle(incoming, answer)
            except Exception as exc:  # a handler answers its own failures; this is a defect
                answer(None, exc)
            return
        # A blocking handler runs here to its end: answered once, with no callback.
        if self._observers:
            self._notify("on_start", incoming)
        watch = self._heartbeats.watch(incoming) if self._heartbeats else None
        result, failure = None, None
        try:
            result = self.handler.run(incoming)
        except Exception as exc:
            failure = exc
        if watch is not None:
            watch.cancel()
        self._answer(incoming, result, failure)

    async def _process_async(self, incoming: IncomingMessage, executor: AsyncioExecutor) -> None:
        answer = self._begin(incoming)
        try:
            await self.handler.handle_async(incoming, answer, executor)
        except Exception as exc:
            answer(None, exc)

    def _answer(self, incoming: IncomingMessage, result: Any,
                failure: BaseException | None) -> None:
        kind = OK if failure is None else classify(failure, unknown=self.handler.unknown_failure)
        try:
            if failure is not None:
                failure = self._report_failure(incoming, failure, kind)
            try:
                incoming.reply(result=result, failure=failure)
            except Exception:
                LOG.exception("Can not send reply for %s", incoming.method)
            try:
                incoming.acknowledge()
            except Exception:
                LOG.exception("Can not acknowledge %s", incoming.method)
        finally:
            if self._accepted_at:
                with self._lock:
                    accepted = self._accepted_at.pop(id(incoming), None)
                if self._observers:
                    seconds = time.monotonic() - accepted if accepted is not None else 0.0
                    self._notify("on_finish", incoming, kind.outcome, seconds)
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0:  # only wait() waits, and only for zero
                    self._cond.notify_all()

    def _report_failure(self, incoming: IncomingMessage, failure: BaseException,
                        kind: Kind) -> BaseException:
        """Log a failure once; return the exception the caller should get."""
        log_failure(LOG, failure, f"{incoming.wire} message handling "
                                  f"(method {incoming.method!r})", kind)
        if isinstance(failure, ExpectedException):
            incoming.failure_expected = True
            return failure.exc_info[1]
        return failure


class RPCServer(MessageHandlingServer):
    """The RPC flavour of the server (the only one this library has)."""


class PingEndpoint:
    """The built-in endpoint of ``rpc_ping_enabled``: null namespace, version 1.0."""

    def oslo_rpc_server_ping(self, ctxt: Any, **kwargs: Any) -> str:
        return "pong"


def _quietly(func: Any) -> None:
    try:
        func()
    except Exception:
        LOG.exception("Ignoring an error from %s", getattr(func, "__qualname__", func))


def get_rpc_server(transport: Transport | Sequence[Transport], target: Target,
                   endpoints: Sequence[Any], executor: str | None = "threading",
                   serializer: Serializer | None = None,
                   access_policy: type[RPCAccessPolicyBase] | None = None,
                   server_cls: type[MessageHandlingServer] = RPCServer,
                   guard: Guard | None = None) -> MessageHandlingServer:
    """Build a server for ``endpoints`` on one transport or several at once.

    ``guard`` authenticates and authorizes every message (:class:`bridge.auth.Guard`).

    With ``rpc_ping_enabled`` set in the first transport's configuration, an endpoint
    whose ``oslo_rpc_server_ping`` returns ``"pong"`` is appended, as oslo.messaging does.
    """
    endpoints = list(endpoints)
    transports = [transport] if isinstance(transport, Transport) else list(transport)
    if not transports:
        raise ValueError("a server needs at least one transport")
    if transports[0].settings.rpc_ping_enabled:
        endpoints.append(PingEndpoint())
    dispatcher = RPCDispatcher(endpoints, serializer, access_policy)
    if guard is None:  # a server class of its own may not take a guard
        return server_cls(transports, target, dispatcher, executor)
    return server_cls(transports, target, dispatcher, executor, guard=guard)
