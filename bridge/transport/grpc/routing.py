"""Which local listener serves a request's target, on one shared gRPC server."""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.base import UnroutedHandler

if TYPE_CHECKING:
    from bridge.transport.grpc.listener import GrpcListener

def target_text(target: pb.Target) -> str:
    """``exchange='x' topic='t' server='s' fanout``: a target in an error message."""
    parts = [f"topic={target.topic!r}"]
    if target.exchange:
        parts.insert(0, f"exchange={target.exchange!r}")
    if target.server:
        parts.append(f"server={target.server!r}")
    if target.fanout:
        parts.append("fanout")
    return " ".join(parts)


class Router:
    """Which local listener serves a target. Thread-safe.

    A call or a cast to ``(exchange, topic)`` goes to one of its listeners, in turn;
    one naming a server to one of ``(exchange, topic, server)``; a fanout cast to
    every listener of the topic, whatever its exchange.
    """

    def __init__(self, default_exchange: str) -> None:
        self.default_exchange = default_exchange
        #: The handler of targets no listener serves (``Driver.serve_unrouted``).
        self.fallback: UnroutedHandler | None = None
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, str], list[GrpcListener]] = {}
        self._servers: dict[tuple[str, str, str], list[GrpcListener]] = {}
        self._fanout: dict[str, list[GrpcListener]] = {}
        # The keys of listeners that stopped (and did not come back): their targets are
        # stopping servers (UNAVAILABLE), not targets nobody serves (NOT_FOUND).
        self._stopped: set[tuple[str, ...]] = set()
        self._turn = itertools.count()

    def add(self, listener: GrpcListener) -> None:
        exchange, topic, server = listener.key
        with self._lock:
            self._topics.setdefault((exchange, topic), []).append(listener)
            self._servers.setdefault((exchange, topic, server), []).append(listener)
            self._fanout.setdefault(topic, []).append(listener)
            self._stopped.difference_update(((exchange, topic), (exchange, topic, server),
                                             (topic,)))

    def remove(self, listener: GrpcListener) -> int:
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

    def stopped(self, target: pb.Target) -> bool:
        """True when the listeners of ``target`` were released and none came back."""
        if target.fanout:
            key: tuple[str, ...] = (target.topic,)
        else:
            exchange = target.exchange or self.default_exchange
            key = ((exchange, target.topic, target.server) if target.server
                   else (exchange, target.topic))
        with self._lock:
            return key in self._stopped

    def listeners(self) -> list[GrpcListener]:
        """Every listener, once each."""
        with self._lock:
            return list({id(item): item for items in self._topics.values()
                         for item in items}.values())

    @property
    def serving(self) -> bool:
        """True when some listener takes messages."""
        with self._lock:
            return any(item.started for items in self._topics.values() for item in items)

    def candidates(self, target: pb.Target) -> list[GrpcListener]:
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


def _discard(table: dict[Any, list[GrpcListener]], key: Any, listener: GrpcListener) -> None:
    items = table.get(key)
    if items and listener in items:
        items.remove(listener)
        if not items:
            del table[key]
