"""The driver interface: the only thing the server, the gateway, the client and the
command line see of a wire.

A driver turns its wire messages into :class:`IncomingMessage` objects and hands
them, as they arrive, to the callback the server gave :meth:`Listener.start`.
The server answers each one with :meth:`IncomingMessage.reply` and then
:meth:`IncomingMessage.acknowledge`; it never knows which wire it came from.
On the client side, :meth:`Driver.send` (or :meth:`Driver.send_async`) carries one
call or cast.

What a driver can do beyond that core is declared in :attr:`Driver.implements`
(a :class:`Capabilities`), as kombu's transports declare ``implements``: the layers
above read it instead of probing a driver for methods or comparing URL schemes.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.exceptions import MessagingTimeout

if TYPE_CHECKING:
    from bridge.auth.identity import Credentials, Identity
    from bridge.conf import Settings
    from bridge.target import Target
    from bridge.transport.url import TransportURL

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capabilities:
    """What a driver offers beyond ``listen``, ``send`` and ``cleanup``.

    Every field has the default of a driver that offers nothing more, so a new
    driver declares only what it does.
    """

    #: The URL schemes it serves (``grpc``, ``grpcs``); the registry in
    #: :mod:`bridge.transport` must name the same ones.
    schemes: tuple[str, ...] = ()
    #: The conf group its options are read from (``[grpc]``, ``[oslo_messaging_rabbit]``).
    option_group: str | None = None
    #: The dataclass of its options, parsed by :func:`bridge.transport.options.parse_options`.
    options_type: type | None = None
    #: :meth:`Driver.send_async` keeps a call in flight without a thread of its own
    #: (otherwise the default runs :meth:`Driver.send` on a shared pool of threads).
    non_blocking_send: bool = False
    #: :meth:`Listener.reset` renews the listener's connections.
    reset: bool = False
    #: :meth:`Listener.set_serving` publishes the process's readiness on the wire
    #: (the gRPC health service).
    process_health: bool = False
    #: :meth:`Driver.serve_unrouted` hands requests for targets no listener of this
    #: process serves to a handler (a gateway) instead of refusing them.
    unrouted: bool = False
    #: :meth:`Driver.check_health` asks the server at the URL for its health.
    health_check: bool = False
    #: :meth:`Driver.describe` asks the server at the URL what it serves.
    describe: bool = False
    #: Other processes can reach its listeners (``memory://`` cannot).
    remote: bool = True
    #: :meth:`Driver.call_many` pipelines its calls over one stream of the wire (gRPC
    #: ``CallStream``) instead of running them as concurrent :meth:`Driver.send_async`.
    call_stream: bool = False


#: What a server serves, as the plain dict of :meth:`bridge.rpc.describe.Description.as_dict`
#: (``{"targets": [...]}``); given the caller's :class:`bridge.auth.Credentials` (None: not
#: known), it lists only what that caller may call.
DescribeCallable = Callable[["Credentials | None"], "dict[str, Any]"]


class UnsupportedCapability(NotImplementedError):
    """A driver was asked for something its :class:`Capabilities` do not declare."""


class IncomingMessage(abc.ABC):
    """One request taken from a wire.

    Attributes set by the driver:

    * ``ctxt``: the request context as a dict; it includes ``client_timeout``.
    * ``message``: ``method``, ``args`` and, when sent, ``namespace`` and ``version``.
    * ``client_timeout``: the caller's call-monitor interval (``_timeout``), or None.
    * ``deadline``: the ``time.monotonic()`` instant the caller gives up, or None.
    * ``wire``: the wire's short name, for logs and metrics.
    * ``wants_reply``: False for a cast, whose reply() sends nothing.
    * ``target``: where the caller sent it (topic, server, fanout, exchange), when the wire
      tells; a gateway forwards to the same place.
    * ``may_run_inline``: True when the thread that calls ``on_incoming`` with this message
      would otherwise only wait for its reply (a gRPC sync handler thread serving
      ``Call``), so an executor may run the dispatch on that thread, within
      ``on_incoming``, instead of handing it to a worker. Never set it for a thread that
      has other work to do (a consumer or listener thread, an event loop): that thread
      would stop taking messages while the method runs.
    * ``credentials``: what the wire tells about the sender (:class:`bridge.auth.Credentials`:
      a bearer token, a verified client certificate's names, a broker-validated user id),
      or None when it tells nothing.

    Set by the server's admission step (:class:`bridge.auth.Guard`) before any handler:

    * ``identity``: the caller's established :class:`bridge.auth.Identity`; also in
      ``ctxt`` under :data:`bridge.auth.IDENTITY_KEY` unless anonymous (a value the
      caller sent under that key is dropped first).
    * ``refusal``: the ``Unauthenticated`` or ``PermissionDenied`` the message was
      answered with instead of being handled, else None. A wire whose caller waits for
      a cast's acceptance (gRPC ``Cast``) reports it.

    Set by the server before ``reply(failure=...)``:

    * ``failure_expected``: the failure is one the endpoint declared with
      ``expected_exceptions`` (a wire may report those differently).
    """

    ctxt: dict[str, Any]
    message: dict[str, Any]
    client_timeout: float | None = None
    deadline: float | None = None
    wire: str = "unknown"
    wants_reply: bool = True
    target: Target | None = None
    may_run_inline: bool = False
    credentials: Credentials | None = None
    identity: Identity | None = None
    refusal: BaseException | None = None
    failure_expected: bool = False
    #: Set by the server: it reached a server through ``serve_unrouted``, addressed to a
    #: target that none of the process's listeners serves (a gateway forwards it as such).
    unrouted: bool = False
    #: The W3C trace context the wire carried beside the message (gRPC metadata, AMQP
    #: headers): ``traceparent``, ``tracestate``; None when the wire carried none.
    headers: dict[str, str] | None = None

    #: Context keys a driver adds on receipt; a gateway removes them before forwarding.
    ADDED_CONTEXT_KEYS: tuple[str, ...] = ("client_timeout",)

    def add_cancel_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if the caller goes away before the reply (wires that can tell).

        It runs at most once, on the driver's thread; it must not block.
        """
        callbacks = self.__dict__.setdefault("_cancel_callbacks", [])
        if self.__dict__.get("_cancelled"):
            callback()
        else:
            callbacks.append(callback)

    def caller_cancelled(self) -> None:
        """Called by the driver when the caller has gone away (cancel, broken stream)."""
        if self.__dict__.get("_cancelled"):
            return
        self.__dict__["_cancelled"] = True
        for callback in self.__dict__.pop("_cancel_callbacks", []):
            try:
                callback()
            except Exception:  # a callback's failure must not hurt the driver's thread
                LOG.exception("Error in a cancel callback")

    def sent_context(self) -> dict[str, Any]:
        """The context as the caller sent it, without the keys added on receipt."""
        return {k: v for k, v in self.ctxt.items() if k not in self.ADDED_CONTEXT_KEYS}

    @abc.abstractmethod
    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        """Send the final answer (best effort: errors are logged, not raised)."""

    def heartbeat(self) -> None:  # noqa: B027 - optional for wires without a call monitor
        """Tell the caller the call is still running (call-monitor heartbeat)."""

    def acknowledge(self) -> None:  # noqa: B027 - optional for wires that ack on receipt
        """Mark the message as fully handled; called after reply()."""

    def remaining(self) -> float | None:
        """Seconds left before the caller gives up, or None if unknown."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def method(self) -> str:
        return str(self.message.get("method"))


OnIncoming = Callable[[IncomingMessage], None]
#: Given a request's target, the callable that takes its message (and answers it), or
#: None to refuse it as a target nobody serves. Runs on the driver's thread: no blocking.
#: The server's handler also has a ``describe`` attribute (a :data:`DescribeCallable`)
#: listing the targets it takes (a gateway's routed topics), for wires that describe.
UnroutedHandler = Callable[["Target"], "OnIncoming | None"]


class ListenerLockHeld(RuntimeError):
    """A listener handed a message over while holding its own lock (see Listener)."""


class OwnedLock:
    """A non-reentrant lock that knows which thread holds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The ident of the thread holding the lock, or None.
        self.owner: int | None = None

    def __enter__(self) -> OwnedLock:
        self._lock.acquire()
        self.owner = threading.get_ident()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.owner = None
        self._lock.release()

    def held_here(self) -> bool:
        """True when the calling thread holds the lock."""
        return self.owner == threading.get_ident()


class Listener(abc.ABC):
    """Receives the messages of one target on one wire.

    The base class keeps the hand-over bookkeeping: :meth:`start` stores the server's
    callback and :meth:`stop` forgets it, both under :attr:`lock`, and a driver hands
    every message over with :meth:`hand_over`. The server may run the whole method
    inside that call (the blocking executor, or a ``may_run_inline`` message), and a
    method may stop its own server, which calls :meth:`stop`: so the listener's lock is
    never held across the hand-over, and :meth:`hand_over` refuses to run under it.
    A driver that needs a lock around its own state uses :attr:`lock` for it and
    releases it before handing over.
    """

    #: Where the listener can be reached, once listening (for logs and ``addresses``).
    address: str | None = None
    #: A URL that a client in another process can call this listener with, or None.
    client_url: str | None = None
    #: Set by the server before :meth:`start`: what the server behind this listener
    #: serves (see :data:`DescribeCallable`), for wires that answer a Describe request.
    describe: DescribeCallable | None = None

    def __init__(self) -> None:
        self.lock = OwnedLock()
        self._on_incoming: OnIncoming | None = None
        self.started = False

    def start(self, on_incoming: OnIncoming) -> None:
        """Start handing each message taken from the wire to ``on_incoming``."""
        with self.lock:
            self._on_incoming = on_incoming
            self.started = True
        self._start()

    def stop(self) -> None:
        """Take no new messages; once it returns, ``on_incoming`` is not called again for
        messages taken later (a hand-over already under way still completes)."""
        with self.lock:
            self.started = False
            self._on_incoming = None
        self._stop()

    def hand_over(self, incoming: IncomingMessage) -> bool:
        """Give ``incoming`` to the server; False (nothing done) when not started.

        Raises :class:`ListenerLockHeld` when called under :attr:`lock`.
        """
        if self.lock.owner == threading.get_ident():
            raise ListenerLockHeld(f"{type(self).__name__} handed a message over while "
                                   "holding its lock; a method that stops its own server "
                                   "would deadlock")
        # One read, no lock: start() and stop() set the callback under the lock, and a
        # hand-over that races with stop() still completes (the server answers it).
        on_incoming = self._on_incoming
        if on_incoming is None:
            return False
        on_incoming(incoming)
        return True

    def _start(self) -> None:  # noqa: B027 - a hook for drivers with work to do
        """Begin taking messages (called after the callback is stored)."""

    def _stop(self) -> None:  # noqa: B027 - a hook for drivers with work to do
        """Stop taking messages (called after the callback is forgotten)."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release what the listener holds (connections, ports, per-server queues)."""

    @property
    def healthy(self) -> bool:
        """False while the listener cannot take messages (for example, broker lost)."""
        return True

    def reset(self) -> None:  # noqa: B027 - Capabilities.reset says whether it does anything
        """Renew the listener's connections (``Capabilities.reset``); a no-op otherwise."""

    def set_serving(self, serving: bool) -> None:  # noqa: B027 - see Capabilities
        """Publish whether the process can serve (``Capabilities.process_health``)."""


_SEND_POOL: ThreadPoolExecutor | None = None
_SEND_POOL_LOCK = threading.Lock()
#: Threads shared by the drivers whose send blocks, for their send_async.
SEND_POOL_SIZE = 64


def _send_pool() -> ThreadPoolExecutor:
    global _SEND_POOL
    with _SEND_POOL_LOCK:
        if _SEND_POOL is None:
            _SEND_POOL = ThreadPoolExecutor(SEND_POOL_SIZE, thread_name_prefix="bridge-send")
        return _SEND_POOL


class Driver(abc.ABC):
    """One wire protocol. Built by ``get_transport`` from a URL scheme."""

    #: Short name used in logs, metrics and ``IncomingMessage.wire``.
    wire: str = "unknown"
    #: What this driver offers beyond the core; see :class:`Capabilities`.
    implements: Capabilities = Capabilities()

    def __init__(self, url: TransportURL, settings: Settings,
                 allowed_remote_exmods: list[str]) -> None:
        self.url = url
        self.settings = settings
        self.allowed_remote_exmods = allowed_remote_exmods
        self.options: Any = None
        if self.implements.options_type is not None:
            from bridge.transport.options import parse_options

            group = self.implements.option_group or ""
            self.options = parse_options(self.implements.options_type, settings.group(group),
                                         url, group)

    @abc.abstractmethod
    def listen(self, target: Target) -> Listener:
        """Prepare to receive the messages for ``target`` (topic and server set)."""

    @abc.abstractmethod
    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        """Send a call (``wait_for_reply``) or a cast.

        ``ctxt`` is the serialized context; ``message`` holds ``method``, ``args``
        and optional ``namespace``/``version``; all primitives. A call returns the
        result or raises the rebuilt remote failure, or ``MessagingTimeout``.
        """

    def send_async(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
                   wait_for_reply: bool = True, timeout: float | None = None,
                   call_monitor_timeout: float | None = None, retry: int | None = None,
                   at_least_once: bool = False) -> Future:
        """:meth:`send` without blocking: a Future of the result or the failure.

        Cancelling the Future abandons the call. Callbacks added to it must not block.
        This default runs :meth:`send` on a shared pool of threads; a driver with
        ``Capabilities.non_blocking_send`` keeps calls in flight without a thread each.
        """
        return _send_pool().submit(self.send, target, ctxt, message,
                                   wait_for_reply=wait_for_reply, timeout=timeout,
                                   call_monitor_timeout=call_monitor_timeout, retry=retry,
                                   at_least_once=at_least_once)

    def call_many(self, target: Target, ctxt: dict[str, Any],
                  messages: Sequence[dict[str, Any]], *, timeout: float | None,
                  ) -> Iterator[tuple[int, Any]]:
        """Call every message of ``messages`` (all to ``target``, with ``ctxt``) at once;
        yield ``(index, outcome)`` in the order the answers come, ``outcome`` being the
        result or the exception :meth:`send` would raise (one failure stops no other).

        ``timeout`` bounds each call. This default keeps the calls in flight with
        :meth:`send_async`; closing the iterator early abandons the calls not answered.
        """
        answers: queue.SimpleQueue[tuple[int, Future]] = queue.SimpleQueue()
        futures: list[Future] = []
        try:
            for index, message in enumerate(messages):
                future = self.send_async(target, ctxt, message, wait_for_reply=True,
                                         timeout=timeout)
                future.add_done_callback(lambda done, index=index: answers.put((index, done)))
                futures.append(future)
            for _ in range(len(futures)):
                index, future = answers.get()
                if future.cancelled():
                    yield index, MessagingTimeout(f"call {index} to {target} was cancelled")
                elif future.exception() is not None:
                    yield index, future.exception()
                else:
                    yield index, future.result()
        finally:
            for future in futures:
                future.cancel()

    def serve_unrouted(self, handler: UnroutedHandler | None) -> None:
        """Hand requests for targets no listener serves to ``handler`` (None: refuse them).

        Only with ``Capabilities.unrouted``.
        """
        raise UnsupportedCapability(f"the {self.wire} driver cannot serve unrouted targets")

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """Ask the server at this driver's URL for its health status (``SERVING``, ...).

        Only with ``Capabilities.health_check``. Raises ``OSError`` (or a subclass of
        ``MessagingException``) when the server cannot be reached.
        """
        raise UnsupportedCapability(f"the {self.wire} driver has no health check")

    def describe(self, timeout: float = 5.0) -> dict[str, Any]:
        """What the server at this driver's URL serves, as the plain dict of
        :meth:`bridge.rpc.describe.Description.as_dict` (``implements.describe`` only).

        Raises ``OSError`` or a subclass of ``MessagingException`` when it cannot tell.
        """
        raise UnsupportedCapability(f"the {self.wire} driver cannot ask for a description")

    @property
    def connected(self) -> bool:
        """False while the client connection this driver keeps (for sends) is known to
        be lost, such as a broker that went away; True otherwise, including before the
        first send. ``bridge serve`` reports a replica not ready while a route's is False.
        """
        return True

    def cleanup(self) -> None:  # noqa: B027 - drivers with nothing to release
        """Release connections and reply queues."""
