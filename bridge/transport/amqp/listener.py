"""A server's listener: consumes ``<topic>``, ``<topic>.<server>`` and a fanout queue of its
own (or the topic's fanout stream), on a connection of its own, and hands each request to
the server.

Each request is acknowledged before it is handed over (at most once, as
oslo.messaging): the I/O thread acknowledges what it has read in one ``basic.ack``,
then hands those requests over. What it takes but will not run is refused with a
reply, or put back in its queue; see :mod:`~bridge.transport.amqp.history` for
requests delivered again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge.exceptions import MalformedMessage, MessagingServerError
from bridge.stats import record_refusal
from bridge.target import Target
from bridge.transport.amqp import queues
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost, ReconnectNow
from bridge.transport.amqp.envelope import BadMessage, expiration_seconds
from bridge.transport.amqp.history import History, Verdict
from bridge.transport.amqp.incoming import (
    AmqpIncoming,
    RequestRedelivered,
    final_reply,
    parse_request,
)
from bridge.transport.amqp.queue_names import QueueName, QueueNames
from bridge.transport.amqp.refusals import explain, refused_for_good
from bridge.transport.amqp.replies import ReplySender
from bridge.transport.amqp.salvage import reply_address
from bridge.transport.amqp.streams import StreamPosition
from bridge.transport.base import Listener

if TYPE_CHECKING:
    from bridge.transport.amqp import AmqpDriver

LOG = logging.getLogger(__name__)

#: The longest ``start()`` waits for the broker to attach the fanout stream's consumer.
STREAM_ATTACH_WAIT = 5.0


class AmqpListener(Listener):
    """Consumes ``<topic>``, ``<topic>.<server>`` and a fanout queue of its own."""

    def __init__(self, driver: AmqpDriver, target: Target) -> None:
        super().__init__()
        self.options = opts = driver.options
        self.target = target
        stream = opts.rabbit_stream_fanout
        self._fanout_name: QueueName | None = (
            None if stream else QueueNames(opts).fanout(str(target.topic)))
        self.names = queues.ServerQueues.for_target(
            target, driver.settings.control_exchange,
            f"{target.topic}_fanout" if stream else self._fanout_name.name, stream)
        self._stream = StreamPosition() if stream else None
        self._transient_refused = False  # the broker denied transient topic queues
        self.address = (f"{driver.url} exchange={self.names.exchange} "
                        f"topic={self.names.topic} server={target.server}")
        # Where a delivery's caller sent it, by the consumer that took it (see consumed()).
        exchange, topic = self.names.exchange, self.names.topic
        self.consumer_targets = {
            "1": Target(exchange=exchange, topic=topic),
            "2": Target(exchange=exchange, topic=topic, server=target.server),
            "3": Target(exchange=exchange, topic=topic, fanout=True)}
        self._stopped = False
        self._consumed_generation = -1
        self._history = History()
        self._conn = AmqpConnection(driver.hosts, opts, f"listen-{self.names.server_key}",
                                    setup=self._setup)
        self.replies = ReplySender(self._conn, opts, driver.timer)
        self._conn.start()
        # Report declare conflicts, refused logins, unknown virtual hosts and refused TLS
        # handshakes at once; an unreachable broker is retried in the background while
        # ``healthy`` stays False.
        self._conn.wait_first_attempt(max(5.0, opts.heartbeat_timeout_threshold / 2))
        error = self._conn.refused or self._conn.last_error
        if not self._conn.connected and refused_for_good(error):
            self._conn.close()
            self._release_name()
            raise explain(error)

    @property
    def fanout_queue(self) -> str:
        """The name of this listener's own fanout queue."""
        return self.names.fanout_queue

    @property
    def healthy(self) -> bool:
        return self._conn.connected

    # -- declares and consumers (I/O thread) ----------------------------------------------------

    def _setup(self, conn: AmqpConnection, channel: Any) -> None:
        self._history.connection_lost()
        try:
            queues.declare_server_queues(conn, self.names, self.options, self._transient_refused)
        except Exception as exc:
            if self._transient_refused or not queues.durable_instead(exc, conn, self.names,
                                                                     self.options):
                raise
            self._transient_refused = True
            raise ReconnectNow("declaring the topic queues durable") from exc
        if self.started and not self._stopped:
            self._consume(conn.generation)

    def _consume(self, generation: int) -> None:
        with self.lock:
            if self._consumed_generation == generation or self._stopped:
                return
            self._consumed_generation = generation
        arguments = queues.consumer_arguments(self.options)
        for tag, queue in self.names.consumed():
            if tag == "3" and self._stream is not None:
                # From the caller's thread (start()), wait until the broker reads the stream
                # for this server: a fanout cast sent after start() then reaches it.
                self._conn.consume(queue, tag, self._on_delivery,
                                   self._stream.consumer_arguments(arguments),
                                   wait=STREAM_ATTACH_WAIT)
            else:
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
        if self._fanout_name is not None and not self.options.use_queue_manager:
            try:
                self._conn.delete_queue(self.names.fanout_queue)
            except ConnectionLost:
                pass  # an exclusive queue goes with the connection; x-expires removes others
        self._conn.close()
        self._release_name()

    def _release_name(self) -> None:
        if self._fanout_name is not None:
            self._fanout_name.release()

    # -- incoming (I/O thread) ------------------------------------------------------------------

    def _taking(self) -> bool:
        with self.lock:
            return self.started and not self._stopped

    def _on_delivery(self, msg: Any) -> None:
        settled = [False]
        try:
            self._take(msg, settled)
        except ConnectionLost:
            pass  # the I/O thread reconnects; an unsettled message is redelivered
        except Exception as exc:
            # Never let one message break the I/O thread (it would be redelivered forever).
            LOG.exception("Unexpected error handling a message on %s", self.address)
            if not settled[0]:
                try:
                    self._conn.reject(msg.delivery_info["delivery_tag"], requeue=False)
                except ConnectionLost:
                    return
                self._refuse(msg, MessagingServerError(
                    f"the server could not take the request: {type(exc).__name__}"),
                    "internal", msg.body)

    def _take(self, msg: Any, settled: list[bool]) -> None:
        tag = msg.delivery_info["delivery_tag"]
        if not self._taking():
            settled[0] = True
            self._give_back(msg, tag)
            return
        try:
            incoming, unique_id = parse_request(msg, self.replies, self.options.max_body_size)
            incoming.target = self.consumer_targets.get(msg.delivery_info.get("consumer_tag"))
        except BadMessage as exc:
            settled[0] = True
            self._conn.reject(tag, requeue=False)  # dead-lettered, if the queue says so
            LOG.error("Rejected a bad message from exchange %r key %r: %s",
                      msg.delivery_info.get("exchange"), msg.delivery_info.get("routing_key"),
                      exc)
            self._refuse(msg, MalformedMessage(f"rejected: {exc}"), exc.reason,
                         msg.body if exc.body is None else exc.body)
            return
        verdict = self._history.admit(unique_id, incoming.msg_id,
                                      bool(msg.delivery_info.get("redelivered")))
        settled[0] = True
        if self._stream is not None and msg.delivery_info.get("consumer_tag") == "3":
            self._stream.taken(msg)  # where a new connection resumes reading the stream
        if verdict is Verdict.RUN:
            # Handed over once the acknowledgement is out, never under the listener's lock:
            # the method may run right there (the blocking executor) and stop its server.
            self._conn.ack_soon(tag, then=lambda: self._run(msg, incoming, unique_id))
            return
        self._conn.ack_soon(tag)
        self._decline(incoming, unique_id, verdict)

    def _run(self, msg: Any, incoming: AmqpIncoming, unique_id: str | None) -> None:
        self._history.ran(unique_id)
        if not self.hand_over(incoming):  # stopped since it was taken
            self._history.declined(unique_id)
            self._give_back(msg, None, incoming)

    def _decline(self, incoming: AmqpIncoming, unique_id: str | None,
                 verdict: Verdict) -> None:
        """Answer (or drop) a request that must not run."""
        what = f"{'call' if incoming.wants_reply else 'cast'} of {incoming.method!r}"
        if verdict is Verdict.DUPLICATE:
            LOG.warning("Ignoring duplicate message %s (%s)", unique_id, what)
            return
        if verdict is Verdict.REUSED_ID:
            failure: Exception = MalformedMessage(
                f"the _unique_id {unique_id} was already used by another request")
            reason = "invalid_argument"
        else:
            failure = RequestRedelivered(
                "the broker delivered this request again (its first delivery may already "
                "have run), so it was not run again")
            reason = "unavailable"
        LOG.warning("Refused a %s (unique id %s): %s", what, unique_id, failure)
        record_refusal("amqp", reason)
        incoming.reply(failure=failure)

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

    def _give_back(self, msg: Any, tag: int | None, incoming: AmqpIncoming | None = None,
                   ) -> None:
        """Put a request taken but not run back in its queue, as a new message.

        ``tag``: the delivery, still to be settled; None once acknowledged. A requeued
        message would come back marked redelivered, which servers refuse, so a copy is
        published to the queue it came from, then the original acknowledged (the broker
        takes the two in that order). A request already redelivered is requeued as it
        is (it may have run before); a fanout copy is this server's own, and dropped.
        """
        consumer = msg.delivery_info.get("consumer_tag")
        queue = dict(self.names.consumed()).get(consumer)
        redelivered = bool(msg.delivery_info.get("redelivered"))
        if queue is None or queue == self.names.fanout_queue or (tag is not None and redelivered):
            if tag is not None:
                self._conn.reject(tag, requeue=queue is not None and
                                  queue != self.names.fanout_queue)
            return
        properties = msg.properties
        try:
            expiration_seconds(properties.get("expiration"))  # the broker would refuse it
        except BadMessage:
            if tag is not None:
                self._conn.reject(tag, requeue=True)
            return
        body = msg.body.encode("utf-8") if isinstance(msg.body, str) else msg.body
        headers = properties.get("application_headers")
        try:
            self._conn.publish("", queue, bytes(body), expiration=properties.get("expiration"),
                               headers=headers if isinstance(headers, dict) and headers else None)
        except ConnectionLost:
            if incoming is not None:
                incoming.reply(failure=MessagingServerError(
                    "the server stopped before running the request"))
            return
        if tag is not None:
            self._conn.ack_soon(tag)
