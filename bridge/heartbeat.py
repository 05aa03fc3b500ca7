"""Call-monitor heartbeats: one timer thread for every running call that asked for them."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from bridge.timer import Timer

LOG = logging.getLogger(__name__)


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
            self._entry = self._scheduler.timer.schedule(time.monotonic() + self.interval,
                                                         self._beat)


class HeartbeatScheduler:
    """Sends ``incoming.heartbeat()`` every ``int(client_timeout) / 2`` seconds per call."""

    def __init__(self) -> None:
        self.timer = Timer("bridge-heartbeat")

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
        watch = HeartbeatWatch(self, incoming, interval)
        watch._schedule()
        return watch

    def close(self) -> None:
        self.timer.close()
