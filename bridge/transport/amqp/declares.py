"""Declarations on a channel of their own, so that a refusal closes only that channel.

The broker answers a refused declaration (406 PRECONDITION_FAILED, 541, 403...) by
closing the channel it came on. On the publishing channel that would lose confirm
mode, consumers and every publish awaiting its confirm; on this second channel it
costs nothing: the declaration's Future fails with the broker's error, the channel is
opened again, and the connection goes on.

Any thread may declare: the method is written under the connection's write lock and
the broker's answer (``declare-ok``, ``bind-ok`` or ``channel.close``) is read by the
I/O thread, which settles the Future. Answers come in order, so the oldest Future
waiting is the one answered. Declarations made while the channel re-opens are sent
once it is open.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import amqp.exceptions
from amqp import spec
from amqp.exceptions import error_for_code


class ChannelReset(Exception):  # noqa: N818 - a state, not an error of the caller
    """A declaration the broker dropped because an earlier one on the channel was refused."""


class Declarer:
    """Queue and exchange declarations and bindings on ``channel``, each with a Future.

    ``write`` is the connection's write lock; ``on_refused(error)`` is told of each
    refusal (on the I/O thread).
    """

    def __init__(self, channel: Any, write_lock: threading.Lock,
                 on_refused: Callable[[BaseException], None] | None = None) -> None:
        self._channel = channel
        self._lock = write_lock
        self._on_refused = on_refused
        self._waiting: deque[Future] = deque()
        self._held: list[tuple[tuple[int, int], str, tuple, Future]] = []
        self._reopening = False
        for answer in (spec.Queue.DeclareOk, spec.Exchange.DeclareOk, spec.Queue.BindOk):
            channel._callbacks[answer] = self._on_ok
        channel._callbacks[spec.Channel.Close] = self._on_close
        channel._callbacks[spec.Channel.OpenOk] = self._on_open_ok

    # -- any thread -------------------------------------------------------------------------

    def queue(self, name: str, *, durable: bool, exclusive: bool = False,
              auto_delete: bool = False, arguments: dict[str, Any] | None = None) -> Future:
        """Declare a queue; the Future ends with ``(name, messages, consumers)``."""
        return self._send(spec.Queue.Declare, "BsbbbbbF",
                          (0, name, False, durable, exclusive, auto_delete, False,
                           arguments or {}))

    def exchange(self, name: str, type_: str, *, durable: bool, auto_delete: bool) -> Future:
        """Declare an exchange."""
        return self._send(spec.Exchange.Declare, "BssbbbbbF",
                          (0, name, type_, False, durable, auto_delete, False, False, {}))

    def bind(self, queue: str, exchange: str, routing_key: str) -> Future:
        """Bind ``queue`` to ``exchange`` with ``routing_key``."""
        return self._send(spec.Queue.Bind, "BsssbF", (0, queue, exchange, routing_key, False,
                                                       {}))

    def _send(self, method: tuple[int, int], signature: str, args: tuple) -> Future:
        future: Future = Future()
        with self._lock:
            if self._reopening:
                self._held.append((method, signature, args, future))
                return future
            self._waiting.append(future)
            self._channel.send_method(method, signature, args)
        return future

    def fail_all(self, error: BaseException) -> None:
        """The connection is gone: every declaration waiting fails with ``error``."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
            held, self._held = self._held, []
        for future in waiting + [item[3] for item in held]:
            if not future.done():
                future.set_exception(error)

    # -- the broker's answers (I/O thread) -----------------------------------------------------

    def _on_ok(self, *args: Any) -> None:
        with self._lock:
            future = self._waiting.popleft() if self._waiting else None
        if future is not None and not future.done():
            future.set_result(args)

    def _on_close(self, reply_code: int, reply_text: str, class_id: int,
                  method_id: int) -> None:
        error = error_for_code(reply_code, reply_text, (class_id, method_id),
                               amqp.exceptions.ChannelError)
        with self._lock:
            self._channel.send_method(spec.Channel.CloseOk)
            waiting, self._waiting = list(self._waiting), deque()
            # Open it again; what is declared meanwhile waits for open-ok.
            self._reopening = True
            self._channel.send_method(spec.Channel.Open, "s", ("",))
        if self._on_refused is not None:
            self._on_refused(error)
        for index, future in enumerate(waiting):
            if not future.done():
                future.set_exception(error if index == 0 else ChannelReset(
                    f"not declared: an earlier declaration was refused ({error})"))

    def _on_open_ok(self, *args: Any) -> None:
        with self._lock:
            self._reopening = False
            held, self._held = self._held, []
            for method, signature, args_, future in held:
                self._waiting.append(future)
                self._channel.send_method(method, signature, args_)


def settle(futures: list[Future], drain: Callable[..., Any], timeout: float) -> list[Any]:
    """On the I/O thread: ``drain(timeout=...)`` the connection until every Future is
    settled; their results, or the first one's error."""
    deadline = time.monotonic() + timeout
    while not all(future.done() for future in futures):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the broker did not answer the declarations")
        try:
            drain(timeout=min(left, 1.0))
        except TimeoutError:
            pass
    return [future.result() for future in futures]
