"""A timer thread: callbacks at clock deadlines, cancellable, for many at once.

The clock is :data:`MONOTONIC` (``time.monotonic``) unless a test gives a
:class:`ManualClock`, whose time moves only when the test calls ``advance()``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from typing import Any

LOG = logging.getLogger(__name__)

#: The longest single wait of a timer thread, in seconds; a later deadline is waited
#: for in steps (``Condition.wait`` cannot take any float, and a clock may jump).
MAX_WAIT = 3600.0


class Clock:
    """``time.monotonic()``, and a wait on a condition until an instant of that clock."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        """Wait on ``cond`` (held) until notified or the clock reaches ``until``."""
        if until is None:
            cond.wait()
        else:
            cond.wait(min(MAX_WAIT, max(0.0, until - self.now())))


MONOTONIC = Clock()


class ManualClock(Clock):
    """A clock that stands still until :meth:`advance`; for tests, so none sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._waiting: set[threading.Condition] = set()

    def now(self) -> float:
        return self._now

    def wait(self, cond: threading.Condition, until: float | None) -> None:
        with self._lock:
            self._waiting.add(cond)
        cond.wait(MAX_WAIT)

    def advance(self, seconds: float) -> None:
        """Move the time on and wake every timer waiting on this clock."""
        with self._lock:
            self._now += seconds
            waiting = list(self._waiting)
        for cond in waiting:
            with cond:
                cond.notify_all()


class Timer:
    """One thread firing callbacks at deadlines; cancelled entries are dropped lazily.

    The thread starts with the first :meth:`schedule`. Callbacks run on it one at a
    time and must not block for long; an exception in one is logged and the thread
    goes on.
    """

    def __init__(self, name: str, clock: Clock = MONOTONIC) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._live = 0
        self._closed = False
        self._name = name
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        """The current time of this timer's clock."""
        return self.clock.now()

    def schedule(self, when: float, callback: Any) -> list[Any]:
        """Call ``callback()`` at clock time ``when``; returns a handle for :meth:`cancel`.

        ``when`` must be a number that is not NaN (``ValueError``); +infinity never fires.
        """
        if not isinstance(when, (int, float)) or math.isnan(when):
            raise ValueError(f"a timer deadline must be a number, not {when!r}")
        entry = [callback]
        if when == math.inf:
            return entry
        with self._cond:
            if self._closed:
                return entry
            heapq.heappush(self._heap, (float(when), next(self._counter), entry))
            self._live += 1
            if len(self._heap) > 1024 and len(self._heap) > 4 * self._live:
                self._heap = [item for item in self._heap if item[2][0] is not None]
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """Drop a scheduled callback (a no-op once it ran)."""
        with self._cond:
            if entry[0] is not None:
                entry[0] = None
                self._live -= 1

    def _next_due(self) -> Any:
        """Wait for the next due callback and take it; None once closed (lock held)."""
        while not self._closed:
            heap = self._heap
            if heap and heap[0][2][0] is None:
                heapq.heappop(heap)
                continue
            if heap and heap[0][0] <= self.clock.now():
                _, _, entry = heapq.heappop(heap)
                callback, entry[0] = entry[0], None
                self._live -= 1
                return callback
            self.clock.wait(self._cond, heap[0][0] if heap else None)
        return None

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    callback = self._next_due()
                if callback is None:
                    return
                callback()
            except Exception:
                LOG.exception("Error in a timer callback of %s", self._name)

    def close(self) -> None:
        """Drop every scheduled callback and stop the thread."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
