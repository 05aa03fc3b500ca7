"""A server's replies: published on its listener's connection, followed to the confirm,
retried while the reply queue is missing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future

from bridge.exceptions import MessageUndeliverable
from bridge.timer import Clock, Timer
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost
from bridge.transport.amqp.options import AmqpOptions

LOG = logging.getLogger(__name__)

#: Seconds between two attempts to reply to a reply queue that does not exist.
RETRY_INTERVAL = 0.25


class ObsoleteQueues:
    """Reply queues found missing for good: later replies to them are dropped at once."""

    def __init__(self, clock: Clock, size: int = 200, ttl: float = 60.0) -> None:
        self._items: OrderedDict[str, float] = OrderedDict()
        self._clock = clock
        self._size, self._ttl = size, ttl
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self._items[name] = self._clock.now() + self._ttl
            self._items.move_to_end(name)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            expires = self._items.get(name)  # type: ignore[arg-type]
            if expires is None:
                return False
            if expires < self._clock.now():
                del self._items[name]  # type: ignore[arg-type]
                return False
            return True


class ReplySender:
    """Sends the replies and heartbeats of one listener's requests.

    A final reply is published without waiting; the I/O thread follows its confirm.
    A return (NO_ROUTE: the reply queue is missing) is retried every
    :data:`RETRY_INTERVAL` s for ``kombu_missing_consumer_retry_timeout``, but never
    past the caller's deadline + 1 s; the queue is then remembered as gone for that
    long. A lost connection re-sends after reconnecting. :meth:`wait_sent` waits for
    the replies still on their way.
    """

    def __init__(self, conn: AmqpConnection, options: AmqpOptions, timer: Timer) -> None:
        self._conn = conn
        self._options = options
        self._timer = timer
        self._obsolete = ObsoleteQueues(timer.clock,
                                        ttl=max(1.0, options.kombu_missing_consumer_retry_timeout))
        self._cond = threading.Condition()
        self._pending = 0

    def send(self, reply_q: str, body: bytes, seconds_left: float | None, method: str) -> None:
        """Publish a final reply; ``seconds_left``: until the caller gives up, if known."""
        if reply_q in self._obsolete:
            LOG.info("The reply queue %s is gone; dropping the reply to %s", reply_q, method)
            return
        patience = self._options.kombu_missing_consumer_retry_timeout
        if seconds_left is not None:
            patience = min(patience, seconds_left + 1.0)
        with self._cond:
            self._pending += 1
        self._attempt(reply_q, body, self._timer.now() + patience, method)

    def heartbeat(self, reply_q: str, body: bytes) -> None:
        """Publish a call-monitor heartbeat without following its confirm."""
        try:
            self._conn.publish("", reply_q, body, mandatory=False)
        except ConnectionLost:
            LOG.debug("Heartbeat to %s not sent: not connected", reply_q)

    def wait_sent(self, grace: float) -> int:
        """Wait up to ``grace`` s for the replies on their way; how many are left."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending <= 0, grace)
            return self._pending

    # -- one reply's attempts ---------------------------------------------------------------------

    def _attempt(self, reply_q: str, body: bytes, limit: float, method: str) -> None:
        try:
            published = self._conn.publish("", reply_q, body,
                                           mandatory=self._options.direct_mandatory_flag)
        except ConnectionLost:
            if self._timer.now() > limit or self._conn.closed:
                self._done(f"Could not send the reply to {method}: the broker is unreachable")
            else:
                self._conn.when_connected(lambda: self._attempt(reply_q, body, limit, method))
            return
        published.add_done_callback(
            lambda done: self._confirmed(done, reply_q, body, limit, method))

    def _confirmed(self, done: Future, reply_q: str, body: bytes, limit: float,
                   method: str) -> None:
        exc = done.exception()
        if exc is None:
            self._done(None)
        elif isinstance(exc, MessageUndeliverable):
            now = self._timer.now()
            if now + RETRY_INTERVAL > limit:
                self._obsolete.add(reply_q)
                self._done(f"The reply queue {reply_q} doesn't exist; dropping the "
                           f"reply to {method}")
            else:
                self._timer.schedule(now + RETRY_INTERVAL,
                                     lambda: self._attempt(reply_q, body, limit, method))
        elif isinstance(exc, ConnectionLost):
            self._attempt(reply_q, body, limit, method)
        else:
            self._done(f"Could not send the reply to {method}: {exc}")

    def _done(self, error: str | None) -> None:
        if error is not None:
            LOG.error("%s", error)
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()
