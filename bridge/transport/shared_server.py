"""A server shared by the listeners at one address: what the gRPC and HTTP wires have alike.

On those wires the server is the address: every listener of a transport whose URL names
the same address is served by one server, which routes each request to a listener of
its target (:class:`Router`), counts the calls running at once (:class:`Admission`) and
answers, on its event loop, calls finished on other threads (:class:`LoopAnswers`).
:class:`SharedServerListener` is such a server's listener.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from bridge.transport.base import Listener, UnroutedHandler

LOG = logging.getLogger(__name__)


def target_text(exchange: str | None, topic: str, server: str | None, fanout: bool) -> str:
    """``exchange='x' topic='t' server='s' fanout``: a target in an error message."""
    parts = [f"topic={topic!r}"]
    if exchange:
        parts.insert(0, f"exchange={exchange!r}")
    if server:
        parts.append(f"server={server!r}")
    if fanout:
        parts.append("fanout")
    return " ".join(parts)


class Routed(Protocol):
    """What the router needs of a listener."""

    key: tuple[str, str, str]
    started: bool


L = TypeVar("L", bound=Routed)


class Router(Generic[L]):
    """Which local listener serves a target. Thread-safe.

    A call or a cast to ``(exchange, topic)`` goes to one of its listeners, in turn;
    one naming a server to one of ``(exchange, topic, server)``; a fanout cast to
    every listener of the topic, whatever its exchange. An empty exchange is
    ``default_exchange``.
    """

    def __init__(self, default_exchange: str) -> None:
        self.default_exchange = default_exchange
        #: The handler of targets no listener serves (``Driver.serve_unrouted``).
        self.fallback: UnroutedHandler | None = None
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, str], list[L]] = {}
        self._servers: dict[tuple[str, str, str], list[L]] = {}
        self._fanout: dict[str, list[L]] = {}
        # The keys of listeners that stopped (and did not come back): their targets are
        # stopping servers (UNAVAILABLE), not targets nobody serves (NOT_FOUND).
        self._stopped: set[tuple[str, ...]] = set()
        self._turn = itertools.count()

    def add(self, listener: L) -> None:
        exchange, topic, server = listener.key
        with self._lock:
            self._topics.setdefault((exchange, topic), []).append(listener)
            self._servers.setdefault((exchange, topic, server), []).append(listener)
            self._fanout.setdefault(topic, []).append(listener)
            self._stopped.difference_update(((exchange, topic), (exchange, topic, server),
                                             (topic,)))

    def remove(self, listener: L) -> int:
        """Forget ``listener`` (its target is remembered as stopped, see :meth:`stopped`);
        return how many listeners remain."""
        exchange, topic, server = listener.key
        with self._lock:
            _discard(self._topics, (exchange, topic), listener)
            _discard(self._servers, (exchange, topic, server), listener)
            _discard(self._fanout, topic, listener)
            self._stopped.update(((exchange, topic), (exchange, topic, server), (topic,)))
            return sum(len(items) for items in self._topics.values())

    def count(self) -> int:
        """How many listeners there are."""
        with self._lock:
            return sum(len(items) for items in self._topics.values())

    def stopped(self, exchange: str | None, topic: str, server: str | None,
                fanout: bool) -> bool:
        """True when the listeners of the target were released and none came back."""
        if fanout:
            key: tuple[str, ...] = (topic,)
        else:
            exchange = exchange or self.default_exchange
            key = (exchange, topic, server) if server else (exchange, topic)
        with self._lock:
            return key in self._stopped

    def listeners(self) -> list[L]:
        """Every listener, in the order they were added (each is under one topic)."""
        with self._lock:
            return [item for items in self._topics.values() for item in items]

    @property
    def serving(self) -> bool:
        """True when some listener takes messages."""
        with self._lock:
            return any(item.started for items in self._topics.values() for item in items)

    def candidates(self, exchange: str | None, topic: str, server: str | None,
                   fanout: bool) -> list[L]:
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


def _discard(table: dict[Any, list[L]], key: Any, listener: L) -> None:
    items = table.get(key)
    if items and listener in items:
        items.remove(listener)
        if not items:
            del table[key]


class Admission:
    """Counts the calls running on one server against ``limit`` (0: no limit).

    Every :meth:`enter` that returns is matched by exactly one :meth:`leave`; past the
    limit :meth:`enter` raises ``refuse(limit)``, the wire's RESOURCE_EXHAUSTED refusal.
    """

    def __init__(self, limit: int, refuse: Callable[[int], Exception]) -> None:
        self.limit = limit
        self.running = 0
        self._refuse = refuse
        self._lock = threading.Lock()

    def enter(self) -> None:
        """Count one more call, or raise the refusal over the limit."""
        with self._lock:
            if self.limit and self.running >= self.limit:
                raise self._refuse(self.limit)
            self.running += 1

    def leave(self) -> None:
        """Count one call less."""
        with self._lock:
            self.running -= 1


class LoopAnswers:
    """Answers finished on other threads, run on one event loop: those that arrive
    together in one wake-up of the loop. ``what`` names the calls in a log line."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._answers: collections.deque[tuple[Callable[[Any], None], Any]] = (
            collections.deque())
        self._wake_pending = False

    def hand_back(self, loop: asyncio.AbstractEventLoop, on_loop: bool,
                  resolve: Callable[[Any], None], outcome: Any) -> None:
        """Run ``resolve(outcome)`` on ``loop`` (now when ``on_loop``); any thread."""
        if on_loop:
            resolve(outcome)
            return
        self._answers.append((resolve, outcome))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _drain(self) -> None:
        self._wake_pending = False
        answers = self._answers
        while answers:
            resolve, outcome = answers.popleft()
            try:
                resolve(outcome)
            except Exception:
                LOG.exception("Could not hand an answer back to its %s", self._what)


class SharedServerListener(Listener):
    """One target, ``key`` = ``(exchange, topic, server)``, on a shared server.

    The server's router hands it the requests of its target. ``cleanup()`` calls
    ``release(listener)`` once, which forgets it and stops the server with its last
    listener. The server has ``running`` and ``process_serving``.
    """

    def __init__(self, server: Any, key: tuple[str, str, str],
                 release: Callable[[Any], None]) -> None:
        super().__init__()
        self.server = server
        self.key = key
        self.address = server.address
        self.client_url = server.address
        self._release = release
        self._cleaned = False

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
        """Say whether the process can serve (``bridge serve`` sets it every
        ``health_interval`` from ``server.healthy``); the wire's health answers follow."""
        self.server.process_serving = bool(serving)
        self._serving_changed()

    def _serving_changed(self) -> None:  # noqa: B027 - a hook for wires that publish health
        """Called after :meth:`set_serving`."""
