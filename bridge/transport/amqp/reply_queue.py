"""A client transport's reply queue: declared when the first call needs it, never by a cast.

The queue is declared on the connection's declaration channel and consumed on its
publishing channel. The first call waits for the broker's ``declare-ok`` (once per
transport); later connections declare it again before anything is sent. A refusal
(a 406 on a stable queue-manager name, missing permissions...) fails the calls at
once, with the text naming what to set, and leaves casts alone; the declaration is
tried again :data:`REFUSAL_HOLD` s later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from bridge.transport.amqp import queues
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost
from bridge.transport.amqp.options import AmqpOptions
from bridge.transport.amqp.queue_names import QueueName, QueueNames
from bridge.transport.amqp.refusals import BrokerRefused, explain, refused_for_good

LOG = logging.getLogger(__name__)

#: Seconds a refused reply queue fails the calls at once before it is declared again.
REFUSAL_HOLD = 10.0
#: Consumer tag of the reply consumer.
TAG = "1"


class ReplyQueue:
    """The reply queue of one client; ``on_reply(message)`` gets each reply (I/O thread)."""

    def __init__(self, names: QueueNames, options: AmqpOptions,
                 on_reply: Callable[[Any], None]) -> None:
        self._names = names
        self._options = options
        self._on_reply = on_reply
        self._claim: QueueName | None = None
        self._cond = threading.Condition()
        self._ready = -1  # the connection generation it is declared and consumed on
        self._asked = -1  # the generation a declaration was sent on
        self._refusal: tuple[float, BrokerRefused] | None = None

    @property
    def name(self) -> str:
        """The queue's name (chosen on first use: a stable name is claimed then)."""
        with self._cond:
            if self._claim is None:
                self._claim = self._names.reply()
            return self._claim.name

    @property
    def stable(self) -> bool:
        """Whether the name outlives the process (``use_queue_manager``)."""
        return self._names.stable

    def _wanted(self) -> bool:
        with self._cond:
            return self._claim is not None

    # -- the I/O thread ------------------------------------------------------------------------

    def setup(self, conn: AmqpConnection) -> None:
        """On each new connection (I/O thread, before sends are let through)."""
        if not self._wanted() or self._refused_lately():
            return
        try:
            conn.settle([queues.declare_reply_queue(conn.declarer, self.name, self._options)])
        except Exception as exc:
            if not refused_for_good(exc):
                raise
            self._refused(explain(exc))
            return  # casts go on without it
        self._consume(conn, conn.generation)

    def _consume(self, conn: AmqpConnection, generation: int) -> None:
        conn.consume(self.name, TAG, self._on_reply)
        with self._cond:
            self._ready = generation
            self._cond.notify_all()

    def _declared(self, conn: AmqpConnection, generation: int, done: Future) -> None:
        exc = done.exception()
        if exc is None:
            if conn.generation == generation:
                try:
                    self._consume(conn, generation)
                except ConnectionLost:
                    pass  # the next connection's setup declares and consumes it
            return
        if refused_for_good(exc):
            self._refused(explain(exc))
        with self._cond:
            self._asked = -1
            self._cond.notify_all()

    def _declare_async(self, conn: AmqpConnection) -> None:
        generation = conn.generation
        with self._cond:
            if self._ready == generation or self._asked == generation:
                return
            self._asked = generation
        try:
            future = queues.declare_reply_queue(conn.declarer, self.name, self._options)
        except ConnectionLost:
            with self._cond:
                self._asked = -1
            return
        future.add_done_callback(lambda done: self._declared(conn, generation, done))

    def _refused(self, refusal: BrokerRefused) -> None:
        LOG.error("%s; calls fail until it is accepted (casts go on)", refusal)
        with self._cond:
            self._refusal = (time.monotonic(), refusal)
            self._cond.notify_all()

    def _refused_lately(self) -> BrokerRefused | None:
        with self._cond:
            if self._refusal is None:
                return None
            if time.monotonic() - self._refusal[0] > REFUSAL_HOLD:
                self._refusal = None
                return None
            return self._refusal[1]

    # -- callers ------------------------------------------------------------------------------

    def ensure(self, conn: AmqpConnection, timeout: float | None) -> None:
        """Before a call is sent: have the queue declared and consumed on ``conn``.

        Waits (up to ``timeout``) for the broker's answer when connected; otherwise
        the declaration is made as soon as the connection is up, before the call goes.
        Raises :class:`BrokerRefused` when the broker refused the queue lately.
        """
        refusal = self._refused_lately()
        if refusal is not None:
            raise refusal
        self.name  # noqa: B018 - claims the name: from now on every connection declares it
        if not conn.connected:
            conn.when_connected(lambda: self._declare_async(conn))
            return
        generation = conn.generation
        if self._ready == generation:
            return
        self._declare_async(conn)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self._ready != generation and self._refusal is None
                   and conn.generation == generation and conn.connected):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(1.0 if left is None else min(left, 1.0))
        refusal = self._refused_lately()
        if refusal is not None:
            raise refusal

    def cleanup(self, conn: AmqpConnection | None) -> None:
        """Delete the queue (a stable one stays, for the next process), give the name back."""
        with self._cond:
            claim, self._claim = self._claim, None
        if claim is None:
            return
        if conn is not None and not self.stable:
            try:
                conn.delete_queue(claim.name)
            except ConnectionLost:
                pass
        claim.release()
