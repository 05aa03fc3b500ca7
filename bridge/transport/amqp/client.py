"""The client side of a transport: one connection and one reply queue for every call.

A publish is followed to the broker's confirm. One that the connection lost before
its confirm is published again once reconnected (``retry`` bounds the attempts);
one the broker returned (mandatory, no queue bound) fails with
:class:`MessageUndeliverable`. The reply queue is declared by the first call, never
by a cast (:mod:`~bridge.transport.amqp.reply_queue`). A refusal for good (a login,
a declaration) fails the send at once with a
:class:`~bridge.transport.amqp.refusals.BrokerRefused` naming what to set.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future
from typing import Any

from bridge.exceptions import MessageDeliveryFailure, MessageUndeliverable, MessagingException
from bridge.target import Target
from bridge.timer import Timer
from bridge.transport.amqp import queues
from bridge.transport.amqp.calls import Call, Calls, settle
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost, ExchangeDeclare
from bridge.transport.amqp.envelope import (
    MAX_SECONDS,
    BadMessage,
    compress,
    decode_body,
    encode_envelope,
    expiration_of,
    new_id,
    request_message,
)
from bridge.transport.amqp.options import AmqpOptions
from bridge.transport.amqp.queue_names import QueueNames
from bridge.transport.amqp.refusals import RefusalMemory
from bridge.transport.amqp.reply_queue import ReplyQueue

LOG = logging.getLogger(__name__)

#: The longest a first send waits for the connection's first attempt, in seconds.
FIRST_CONNECT_WAIT = 30.0


def _check_timeout(value: float | None, name: str) -> float | None:
    """A caller's ``timeout``/``call_monitor_timeout``: None or a number of seconds >= 0
    (infinity: no limit); ``ValueError`` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, not {value!r}")
    return value


class Send:
    """What is needed to (re)publish one message, and how far it got."""

    __slots__ = ("exchange", "routing_key", "body", "mandatory", "expiration", "headers",
                 "declare", "always_declare", "future", "call", "retry", "attempts",
                 "give_up")

    def __init__(self, exchange: str, routing_key: str, body: bytes, headers: Any,
                 declare: ExchangeDeclare, future: Future, call: Call | None,
                 retry: int | None, mandatory: bool = False, expiration: str | None = None,
                 always_declare: bool = False) -> None:
        self.exchange, self.routing_key, self.body = exchange, routing_key, body
        self.headers, self.declare, self.always_declare = headers, declare, always_declare
        self.mandatory, self.expiration = mandatory, expiration
        self.future, self.call, self.retry = future, call, retry
        self.attempts = 0
        self.give_up: list[Any] | None = None


