"""Call-monitor heartbeats: one timer thread for every running call that asked for them."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any

LOG = logging.getLogger(__name__)


class HeartbeatWatch:
    """The heartbeats of one call; :meth:`cancel` stops them whatever the outcome."""

    def __init__(self, incoming: Any, interval: float) -> None:
        self.incoming = incoming
        self.interval = interval
        self.cancelled = False
        # Held while a heartbeat is sent, so none can follow cancel() (and the reply).
        self._sending = threading.Lock()

    def cancel(self) -> None:
        with self._sending:
            self.cancelled = True

    def send(self) -> None:
        with self._sending:
            if not self.cancelled:
                self.incoming.heartbeat()


class HeartbeatScheduler:
    """Sends ``incoming.heartbeat()`` every ``int(client_timeout) / 2`` seconds per call."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, HeartbeatWatch]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, incoming: Any) -> HeartbeatWatch | None:
        """Start heartbeats for ``incoming`` if its caller asked for them."""
        client_timeout = getattr(incoming, "client_timeout", None)
        if not client_timeout:
            return None
        interval = int(client_timeout) / 2
        if interval < 1:
            LOG.warning("Ignoring call-monitor timeout %s: heartbeats need at least 2 s",
                        client_timeout)
            return None
        watch = HeartbeatWatch(incoming, interval)
        with self._cond:
            if self._closed:
                return None
            heapq.heappush(self._heap, (time.monotonic() + interval, next(self._counter), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bridge-heartbeat",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        continue
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._closed:
                    return
                _, _, watch = heapq.heappop(self._heap)
                heapq.heappush(self._heap, (time.monotonic() + watch.interval,
                                            next(self._counter), watch))
            try:
                watch.send()
            except Exception:
                LOG.exception("Could not send a call-monitor heartbeat")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
