"""``rabbit://`` (also ``kombu://``, ``amqp://``): oslo.messaging's RabbitMQ wire, through kombu.

Servers declare exactly the exchanges and queues an oslo.messaging server
declares (WIRE.md 2.2, 2.3) and speak its envelope (2.6-2.8), so oslo peers and
rpc-bridge peers share topics in either direction. See docs/amqp.md.

Layout of the threads: every listener and every client transport owns one
:class:`~bridge.transport.amqp.connection.AmqpConnection`, whose I/O thread reads
(deliveries, confirms, replies, heartbeats) while callers only write. A call is a
Future completed by the reply consumer (or by one timer thread on timeout), so
:meth:`AmqpDriver.send_async` keeps any number of calls in flight without a
thread each; :meth:`AmqpDriver.send` just waits on that Future.
"""

from __future__ import annotations

import bz2
import itertools
import json
import logging
import os
import ssl
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future, InvalidStateError
from typing import Any

import amqp.exceptions

from bridge.auth.identity import Credentials
from bridge.exceptions import (
    MalformedMessage,
    MessageDeliveryFailure,
    MessageUndeliverable,
    MessagingException,
    MessagingTimeout,
    deserialize_failure,
    serialize_failure,
)
from bridge.stats import record_refusal
from bridge.target import Target
from bridge.timer import Timer
from bridge.transport.amqp.connection import AmqpConnection, ConnectionLost
from bridge.transport.amqp.options import GROUP, AmqpOptions, kombu_urls
from bridge.transport.base import Capabilities, Driver, IncomingMessage, Listener

LOG = logging.getLogger(__name__)

ENVELOPE_VERSION = "2.0"
_CONTEXT_PREFIX = "_context_"
_COMPRESSION = {"gzip": "application/x-gzip", "bz2": "application/x-bz2"}
_REPLY_RETRY_INTERVAL = 0.25


def _settle(future: Future, result: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``future`` unless it is done already (its caller may have cancelled it)."""
    if future.done():
        return
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled meanwhile


class _Ids:
    """Unique 32-hex-digit ids, like uuid4().hex, without a system call per id.

    80 random bits per process (renewed after a fork) followed by a 48-bit counter.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), os.urandom(10).hex()
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_id = _Ids()


def _refused_for_good(error: BaseException | None) -> bool:
    """Whether a connection failed for a reason that trying again will not change.

    A refused login, an unknown virtual host, a declare conflict (PRECONDITION_FAILED),
    or a TLS handshake that either side refused: a broker certificate not trusted or
    for another host name, a client certificate missing or not trusted, TLS towards a
    plain port. A TLS connection cut during the handshake (``SSLEOFError``) may be a
    broker restarting, and is retried like an unreachable broker.
    """
    if isinstance(error, (amqp.exceptions.ChannelError,
                          amqp.exceptions.IrrecoverableConnectionError)):
        return True
    return isinstance(error, ssl.SSLError) and not isinstance(error, (
        ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError, ssl.SSLWantReadError,
        ssl.SSLWantWriteError))


class BadMessage(ValueError):
    """A delivery that is not an oslo.messaging RPC message."""


def _json_default(value: Any) -> Any:
    # What oslo's jsonutils.to_primitive does for the common non-JSON types.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_envelope(inner: dict[str, Any]) -> bytes:
    """The body oslo.messaging sends: the inner message JSON-encoded inside the envelope."""
    return json.dumps({"oslo.version": ENVELOPE_VERSION,
                       "oslo.message": json.dumps(inner, default=_json_default)}).encode()


