"""``max_concurrent_calls``: how many calls one gRPC server runs at once."""

from __future__ import annotations

import threading

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.status import Rejection


class Admission:
    """Counts the calls running on one server against ``limit`` (0: no limit).

    Every :meth:`enter` that returns is matched by exactly one :meth:`leave`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        """Count one more call; :class:`Rejection` (RESOURCE_EXHAUSTED) over the limit."""
        with self._lock:
            if self.limit and self.running >= self.limit:
                raise Rejection(pb.Failure.REASON_RESOURCE_EXHAUSTED,
                                f"over max_concurrent_calls ({self.limit}): retry later",
                                "max_concurrent_calls", self.limit)
            self.running += 1

    def leave(self) -> None:
        """Count one call less."""
        with self._lock:
            self.running -= 1
