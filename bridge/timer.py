"""A timer thread: callbacks at monotonic deadlines, cancellable, for many at once."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any

LOG = logging.getLogger(__name__)


class Timer:
    """One thread firing callbacks at deadlines; cancelled entries are dropped lazily.

    The thread starts with the first :meth:`schedule`. Callbacks run on it one at a
    time and must not block for long; an exception in one is logged.
    """

    def __init__(self, name: str) -> None:
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._live = 0
        self._closed = False
        self._name = name
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, callback: Any) -> list[Any]:
        """Call ``callback()`` at monotonic time ``when``; returns a handle for :meth:`cancel`."""
        entry = [callback]
        with self._cond:
            if self._closed:
                return entry
            heapq.heappush(self._heap, (when, next(self._counter), entry))
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

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap and self._heap[0][2][0] is None:
                        heapq.heappop(self._heap)
                        continue
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
                _, _, entry = heapq.heappop(self._heap)
                callback, entry[0] = entry[0], None
                self._live -= 1
            try:
                callback()
            except Exception:
                LOG.exception("Error in a timer callback")

    def close(self) -> None:
        """Drop every scheduled callback and stop the thread."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
