"""A server's listener: consumes ``<topic>``, ``<topic>.<server>`` and a fanout queue of its
own, on a connection of its own, and hands each request to the server."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from bridge.exceptions import MalformedMessage, MessagingServerError
from bridge.stats import record_refusal
from bridge.target import Target
from bridge.transport.amqp import queues
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost, refused_for_good
from bridge.transport.amqp.envelope import BadMessage, expiration_seconds
from bridge.transport.amqp.incoming import final_reply, parse_request
from bridge.transport.amqp.replies import ReplySender
from bridge.transport.amqp.salvage import reply_address
from bridge.transport.base import Listener

if TYPE_CHECKING:
    from bridge.transport.amqp import AmqpDriver

LOG = logging.getLogger(__name__)

#: How many ``_unique_id`` values a listener remembers to drop duplicates.
SEEN_IDS = 1024


class AmqpListener(Listener):
    """Consumes ``<topic>``, ``<topic>.<server>`` and a fanout queue of its own."""

    def __init__(self, driver: AmqpDriver, target: Target) -> None:
        super().__init__()
        self.options = opts = driver.options
        self.target = target
        self.names = queues.ServerQueues.for_target(target, driver.settings.control_exchange)
        self.address = (f"{driver.url} exchange={self.names.exchange} "
                        f"topic={self.names.topic} server={target.server}")
        self._stopped = False
        self._consumed_generation = -1
        self._seen: OrderedDict[str, str | None] = OrderedDict()  # unique id -> msg id
        self._conn = AmqpConnection(driver.hosts, opts, f"listen-{self.names.server_key}",
                                    setup=self._setup)
        self.replies = ReplySender(self._conn, opts, driver.timer)
        self._conn.start()
        # Report declare conflicts, refused logins, unknown virtual hosts and refused TLS
        # handshakes at once; an unreachable broker is retried in the background while
        # ``healthy`` stays False.
        self._conn.wait_first_attempt(max(5.0, opts.heartbeat_timeout_threshold / 2))
        error = self._conn.last_error
        if not self._conn.connected and refused_for_good(error):
            self._conn.close()
            raise error

    @property
    def fanout_queue(self) -> str:
        """The name of this listener's own fanout queue."""
        return self.names.fanout_queue

    @property
    def healthy(self) -> bool:
        return self._conn.connected

    # -- declares and consumers (I/O thread) ----------------------------------------------------

    def _setup(self, conn: AmqpConnection, channel: Any) -> None:
        queues.declare_server_queues(channel, self.names, self.options)
        if self.started and not self._stopped:
            self._consume(conn.generation)

    def _consume(self, generation: int) -> None:
        with self.lock:
            if self._consumed_generation == generation or self._stopped:
                return
            self._consumed_generation = generation
        arguments = queues.consumer_arguments(self.options)
        for tag, queue in self.names.consumed():
            self._conn.consume(queue, tag, self._on_delivery, arguments=arguments)

    def _start(self) -> None:
        self._conn.when_connected(lambda: self._consume(self._conn.generation))

    def _stop(self) -> None:
        with self.lock:
            self._stopped = True
        for tag, _ in self.names.consumed():
            try:
                self._conn.cancel(tag)
            except ConnectionLost:
                break

    def reset(self) -> None:
        """Renew the connection (``server.reset()``, SIGHUP to ``bridge serve``).

        The connection is dropped; its I/O thread reconnects, re-declares and
        re-consumes. Messages already taken were acknowledged and their replies wait
        for the new connection, so nothing is lost.
        """
        self._conn.force_reconnect()

    def cleanup(self, reply_grace: float = 10.0) -> None:
        with self.lock:
            self._stopped = True
        left = self.replies.wait_sent(reply_grace)  # let the replies sent reach the broker
        if left:
            LOG.warning("Closing %s with %d replies not confirmed", self.address, left)
        try:
            self._conn.delete_queue(self.names.fanout_queue)
        except ConnectionLost:
            pass  # x-expires removes it later
        self._conn.close()

    # -- incoming (I/O thread) ------------------------------------------------------------------

    def _on_delivery(self, msg: Any) -> None:
        tag = msg.delivery_info["delivery_tag"]
        settled = [False]
        try:
            self._handle_delivery(msg, tag, settled)
        except ConnectionLost:
            pass  # the I/O thread reconnects; an unsettled message is redelivered
        except Exception as exc:
            # Never let one message break the I/O thread (it would be redelivered forever).
            LOG.exception("Unexpected error handling a message on %s", self.address)
            if not settled[0]:
                try:
                    self._conn.reject(tag, requeue=False)
                except ConnectionLost:
                    return
                self._refuse(msg, MessagingServerError(
                    f"the server could not take the request: {type(exc).__name__}"),
                    "internal", msg.body)

    def _handle_delivery(self, msg: Any, tag: int, settled: list[bool]) -> None:
        with self.lock:
            taking = self.started and not self._stopped
        if not taking:
            settled[0] = True
            self._conn.reject(tag, requeue=True)  # taken after stop(): back to the queue
            return
        try:
            incoming, unique_id = parse_request(msg, self.replies, self.options.max_body_size)
        except BadMessage as exc:
            settled[0] = True
            self._conn.reject(tag, requeue=False)  # dead-lettered, if the queue says so
            LOG.error("Rejected a bad message from exchange %r key %r: %s",
                      msg.delivery_info.get("exchange"), msg.delivery_info.get("routing_key"),
                      exc)
            self._refuse(msg, MalformedMessage(f"rejected: {exc}"), exc.reason,
                         msg.body if exc.body is None else exc.body)
            return
        if unique_id is not None:
            if unique_id in self._seen:
                settled[0] = True
                self._conn.ack_soon(tag)
                if self._seen[unique_id] == incoming.msg_id:
                    LOG.warning("Ignoring duplicate message %s (method %s)", unique_id,
                                incoming.method)
                    return
                failure = MalformedMessage(
                    f"the _unique_id {unique_id} was already used by another request")
                LOG.warning("Refused a request of %s: %s", incoming.method, failure)
                record_refusal("amqp", "invalid_argument")
                incoming.reply(failure=failure)
                return
            self._seen[unique_id] = incoming.msg_id
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        # Never under the listener's lock: the method may run right here (the blocking
        # executor) and stop its own server.
        settled[0] = True
        if self.hand_over(incoming):
            self._conn.ack_soon(tag)
        else:
            self._conn.reject(tag, requeue=True)  # stopped meanwhile: back to the queue

    def _refuse(self, msg: Any, failure: Exception, reason: str, body: Any) -> None:
        """Answer a request refused before it could be read, when its caller can be found."""
        record_refusal("amqp", reason)  # the dispatcher never sees it: in no observer's count
        address = reply_address(body) if body is not None else None
        if address is None:
            return
        try:
            seconds_left = expiration_seconds(msg.properties.get("expiration"))
        except BadMessage:
            seconds_left = None
        msg_id, reply_q = address
        self.replies.send(reply_q, final_reply(msg_id, None, failure, self.options.max_body_size),
                          seconds_left, "a refused request")