class AmqpClient:
    """Sends calls and casts; its connection starts with the first send."""

    def __init__(self, hosts: list[dict[str, Any]], options: AmqpOptions,
                 control_exchange: str, timer: Timer, allowed_remote_exmods: list[str]) -> None:
        self.hosts = hosts
        self.options = options
        self.control_exchange = control_exchange
        self.replies = ReplyQueue(QueueNames(options), options, self._on_reply)
        self.calls = Calls(timer, allowed_remote_exmods, self._why_not_connected)
        self._refusals = RefusalMemory(LOG)  # one log line per refusal, however many sends
        self._timer = timer
        self._conn: AmqpConnection | None = None
        self._conn_lock = threading.Lock()
        self._closed = False

    @property
    def reply_queue(self) -> str:
        """The reply queue's name."""
        return self.replies.name

    @property
    def connection(self) -> AmqpConnection | None:
        """The connection, once the first send started it."""
        return self._conn

    # -- the connection and its reply queue ---------------------------------------------------

    def _connection(self) -> AmqpConnection:
        conn = self._conn
        if conn is None:
            with self._conn_lock:
                if self._closed:
                    raise MessagingException("the transport was cleaned up")
                if self._conn is None:
                    self._conn = AmqpConnection(self.hosts, self.options, "client",
                                                setup=self._setup, refusals=self._refusals)
                    self._conn.start()
                conn = self._conn
        return conn

    def _setup(self, conn: AmqpConnection, channel: Any) -> None:
        self.replies.setup(conn)

    def _refused(self, conn: AmqpConnection) -> BaseException | None:
        """The refusal that ended ``conn``'s first attempt; the next send starts anew."""
        if conn.refused is None:
            return None
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
        conn.close()
        return conn.refused

    def _on_reply(self, msg: Any) -> None:
        """Route one reply to its call (I/O thread)."""
        conn = self._conn
        if conn is not None:
            conn.ack_soon(msg.delivery_info["delivery_tag"])
        try:
            data = decode_body(msg.body, msg.properties, self.options.max_body_size)
        except BadMessage as exc:
            LOG.error("Dropping a bad reply: %s", exc)
            return
        try:
            self.calls.on_reply(data)
        except Exception:
            LOG.exception("Dropping a reply that could not be handled")

    def _why_not_connected(self) -> str | None:
        """Why a request may never have left (a refused TLS handshake, a login...)."""
        conn = self._conn
        if conn is not None and not conn.connected and conn.last_error is not None:
            return f"not connected to the AMQP broker: {conn.last_error}"
        return None

    # -- sending --------------------------------------------------------------------------------

    def send_async(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
                   wait_for_reply: bool, timeout: float | None,
                   call_monitor_timeout: float | None, retry: int | None,
                   at_least_once: bool) -> Future:
        """See :meth:`bridge.transport.amqp.AmqpDriver.send_async`."""
        timeout = _check_timeout(timeout, "timeout")
        if wait_for_reply and call_monitor_timeout is not None:
            call_monitor_timeout = _check_timeout(call_monitor_timeout, "call_monitor_timeout")
            if call_monitor_timeout > MAX_SECONDS:
                raise ValueError(f"call_monitor_timeout must be at most {MAX_SECONDS} s, "
                                 f"not {call_monitor_timeout!r}")
        conn = self._connection()
        if not conn.connected:
            # The first use starts the connection: let its first attempt finish.
            conn.wait_first_attempt(min(FIRST_CONNECT_WAIT, timeout)
                                    if wait_for_reply and timeout else FIRST_CONNECT_WAIT)
        future: Future = Future()
        refused = self._refused(conn)
        if refused is None and wait_for_reply:
            try:
                self.replies.ensure(conn, timeout)
            except MessageDeliveryFailure as exc:
                refused = exc
        if refused is not None:
            settle(future, exc=refused)
            return future
        call = None
        if wait_for_reply:
            call = Call(future, new_id(), call_monitor_timeout)
            inner = request_message(message, ctxt, call.msg_id, self.replies.name,
                                    call_monitor_timeout)
        else:
            inner = request_message(message, ctxt, None, None, None)
        body, headers = compress(encode_envelope(inner), self.options.kombu_compression)
        send = self._route(target, body, headers, future, call, retry, at_least_once,
                           timeout if wait_for_reply else None)
        if call is not None:
            self.calls.add(call, timeout)
        self._publish(conn, send)
        return future

    def _route(self, target: Target, body: bytes, headers: Any, future: Future,
               call: Call | None, retry: int | None, at_least_once: bool,
               timeout: float | None) -> Send:
        """Where a message for ``target`` goes: a fanout exchange, or a topic with a key."""
        opts = self.options
        if target.fanout:
            declare = queues.fanout_exchange(str(target.topic), opts)
            return Send(declare[0], "", body, headers, declare, future, call, retry,
                        always_declare=True)
        exchange = target.exchange or self.control_exchange
        key = f"{target.topic}.{target.server}" if target.server else str(target.topic)
        expiration = expiration_of(timeout) if timeout and timeout != math.inf else None
        return Send(exchange, key, body, headers, queues.topic_exchange(exchange, opts), future,
                    call, retry, mandatory=at_least_once, expiration=expiration)

    def _publish(self, conn: AmqpConnection, send: Send) -> None:
        if send.future.done():
            return
        refused = self._refused(conn) or conn.exchange_refusal(send.exchange)
        if refused is not None:
            self._fail(send, refused)
            return
        try:
            published = conn.publish(send.exchange, send.routing_key, send.body,
                                     mandatory=send.mandatory, expiration=send.expiration,
                                     headers=send.headers, declare=send.declare,
                                     always_declare=send.always_declare)
        except ConnectionLost as exc:
            self._retry(conn, send, exc)
            return
        published.add_done_callback(lambda done: self._published(conn, send, done))

    def _published(self, conn: AmqpConnection, send: Send, done: Future) -> None:
        exc = done.exception()
        if exc is None:
            if send.give_up is not None:
                self._timer.cancel(send.give_up)
            if send.call is None:
                settle(send.future, result=None)
            return
        if isinstance(exc, ConnectionLost):
            self._retry(conn, send, exc)
            return
        if isinstance(exc, MessageUndeliverable):
            exc = MessageUndeliverable(exc.exception, send.exchange, send.routing_key,
                                       send.body)
        self._fail(send, exc)

    def _retry(self, conn: AmqpConnection, send: Send, exc: BaseException) -> None:
        refused = conn.refused or conn.exchange_refusal(send.exchange)
        if refused is not None:
            self._fail(send, refused)
            return
        send.attempts += 1
        if send.retry is not None and send.retry >= 0 and send.attempts > send.retry:
            host = self.hosts[0]
            self._fail(send, MessageDeliveryFailure(
                f"Unable to connect to AMQP server on {host['hostname']}:{host['port']} "
                f"after {send.retry} tries: {conn.last_error or exc}"))
            return
        if self._closed:
            self._fail(send, MessagingException("the transport was cleaned up"))
            return
        if send.retry is not None and send.retry >= 0 and send.give_up is None:
            # Bound the wait for the broker by the reconnection attempts ``retry`` allows.
            opts = self.options
            budget = sum(opts.kombu_reconnect_delay + opts.backoff(n) + 1.0
                         for n in range(1, send.retry + 1))
            send.give_up = self._timer.schedule(
                self._timer.now() + budget,
                lambda: None if conn.connected else self._retry(conn, send, exc))
            send.attempts = send.retry  # the timer's call is the last straw
        conn.when_connected(lambda: self._publish(conn, send))

    def _fail(self, send: Send, exc: BaseException) -> None:
        if send.call is not None:
            self.calls.fail(send.call, exc)
        else:
            settle(send.future, exc=exc)

    def cleanup(self) -> None:
        """Fail the calls in flight, delete the reply queue, close the connection."""
        with self._conn_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        self.calls.fail_all(MessagingException("the transport was cleaned up"))
        self.replies.cleanup(conn if conn is not None and conn.connected else None)
        if conn is not None:
            conn.close()
