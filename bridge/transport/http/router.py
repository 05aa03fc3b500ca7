"""Which local listener serves a request's target, and how many calls run at once."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.transport.http.status import Rejection

if TYPE_CHECKING:
    from bridge.target import Target
    from bridge.transport.base import OnIncoming
    from bridge.transport.http.listener import HttpListener

#: A fallback for targets no local listener serves (``Driver.serve_unrouted``).
Fallback = Callable[["Target"], "OnIncoming | None"]


class Router:
    """The listeners of one HTTP server by target. Thread-safe."""

    def __init__(self, default_exchange: str) -> None:
        self.default_exchange = default_exchange
        self.fallback: Fallback | None = None
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, str], list[HttpListener]] = {}
        self._servers: dict[tuple[str, str, str], list[HttpListener]] = {}
        self._fanout: dict[str, list[HttpListener]] = {}
        self._turn = itertools.count()

    def add(self, listener: HttpListener) -> None:
        exchange, topic, server = listener.key
        with self._lock:
            self._topics.setdefault((exchange, topic), []).append(listener)
            self._servers.setdefault((exchange, topic, server), []).append(listener)
            self._fanout.setdefault(topic, []).append(listener)

    def remove(self, listener: HttpListener) -> int:
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

    def listeners(self) -> list[HttpListener]:
        """Every listener, in the order they were added."""
        with self._lock:
            return [item for items in self._topics.values() for item in items]

    def candidates(self, exchange: str | None, topic: str, server: str | None,
                   fanout: bool) -> list[HttpListener]:
        """The listeners that may take a message for the target, in round-robin order."""
        with self._lock:
            if fanout:
                return list(self._fanout.get(topic, ()))
            exchange = exchange or self.default_exchange
            if server:
                items = self._servers.get((exchange, topic, server), ())
            else:
                items = self._topics.get((exchange, topic), ())
            if len(items) <= 1:
                return list(items)
            start = next(self._turn) % len(items)
            return list(items[start:]) + list(items[:start])


def _discard(table: dict[Any, list[HttpListener]], key: Any, listener: HttpListener) -> None:
    items = table.get(key)
    if items and listener in items:
        items.remove(listener)
        if not items:
            del table[key]


class Admission:
    """Counts the calls running on one server address against ``max_concurrent_calls``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.limit and self.running >= self.limit:
                raise Rejection("RESOURCE_EXHAUSTED",
                                f"over max_concurrent_calls ({self.limit}): retry later",
                                "max_concurrent_calls", self.limit)
            self.running += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1
