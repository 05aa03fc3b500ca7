"""A stateful counter shared by every caller of one server, whatever their wire."""

from __future__ import annotations

import threading

from bridge.target import Target


class CounterEndpoint:
    """Namespace ``counter``: ``increment`` and ``get`` on named counters."""

    target = Target(namespace="counter", version="1.0")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def increment(self, ctx: dict, name: str = "default", by: int = 1) -> int:
        """Add ``by`` to counter ``name`` and return the new value."""
        with self._lock:
            value = self._counts.get(name, 0) + int(by)
            self._counts[name] = value
            return value

    def get(self, ctx: dict, name: str = "default") -> int:
        """The current value of counter ``name``."""
        with self._lock:
            return self._counts.get(name, 0)
