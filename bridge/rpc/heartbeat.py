"""Call-monitor heartbeats: one timer thread for every running call that asked for them."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

from bridge.timer import MONOTONIC, Clock, Timer

LOG = logging.getLogger(__name__)

#: The longest interval between heartbeats: a caller's call-monitor timeout above
#: twice this still gets one heartbeat a day.
MAX_INTERVAL = 86400.0


def heartbeat_interval(client_timeout: Any) -> float | None:
    """Seconds between heartbeats for a caller's call-monitor timeout, as oslo.messaging
    sends them (``int(timeout) / 2``); None when none are due (no timeout, or one that is
    not a finite number of at least 2 s)."""
    if isinstance(client_timeout, bool) or not isinstance(client_timeout, (int, float)):
        return None
    if not math.isfinite(client_timeout) or client_timeout < 2:
        return None
    return min(MAX_INTERVAL, int(min(client_timeout, 2 * MAX_INTERVAL)) / 2)


class HeartbeatWatch:
    """The heartbeats of one call; :meth:`cancel` stops them whatever the outcome."""

    def __init__(self, scheduler: HeartbeatScheduler, incoming: Any, interval: float) -> None:
        self.incoming = incoming
        self.interval = interval
        self.cancelled = False
        self._scheduler = scheduler
        self._entry: list[Any] | None = None
        # Held while a heartbeat is sent, so none can follow cancel() (and the reply).
        self._sending = threading.Lock()

    def cancel(self) -> None:
        with self._sending:
            self.cancelled = True
        if self._entry is not None:
            self._scheduler.timer.cancel(self._entry)

    def _beat(self) -> None:
        with self._sending:
            if self.cancelled:
                return
            try:
                self.incoming.heartbeat()
            except Exception:
                LOG.exception("Could not send a call-monitor heartbeat")
        self._schedule()

    def _schedule(self) -> None:
        if not self.cancelled:
            timer = self._scheduler.timer
            self._entry = timer.schedule(timer.now() + self.interval, self._beat)


class HeartbeatScheduler:
    """Sends ``incoming.heartbeat()`` every ``int(client_timeout) / 2`` seconds per call."""

    def __init__(self, clock: Clock = MONOTONIC) -> None:
        self.timer = Timer("bridge-heartbeat", clock)

    def watch(self, incoming: Any) -> HeartbeatWatch | None:
        """Start heartbeats for ``incoming`` if its caller asked for them."""
        client_timeout = getattr(incoming, "client_timeout", None)
        if client_timeout is None or client_timeout == 0:
            return None
        interval = heartbeat_interval(client_timeout)
        if interval is None:
            LOG.warning("Ignoring call-monitor timeout %r: heartbeats need a finite number "
                        "of at least 2 s", client_timeout)
            return None
        watch = HeartbeatWatch(self, incoming, interval)
        watch._schedule()
        return watch

    def close(self) -> None:
        self.timer.close()
