"""Publishes waiting for the broker's confirm, on one connection.

Each publish gets the next delivery tag and a Future, and its frames join an outbox
that whichever thread holds the write lock sends. The I/O thread settles the
Futures from the broker's ``basic.ack`` / ``basic.nack`` (one or ``multiple``), and
``basic.return`` marks a mandatory message that no queue took, which its ack then
fails with :class:`MessageUndeliverable`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from bridge.exceptions import MessageDeliveryFailure, MessageUndeliverable


class ConnectionLost(Exception):  # noqa: N818 - a state, not an error of the caller
    """The connection dropped (or is not up) before the broker confirmed a publish."""


class Confirms:
    """Delivery tags, Futures and the outbox of one channel in confirm mode."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._tag_of_body: dict[bytes, int] = {}  # mandatory bodies, to match returns
        self._body_of_tag: dict[int, bytes] = {}
        self._returned: dict[int, tuple[Any, str, str]] = {}
        self._seq = 0
        self._outbox: list[bytes] = []

    def add(self, future: Future, data: bytes, mandatory_body: bytes | None,
            ready: Callable[[], bool], why_not: Callable[[], str]) -> None:
        """Give a publish the next delivery tag and queue its bytes, in the same order.

        Raises :class:`ConnectionLost` (with ``why_not()``) unless ``ready()``, which is
        asked under the same lock as :meth:`fail_all` takes, so no publish slips in
        between a connection's loss and the failing of what it carried.
        """
        with self._lock:
            if not ready():
                raise ConnectionLost(why_not())
            self._seq += 1
            tag = self._seq
            self._pending[tag] = future
            if mandatory_body is not None:
                self._tag_of_body[mandatory_body] = tag
                self._body_of_tag[tag] = mandatory_body
            self._outbox.append(data)

    def take_outbox(self) -> bytes | None:
        """Everything queued since the last call, as one write; None if nothing is."""
        with self._lock:
            if not self._outbox:
                return None
            outbox, self._outbox = self._outbox, []
        return outbox[0] if len(outbox) == 1 else b"".join(outbox)

    def restart(self) -> None:
        """A new channel: delivery tags start again at 1."""
        with self._lock:
            self._seq = 0
            self._outbox = []

    def fail_all(self, error: BaseException) -> None:
        """The connection is gone: every publish not yet confirmed fails with ``error``."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._outbox = []
            self._tag_of_body.clear()
            self._body_of_tag.clear()
            self._returned.clear()
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # -- the broker's answers (I/O thread) ---------------------------------------------------

    def _take(self, delivery_tag: int, multiple: bool) -> list[tuple[int, Future, Any]]:
        with self._lock:
            if multiple:
                tags = [tag for tag in self._pending if tag <= delivery_tag]
            else:
                tags = [delivery_tag] if delivery_tag in self._pending else []
            taken = []
            for tag in tags:
                body = self._body_of_tag.pop(tag, None)
                if body is not None and self._tag_of_body.get(body) == tag:
                    del self._tag_of_body[body]
                taken.append((tag, self._pending.pop(tag), self._returned.pop(tag, None)))
            return taken

    def on_ack(self, delivery_tag: int, multiple: bool) -> None:
        """``basic.ack``: confirmed, unless the broker returned the message first."""
        for _, future, returned in self._take(delivery_tag, multiple):
            if returned is not None:
                exc, exchange, routing_key = returned
                future.set_exception(MessageUndeliverable(exc, exchange, routing_key, None))
            else:
                future.set_result(None)

    def on_nack(self, delivery_tag: int, multiple: bool) -> None:
        """``basic.nack``: the broker refused the message."""
        for _, future, _ in self._take(delivery_tag, multiple):
            future.set_exception(MessageDeliveryFailure("The broker refused (nacked) a message"))

    def on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        """``basic.return`` of a mandatory message (its ack follows)."""
        body = message.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._lock:
            tag = self._tag_of_body.get(bytes(body))
            if tag is not None:
                self._returned[tag] = (exc, exchange, routing_key)
