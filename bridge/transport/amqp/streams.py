"""Fanout through a stream (``rabbit_stream_fanout``), as oslo.messaging does it.

Every server of a topic reads the one stream ``<topic>_fanout`` (``x-queue-type:
stream``, retention ``x-max-age`` = ``rabbit_transient_queues_ttl``), bound to the
``<topic>_fanout`` exchange, instead of a fanout queue of its own; a fanout cast is
written once and each server reads it. Reading a stream does not remove what was
read, so each server keeps its place: the offset of the last message it took, which
RabbitMQ puts in each delivery's ``x-stream-offset`` header.

A server's consumer (consumer argument ``x-stream-offset``) starts at ``next``: the
casts written from then on; ``start()`` waits for the broker's ``consume-ok`` so that
a cast sent after ``start()`` returned reaches the server. After a lost connection it
resumes right after the last message taken, so nothing written meanwhile is missed
and nothing taken is read twice. (oslo.messaging 18.3 starts at ``last``, the last
chunk written, so its servers may read again a cast sent before they started.)

Stream consumers need a prefetch (``rabbit_qos_prefetch_count``), and acknowledge
what they read (which only moves the broker's credit on; nothing is deleted).
"""

from __future__ import annotations

import threading
from typing import Any

#: The delivery header that carries a stream message's offset.
OFFSET_HEADER = "x-stream-offset"


class StreamPosition:
    """Where one server's consumer of the fanout stream (re)starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: int | None = None

    @property
    def last(self) -> int | None:
        """The offset of the last message taken, if any."""
        return self._last

    def consumer_arguments(self, base: dict[str, Any] | None) -> dict[str, Any]:
        """The consumer's arguments: ``base`` plus where to start reading."""
        with self._lock:
            start: Any = "next" if self._last is None else self._last + 1
        return {**(base or {}), OFFSET_HEADER: start}

    def taken(self, msg: Any) -> None:
        """A message was taken (handed to the server): later reads start after it."""
        headers = msg.properties.get("application_headers") or {}
        offset = headers.get(OFFSET_HEADER)
        if isinstance(offset, int) and not isinstance(offset, bool):
            with self._lock:
                if self._last is None or offset > self._last:
                    self._last = offset
