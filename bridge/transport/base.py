"""The driver interface: the only thing the server, dispatcher and client see of a wire.

A driver turns its wire messages into :class:`IncomingMessage` objects and hands
them, as they arrive, to the callback the server gave :meth:`Listener.start`.
The server answers each one with :meth:`IncomingMessage.reply` and then
:meth:`IncomingMessage.acknowledge`; it never knows which wire it came from.
On the client side, :meth:`Driver.send` carries one call or cast.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.conf import Settings
    from bridge.target import Target
    from bridge.transport.url import TransportURL

LOG = logging.getLogger(__name__)


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
    failure_expected: bool = False

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


class Listener(abc.ABC):
    """Receives the messages of one target on one wire."""

    #: Where the listener can be reached, once listening (for example ``grpc://127.0.0.1:50051``).
    address: str | None = None

    @abc.abstractmethod
    def start(self, on_incoming: OnIncoming) -> None:
        """Start handing each message taken from the wire to ``on_incoming``.

        ``on_incoming`` may run the whole method before it returns (a message with
        ``may_run_inline``, or the blocking executor), so a listener should not hold a
        lock of its own across it that ``stop()`` also takes.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Take no new messages; messages already taken still reach ``on_incoming``."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release what the listener holds (connections, ports, per-server queues)."""

    @property
    def healthy(self) -> bool:
        """False while the listener cannot take messages (for example, broker lost)."""
        return True


class Driver(abc.ABC):
    """One wire protocol. Built by ``get_transport`` from a URL scheme."""

    #: Short name used in logs, metrics and ``IncomingMessage.wire``.
    wire: str = "unknown"

    def __init__(self, url: TransportURL, settings: Settings,
                 allowed_remote_exmods: list[str]) -> None:
        self.url = url
        self.settings = settings
        self.allowed_remote_exmods = allowed_remote_exmods

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

    def cleanup(self) -> None:  # noqa: B027 - drivers with nothing to release
        """Release connections and reply queues."""