def decode_body(body: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """Decode one delivery into the inner message dict (WIRE.md 2.6); BadMessage if not."""
    headers = properties.get("application_headers") or {}
    compression = headers.get("compression")
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        if compression == _COMPRESSION["gzip"]:
            body = zlib.decompress(body)
        elif compression == _COMPRESSION["bz2"]:
            body = bz2.decompress(body)
        elif compression:
            raise BadMessage(f"unsupported compression {compression!r}")
    except (zlib.error, OSError, ValueError) as exc:
        raise BadMessage(f"cannot decompress the body: {exc}") from None
    content_type = properties.get("content_type")
    if content_type not in (None, "", "application/json"):
        raise BadMessage(f"unsupported content type {content_type!r}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage(f"the body is a JSON {type(data).__name__}, not an object")
    if "oslo.version" in data and "oslo.message" in data:
        version = data["oslo.version"]
        if not isinstance(version, str) or version.split(".")[0] != ENVELOPE_VERSION[0]:
            raise BadMessage(f"unsupported envelope version {version!r}")
        inner = data["oslo.message"]
        if not isinstance(inner, str):
            raise BadMessage("the envelope's oslo.message is not a string")
        try:
            data = json.loads(inner)
        except ValueError as exc:
            raise BadMessage(f"the envelope's oslo.message is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadMessage("the envelope's oslo.message is not a JSON object")
    return data


# -- server side -------------------------------------------------------------------------


class AmqpIncoming(IncomingMessage):
    """A request taken from RabbitMQ (already acknowledged, as oslo.messaging does)."""

    wire = "amqp"

    def __init__(self, listener: AmqpListener, ctxt: dict[str, Any], message: dict[str, Any],
                 msg_id: str | None, reply_q: str | None, client_timeout: float | None,
                 deadline: float | None) -> None:
        self._listener = listener
        self.ctxt = ctxt
        self.message = message
        self.msg_id = msg_id
        self.reply_q = reply_q
        self.client_timeout = client_timeout
        self.deadline = deadline
        self.wants_reply = bool(msg_id and reply_q)
        self._replied = False

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if not self.wants_reply or self._replied:
            return
        self._replied = True
        failure_text = None
        if failure is not None:
            failure_text = json.dumps(serialize_failure(failure), default=_json_default)
        try:
            body = self._reply_body(result, failure_text, True)
        except (TypeError, ValueError) as exc:  # a result JSON cannot carry
            body = self._reply_body(None, json.dumps(serialize_failure(exc)), True)
        self._listener.send_reply(self.reply_q or "", body, self.deadline, self.method)

    def heartbeat(self) -> None:
        if not self.wants_reply or self._replied:
            return
        self._listener.send_heartbeat(self.reply_q or "", self._reply_body(None, None, False))

    def _reply_body(self, result: Any, failure: str | None, ending: bool) -> bytes:
        return encode_envelope({"result": result, "failure": failure, "ending": ending,
                                "_msg_id": self.msg_id, "_unique_id": new_id()})


class _ObsoleteQueues:
    """Reply queues found missing for good: later replies to them are dropped at once."""

    def __init__(self, size: int = 200, ttl: float = 60.0) -> None:
        self._items: OrderedDict[str, float] = OrderedDict()
        self._size, self._ttl = size, ttl
        self.lock = threading.Lock()

    def add(self, name: str) -> None:
        with self.lock:
            self._items[name] = time.monotonic() + self._ttl
            self._items.move_to_end(name)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __contains__(self, name: object) -> bool:
        with self.lock:
            expires = self._items.get(name)  # type: ignore[arg-type]
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._items[name]  # type: ignore[arg-type]
                return False
            return True


class AmqpListener(Listener):
    """Consumes ``<topic>``, ``<topic>.<server>`` and a fanout queue of its own."""

    def __init__(self, driver: AmqpDriver, target: Target) -> None:
        super().__init__()
        self.driver = driver
        self.options = opts = driver.options
        self.target = target
        self.exchange = target.exchange or driver.settings.control_exchange
        self.topic = str(target.topic)
        self.server_key = f"{target.topic}.{target.server}"
        self.fanout_exchange = f"{target.topic}_fanout"
        self.fanout_queue = f"{target.topic}_fanout_{uuid.uuid4().hex}"
        self.address = (f"{driver.url} exchange={self.exchange} topic={self.topic} "
                        f"server={target.server}")
        # Where a delivery's caller sent it, by the consumer that took it (see _consume).
        self.consumer_targets = {
            "1": Target(exchange=self.exchange, topic=self.topic),
            "2": Target(exchange=self.exchange, topic=self.topic, server=target.server),
            "3": Target(exchange=self.exchange, topic=self.topic, fanout=True)}
        self._stopped = False
        self._consumed_generation = -1
        self._seen: deque[str] = deque(maxlen=16)
        self._obsolete = _ObsoleteQueues(ttl=max(1.0, opts.kombu_missing_consumer_retry_timeout))
        self._replies_cond = threading.Condition()
        self._replies_pending = 0
        self._conn = AmqpConnection(driver.hosts, opts, f"listen-{self.server_key}",
                                    setup=self._setup)
        self._conn.start()
        # Report declare conflicts, refused logins, unknown virtual hosts and refused TLS
        # handshakes at once; an unreachable broker is retried in the background while
        # ``healthy`` stays False.
        self._conn.wait_first_attempt(max(5.0, opts.heartbeat_timeout_threshold / 2))
        error = self._conn.last_error
        if not self._conn.connected and _refused_for_good(error):
            self._conn.close()
            raise error

    @property
    def healthy(self) -> bool:
        return self._conn.connected

    # -- declares and consumers (I/O thread) ----------------------------------------------------

    def _setup(self, conn: AmqpConnection, channel: Any) -> None:
        opts = self.options
        durable = opts.topic_durable
        channel.exchange_declare(self.exchange, "topic", durable=durable,
                                 auto_delete=opts.amqp_auto_delete)
        for name in (self.topic, self.server_key):
            channel.queue_declare(name, durable=durable, auto_delete=opts.amqp_auto_delete,
                                  exclusive=False, arguments=opts.topic_queue_arguments())
            channel.queue_bind(name, self.exchange, name)
        transient_durable = bool(opts.rabbit_transient_quorum_queue)
        channel.exchange_declare(self.fanout_exchange, "fanout", durable=transient_durable,
                                 auto_delete=True)
        channel.queue_declare(self.fanout_queue, durable=transient_durable, auto_delete=False,
                              exclusive=False, arguments=opts.transient_queue_arguments())
        channel.queue_bind(self.fanout_queue, self.fanout_exchange, self.topic)
        if self.started and not self._stopped:
            self._consume(conn.generation)

    def _consume(self, generation: int) -> None:
        with self.lock:
            if self._consumed_generation == generation or self._stopped:
                return
            self._consumed_generation = generation
        arguments = self.options.consumer_arguments()
        for tag, queue in (("1", self.topic), ("2", self.server_key), ("3", self.fanout_queue)):
            self._conn.consume(queue, tag, self._on_delivery, arguments=arguments)

    def _start(self) -> None:
        self._conn.when_connected(lambda: self._consume(self._conn.generation))

    def _stop(self) -> None:
        with self.lock:
            self._stopped = True
        for tag in ("1", "2", "3"):
            try:
                self._conn.cancel(tag)
            except ConnectionLost:
                break

    def reset(self) -> None:
        """Renew the connection (``server.reset()``, SIGHUP to ``bridge serve``).

        The connection is dropped; its I/O thread reconnects, re-declares and
        re-consumes. Messages already taken were acknowledged on receipt and their
        replies wait for the new connection, so nothing is lost.
        """
        self._conn.force_reconnect()

    def cleanup(self, reply_grace: float = 10.0) -> None:
        with self.lock:
            self._stopped = True
        with self._replies_cond:  # let the replies already sent reach the broker
            if not self._replies_cond.wait_for(lambda: self._replies_pending <= 0, reply_grace):
                LOG.warning("Closing %s with %d replies not confirmed", self.address,
                            self._replies_pending)
        try:
            self._conn.delete_queue(self.fanout_queue)
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
        except Exception:
            # Never let one message break the I/O thread (it would be redelivered forever).
            LOG.exception("Unexpected error handling a message on %s", self.address)
            if not settled[0]:
                try:
                    self._conn.reject(tag, requeue=False)
                except ConnectionLost:
                    return
                record_refusal("amqp", "internal")

    def _handle_delivery(self, msg: Any, tag: int, settled: list[bool]) -> None:
        with self.lock:
            taking = self.started and not self._stopped
        if not taking:
            settled[0] = True
            self._conn.reject(tag, requeue=True)  # taken after stop(): back to the queue
            return
        try:
            incoming, unique_id = self._parse(msg)
        except BadMessage as exc:
            settled[0] = True
            self._conn.reject(tag, requeue=False)
            # The dispatcher never sees it, so it is in no observer's count.
            record_refusal("amqp", "invalid_argument")
            self._bad_message(msg, exc)
            return
        if unique_id is not None:
            if unique_id in self._seen:
                settled[0] = True
                self._conn.ack_soon(tag)
                LOG.warning("Ignoring duplicate message %s (method %s)", unique_id,
                            incoming.method)
                return
            self._seen.append(unique_id)
        # Never under the listener's lock: the method may run right here (the blocking
        # executor) and stop its own server.
        settled[0] = True
        if self.hand_over(incoming):
            self._conn.ack_soon(tag)
        else:
            self._conn.reject(tag, requeue=True)  # stopped meanwhile: back to the queue

    def _parse(self, msg: Any) -> tuple[AmqpIncoming, str | None]:
        data = decode_body(msg.body, msg.properties)
        ctxt: dict[str, Any] = {}
        message: dict[str, Any] = {}
        for key, value in data.items():
            if key.startswith(_CONTEXT_PREFIX):
                ctxt[key[len(_CONTEXT_PREFIX):]] = value
            else:
                message[key] = value
        msg_id = message.pop("_msg_id", None)
        reply_q = message.pop("_reply_q", None)
        client_timeout = message.pop("_timeout", None)
        unique_id = message.pop("_unique_id", None)
        if msg_id is not None and not isinstance(msg_id, str):
            raise BadMessage(f"_msg_id must be a string, not {msg_id!r}")
        if reply_q is not None and not isinstance(reply_q, str):
            raise BadMessage(f"_reply_q must be a string, not {reply_q!r}")
        if client_timeout is not None and (isinstance(client_timeout, bool) or
                                           not isinstance(client_timeout, (int, float))):
            raise BadMessage(f"_timeout must be a number or null, not {client_timeout!r}")
        if not isinstance(unique_id, str):
            unique_id = None
        ctxt["client_timeout"] = client_timeout
        deadline = None
        expiration = msg.properties.get("expiration")
        if expiration:
            try:
                deadline = time.monotonic() + int(expiration) / 1000.0
            except (TypeError, ValueError):
                deadline = None
        incoming = AmqpIncoming(self, ctxt, message, msg_id, reply_q, client_timeout, deadline)
        incoming.target = self.consumer_targets.get(msg.delivery_info.get("consumer_tag"))
        # RabbitMQ refuses a user_id property other than the publishing connection's user:
        # when present, it names the sender (bridge.auth).
        user_id = msg.properties.get("user_id")
        incoming.credentials = Credentials(
            "amqp", broker_user=user_id if isinstance(user_id, str) and user_id else None,
            brokered=True)
        return incoming, unique_id

    def _bad_message(self, msg: Any, exc: BadMessage) -> None:
        LOG.error("Rejected a bad message from exchange %r key %r: %s",
                  msg.delivery_info.get("exchange"), msg.delivery_info.get("routing_key"), exc)
        try:
            data = json.loads(msg.body)
            if isinstance(data, dict) and isinstance(data.get("oslo.message"), str):
                data = json.loads(data["oslo.message"])
        except Exception:
            return
        if not isinstance(data, dict):
            return
        msg_id, reply_q = data.get("_msg_id"), data.get("_reply_q")
        if not (isinstance(msg_id, str) and isinstance(reply_q, str) and msg_id and reply_q):
            return
        failure = json.dumps(serialize_failure(MalformedMessage(f"rejected: {exc}"),
                                               include_traceback=False))
        body = encode_envelope({"result": None, "failure": failure, "ending": True,
                                "_msg_id": msg_id, "_unique_id": uuid.uuid4().hex})
        try:
            self._conn.publish("", reply_q, body, mandatory=False)
        except ConnectionLost:
            pass

    # -- replies (executor threads) -------------------------------------------------------------

    def send_reply(self, reply_q: str, body: bytes, deadline: float | None, method: str) -> None:
        """Publish a final reply without waiting for it; a missing reply queue is retried.

        The I/O thread follows the confirm: a return (NO_ROUTE) is retried every 0.25 s
        for ``kombu_missing_consumer_retry_timeout`` but never past the caller's deadline
        + 1 s; a lost connection re-sends after reconnecting. :meth:`cleanup` waits for
        the replies still on their way (bounded).
        """
        if reply_q in self._obsolete:
            LOG.info("The reply queue %s is gone; dropping the reply to %s", reply_q, method)
            return
        limit = time.monotonic() + self.options.kombu_missing_consumer_retry_timeout
        if deadline is not None:
            limit = min(limit, deadline + 1.0)
        with self._replies_cond:
            self._replies_pending += 1
        self._reply_attempt(reply_q, body, limit, method)

    def _reply_attempt(self, reply_q: str, body: bytes, limit: float, method: str) -> None:
        try:
            published = self._conn.publish("", reply_q, body,
                                           mandatory=self.options.direct_mandatory_flag)
        except ConnectionLost:
            if time.monotonic() > limit or self._conn.closed:
                self._reply_done(f"Could not send the reply to {method}: the broker is "
                                 "unreachable")
            else:
                self._conn.when_connected(
                    lambda: self._reply_attempt(reply_q, body, limit, method))
            return
        published.add_done_callback(
            lambda done: self._reply_confirmed(done, reply_q, body, limit, method))

    def _reply_confirmed(self, done: Future, reply_q: str, body: bytes, limit: float,
                         method: str) -> None:
        exc = done.exception()
        if exc is None:
            self._reply_done(None)
        elif isinstance(exc, MessageUndeliverable):
            if time.monotonic() + _REPLY_RETRY_INTERVAL > limit:
                self._obsolete.add(reply_q)
                self._reply_done(f"The reply queue {reply_q} doesn't exist; dropping the "
                                 f"reply to {method}")
            else:
                self.driver._timer.schedule(
                    time.monotonic() + _REPLY_RETRY_INTERVAL,
                    lambda: self._reply_attempt(reply_q, body, limit, method))
        elif isinstance(exc, ConnectionLost):
            self._reply_attempt(reply_q, body, limit, method)
        else:
            self._reply_done(f"Could not send the reply to {method}: {exc}")

    def _reply_done(self, error: str | None) -> None:
        if error is not None:
            LOG.error("%s", error)
        with self._replies_cond:
            self._replies_pending -= 1
            self._replies_cond.notify_all()

    def send_heartbeat(self, reply_q: str, body: bytes) -> None:
        """Publish a call-monitor heartbeat without waiting for its confirm."""
        try:
            self._conn.publish("", reply_q, body, mandatory=False)
        except ConnectionLost:
            LOG.debug("Heartbeat to %s not sent: not connected", reply_q)


# -- client side ---------------------------------------------------------------------------


class _Call:
    """One call in flight: its Future, deadlines and any partial (old-style) reply."""

    __slots__ = ("future", "msg_id", "monitor", "monitor_deadline", "timers", "result",
                 "failure")

    def __init__(self, future: Future, msg_id: str, monitor: float | None) -> None:
        self.future = future
        self.msg_id = msg_id
        self.monitor = monitor
        self.monitor_deadline: float | None = None
        self.timers: list[list[Any]] = []
        self.result: Any = None
        self.failure: Any = None


class _Send:
    """What is needed to (re)publish one message."""

    __slots__ = ("exchange", "routing_key", "body", "mandatory", "expiration", "declare",
                 "always_declare", "future", "call", "retry", "attempts", "message",
                 "give_up")

    def __init__(self, **kwargs: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, kwargs.get(name))
        self.attempts = 0


class AmqpDriver(Driver):
    """The RabbitMQ driver: oslo.messaging's wire format over kombu/py-amqp."""

    wire = "amqp"
    implements = Capabilities(schemes=("rabbit", "kombu", "amqp"), option_group=GROUP,
                              options_type=AmqpOptions, non_blocking_send=True, reset=True)

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        self.hosts = kombu_urls(url)
        self.reply_queue = f"reply_{uuid.uuid4().hex}"
        self._conn: AmqpConnection | None = None
        self._conn_lock = threading.Lock()
        self._calls: dict[str, _Call] = {}
        self._timer = Timer("bridge-amqp-timeouts")
        self._closed = False

    def listen(self, target: Target) -> Listener:
        return AmqpListener(self, target)

    # -- the client connection ----------------------------------------------------------------

    def _connection(self) -> AmqpConnection:
        conn = self._conn
        if conn is None:
            with self._conn_lock:
                if self._closed:
                    raise MessagingException("the transport was cleaned up")
                if self._conn is None:
                    self._conn = AmqpConnection(self.hosts, self.options, "client",
                                                setup=self._setup_reply_queue)
                    self._conn.start()
                conn = self._conn
        return conn

    def _setup_reply_queue(self, conn: AmqpConnection, channel: Any) -> None:
        channel.queue_declare(self.reply_queue, durable=self.options.rabbit_transient_quorum_queue,
                              auto_delete=False, exclusive=False,
                              arguments=self.options.transient_queue_arguments())
        conn.consume(self.reply_queue, "1", self._on_reply)

    def _on_reply(self, msg: Any) -> None:
        """Route one reply to its call (I/O thread)."""
        conn = self._conn
        if conn is not None:
            conn.ack_soon(msg.delivery_info["delivery_tag"])
        try:
            self._route_reply(msg)
        except Exception:
            LOG.exception("Dropping a reply that could not be handled")

    def _route_reply(self, msg: Any) -> None:
        try:
            data = decode_body(msg.body, msg.properties)
        except BadMessage as exc:
            LOG.error("Dropping a bad reply: %s", exc)
            return
        msg_id = data.get("_msg_id")
        call = self._calls.get(msg_id) if isinstance(msg_id, str) else None
        if call is None:
            LOG.info("No calling threads waiting for msg_id %s", msg_id)
            return
        if data.get("failure") is not None:
            call.failure = data["failure"]
        if data.get("result") is not None:
            call.result = data["result"]
        if not data.get("ending"):
            if data.get("result") is None and call.monitor:
                call.monitor_deadline = time.monotonic() + call.monitor
            return
        if self._calls.pop(msg_id, None) is None:
            return
        self._finish_timers(call)
        if call.failure is not None:
            failure = call.failure
            try:
                if isinstance(failure, str):
                    failure = json.loads(failure)
                if not isinstance(failure, dict):
                    raise ValueError("not an object")
                exc = deserialize_failure(failure, self.allowed_remote_exmods)
            except ValueError as error:
                exc = MessagingException(f"Unreadable failure in the reply to {msg_id}: {error}")
            _settle(call.future, exc=exc)
        else:
            _settle(call.future, result=call.result)

    def _forget(self, call: _Call) -> None:
        if self._calls.pop(call.msg_id, None) is not None:
            self._finish_timers(call)

    def _finish_timers(self, call: _Call) -> None:
        for entry in call.timers:
            self._timer.cancel(entry)

    def _expire(self, msg_id: str, monitor: bool) -> None:
        call = self._calls.get(msg_id)
        if call is None:
            return
        if monitor and call.monitor_deadline is not None:
            now = time.monotonic()
            if call.monitor_deadline > now:
                call.timers.append(self._timer.schedule(
                    call.monitor_deadline, lambda: self._expire(msg_id, True)))
                return
        if self._calls.pop(msg_id, None) is None:
            return
        self._finish_timers(call)
        reason = "call monitor" if monitor else "reply"
        text = f"Timed out waiting for a {reason} to message ID {msg_id}"
        conn = self._conn
        if conn is not None and not conn.connected and conn.last_error is not None:
            # Say why, when the request never left (a refused TLS handshake, a login...).
            text += f" (not connected to the AMQP broker: {conn.last_error})"
        _settle(call.future, exc=MessagingTimeout(text))

    # -- sending --------------------------------------------------------------------------------

    def send_async(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
                   wait_for_reply: bool = True, timeout: float | None = None,
                   call_monitor_timeout: float | None = None, retry: int | None = None,
                   at_least_once: bool = False) -> Future:
        """Send a call (or a cast) without blocking; return a Future of its outcome.

        For a call the Future gets the result, the rebuilt remote exception,
        :class:`MessagingTimeout` (after ``timeout`` s, or ``call_monitor_timeout`` s
        without a heartbeat), :class:`MessageUndeliverable` (``at_least_once`` and no
        queue bound) or :class:`MessageDeliveryFailure` (``retry`` exhausted). For a
        cast it gets None once the broker confirmed the message. Callbacks added to
        the Future run on the driver's I/O or timer thread and must not block. Any
        number of calls may be in flight at once on one connection and reply queue.
        """
        conn = self._connection()
        if not conn.connected:
            # The first use starts the connection: let its first attempt finish.
            conn.wait_first_attempt(min(30.0, timeout) if wait_for_reply and timeout else 30.0)
        opts = self.options
        inner: dict[str, Any] = {"method": message.get("method"), "args": message.get("args", {})}
        for key in ("namespace", "version"):
            if message.get(key) is not None:
                inner[key] = message[key]
        for key, value in message.items():
            if key not in inner and key not in ("namespace", "version"):
                inner[key] = value
        future: Future = Future()
        call = None
        if wait_for_reply:
            msg_id = new_id()
            inner["_msg_id"] = msg_id
            inner["_reply_q"] = self.reply_queue
            inner["_timeout"] = call_monitor_timeout
            call = _Call(future, msg_id, call_monitor_timeout)
        inner["_unique_id"] = new_id()
        for key, value in ctxt.items():
            inner[_CONTEXT_PREFIX + str(key)] = value
        body = encode_envelope(inner)
        headers = None
        if opts.kombu_compression:
            body = (zlib.compress(body) if opts.kombu_compression == "gzip"
                    else bz2.compress(body))
            headers = {"compression": _COMPRESSION[opts.kombu_compression]}
        if target.fanout:
            exchange = f"{target.topic}_fanout"
            send = _Send(exchange=exchange, routing_key="", body=body, mandatory=False,
                         declare=(exchange, "fanout", bool(opts.rabbit_transient_quorum_queue),
                                  True), always_declare=True)
        else:
            exchange = target.exchange or self.settings.control_exchange
            key = f"{target.topic}.{target.server}" if target.server else str(target.topic)
            expiration = (str(int(timeout * 1000)) if wait_for_reply and timeout else None)
            send = _Send(exchange=exchange, routing_key=key, body=body, mandatory=at_least_once,
                         expiration=expiration, always_declare=False,
                         declare=(exchange, "topic", opts.topic_durable, opts.amqp_auto_delete))
        send.future, send.call, send.retry, send.message = future, call, retry, headers
        if call is not None:
            self._calls[call.msg_id] = call
            # A caller that cancels (a gateway whose gRPC client went away) leaves
            # no pending reply or timer behind.
            future.add_done_callback(lambda done, c=call: done.cancelled() and self._forget(c))
            now = time.monotonic()
            if timeout:
                call.timers.append(self._timer.schedule(
                    now + timeout, lambda: self._expire(call.msg_id, False)))
            if call_monitor_timeout:
                call.monitor_deadline = now + call_monitor_timeout
                call.timers.append(self._timer.schedule(
                    call.monitor_deadline, lambda: self._expire(call.msg_id, True)))
        self._publish(conn, send)
        return future

    def _publish(self, conn: AmqpConnection, send: _Send) -> None:
        if send.future.done():
            return
        try:
            published = conn.publish(send.exchange, send.routing_key, send.body,
                                     mandatory=send.mandatory, expiration=send.expiration,
                                     headers=send.message, declare=send.declare,
                                     always_declare=send.always_declare)
        except ConnectionLost as exc:
            self._retry(conn, send, exc)
            return
        published.add_done_callback(lambda done: self._published(conn, send, done))

    def _published(self, conn: AmqpConnection, send: _Send, done: Future) -> None:
        exc = done.exception()
        if exc is None:
            if send.give_up is not None:
                self._timer.cancel(send.give_up)
            if send.call is None and not send.future.done():
                _settle(send.future, result=None)
            return
        if isinstance(exc, ConnectionLost):
            self._retry(conn, send, exc)
            return
        if isinstance(exc, MessageUndeliverable):
            exc = MessageUndeliverable(exc.exception, send.exchange, send.routing_key,
                                       send.body)
        self._fail(send, exc)

    def _retry(self, conn: AmqpConnection, send: _Send, exc: BaseException) -> None:
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
                time.monotonic() + budget,
                lambda: None if conn.connected else self._retry(conn, send, exc))
            send.attempts = send.retry  # the timer's call is the last straw
        conn.when_connected(lambda: self._publish(conn, send))

    def _fail(self, send: _Send, exc: BaseException) -> None:
        if send.call is not None:
            if self._calls.pop(send.call.msg_id, None) is None:
                return
            self._finish_timers(send.call)
        if not send.future.done():
            _settle(send.future, exc=exc)

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        future = self.send_async(target, ctxt, message, wait_for_reply=wait_for_reply,
                                 timeout=timeout, call_monitor_timeout=call_monitor_timeout,
                                 retry=retry, at_least_once=at_least_once)
        return future.result()

    def cleanup(self) -> None:
        with self._conn_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        self._timer.close()
        for msg_id in list(self._calls):
            call = self._calls.pop(msg_id, None)
            if call is not None and not call.future.done():
                _settle(call.future, exc=MessagingException("the transport was cleaned up"))
        if conn is not None:
            try:
                conn.delete_queue(self.reply_queue)
            except ConnectionLost:
                pass
            conn.close()
