"""One AMQP connection with its own I/O thread, shared by many publishing threads.

The I/O thread owns every read: it connects (oslo.messaging's backoff and host failover),
runs the owner's ``setup`` (declares, consumers) on each new connection, then drains
deliveries, confirms, returns and heartbeats (a long method never starves them). Other
threads only write, under one lock, never waiting for a round trip: a publish's Future is
completed by the I/O thread at the broker's confirm, so many are in flight on one channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from amqp import spec

from bridge.stats import record_reconnect
from bridge.transport.amqp.confirms import Confirms, ConnectionLost
from bridge.transport.amqp.declares import Declarer, settle
from bridge.transport.amqp.frames import PublishFrames
from bridge.transport.amqp.hosts import Hosts
from bridge.transport.amqp.options import AmqpOptions
from bridge.transport.amqp.refusals import (
    BrokerRefused,
    ReconnectNow,
    RefusalMemory,
    explain,
    refused_for_good,
)
from bridge.transport.amqp.sockets import buffer_reads, serialize_tls_reads, shutdown_socket

LOG = logging.getLogger(__name__)

__all__ = ["AmqpConnection", "ConnectionLost", "ReconnectNow", "Setup", "refused_for_good"]

Setup = Callable[["AmqpConnection", Any], None]


ExchangeDeclare = tuple[str, str, bool, bool]  #: ``(name, type, durable, auto_delete)``
DECLARE_TIMEOUT = 30.0  #: the longest the I/O thread waits for its declarations' answers


class AmqpConnection:
    """A self-healing connection: one channel, confirms on, consumers re-made on reconnect.

    ``setup(conn, channel)`` runs on the I/O thread after each (re)connection, before
    publishers are let through; it declares queues and starts consumers whose
    callbacks also run on the I/O thread (they must not block).
    """

    def __init__(self, hosts: list[dict[str, Any]], options: AmqpOptions, name: str,
                 setup: Setup | None = None, refusals: RefusalMemory | None = None) -> None:
        self.hosts = list(hosts)
        self.options = options
        self.name = name
        self._setup = setup
        self._write_lock = threading.Lock()
        self._confirms = Confirms()
        self._frames = PublishFrames()
        self._declared: set[str] = set()
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._kombu: Any = None  # the kombu.Connection
        # py-amqp's connection and transport, used directly: kombu's ``connection``
        # property (and py-amqp's ``transport``) reconnect when they find it down.
        self._amqp: Any = None
        self._transport: Any = None
        self._channel: Any = None
        self._when_connected: list[Callable[[], None]] = []
        self._ack_upto = 0
        self._after_ack: list[Callable[[], None]] = []
        self._channel_id = 1
        self._frame_max = 131072
        self._hosts = Hosts(self.hosts, options)
        self.last_error: BaseException | None = None
        #: Set when the first connection attempt was refused for good (a login, a
        #: declaration...): the I/O thread then stops instead of retrying.
        self.refused: BrokerRefused | None = None
        self._was_connected = False
        self._declarer: Declarer | None = None
        self._refusals = refusals or RefusalMemory(LOG)
        self._consume_ok: dict[str, threading.Event] = {}
        #: Counts connections made; consumers compare it to know whether they are on this one.
        self.generation = 0
        self._first_attempt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bridge-amqp-{name}",
                                        daemon=True)
        self._started = False
        self._start_lock = threading.Lock()

    # -- state ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread (idempotent)."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed.is_set()

    @property
    def connected(self) -> bool:
        """True while connected and set up (publishes are let through)."""
        return self._connected.is_set() and not self._closed.is_set()

    @property
    def declarer(self) -> Declarer:
        """Declarations on the connection's second channel (raises :class:`ConnectionLost`
        when not connected, but in ``setup``)."""
        declarer = self._declarer
        if declarer is None or not (self._connected.is_set() or self._on_io_thread()):
            raise ConnectionLost(self._not_ready())
        return declarer

    def exchange_refusal(self, exchange: str) -> BrokerRefused | None:
        """The broker's recent refusal of ``exchange``'s declaration, if any."""
        return self._refusals.exchange(exchange)

    def settle(self, futures: list[Future], timeout: float = DECLARE_TIMEOUT) -> list[Any]:
        """On the I/O thread (in ``setup``): read until every Future is settled; their
        results, or the first one's error (a refusal, :class:`ConnectionLost`...)."""
        if self._amqp is None:
            raise ConnectionLost(self._not_ready())
        return settle(futures, self._amqp.drain_events, timeout)

    def wait_first_attempt(self, timeout: float) -> bool:
        """Block until the first connection attempt succeeded or failed."""
        self.start()
        return self._first_attempt.wait(timeout)

    def when_connected(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the I/O thread once connected (now if connected, or if the
        connection was refused for good: the callback then meets the refusal)."""
        with self._write_lock:
            if not self._connected.is_set() and self.refused is None:
                self._when_connected.append(callback)
                return
        callback()

    # -- writes (any thread) ------------------------------------------------------------------

    def consume(self, queue: str, consumer_tag: str, callback: Callable[[Any], None],
                arguments: dict[str, Any] | None = None, wait: float = 0.0) -> None:
        """Start a manual-ack consumer; ``callback(message)`` runs on the I/O thread.

        ``wait`` > 0 (any thread but the I/O thread): wait up to that long for the
        broker's ``consume-ok``, so that what is published afterwards reaches the consumer.
        """
        waited = threading.Event() if wait > 0 and not self._on_io_thread() else None
        with self._write_lock:
            channel = self._channel
            if channel is None:
                raise ConnectionLost("not connected to the AMQP broker")
            # Register before asking, so that no delivery can beat its callback.
            channel.callbacks[consumer_tag] = callback
            if waited is not None:
                self._consume_ok[consumer_tag] = waited
            try:
                channel.send_method(spec.Basic.Consume, "BssbbbbF",
                                    (0, queue, consumer_tag, False, False, False,
                                     waited is None, arguments))
            except Exception as exc:
                self._break(exc)
                raise ConnectionLost(str(exc)) from exc
        if waited is not None:
            waited.wait(wait)

    def _on_io_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _on_consume_ok(self, consumer_tag: str) -> None:
        waited = self._consume_ok.pop(consumer_tag, None)
        if waited is not None:
            waited.set()

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                mandatory: bool = False, expiration: str | None = None,
                headers: dict[str, Any] | None = None,
                declare: ExchangeDeclare | None = None,
                always_declare: bool = False) -> Future:
        """Publish without waiting; the Future ends when the broker confirms.

        It fails with :class:`MessageUndeliverable` when a mandatory message was
        returned, :class:`ConnectionLost` when the connection dropped first, or
        :class:`MessageDeliveryFailure` when the broker nacked it. ``declare`` is
        ``(name, type, durable, auto_delete)`` of an exchange to declare first (once
        per connection unless ``always_declare``); declares are pipelined (nowait).
        Raises :class:`ConnectionLost` at once when not connected.
        """
        data = self._frames.build(self._channel_id, self._frame_max, exchange, routing_key,
                                  body, mandatory, expiration, headers)
        future: Future = Future()
        mandatory_body = body if mandatory else None
        if declare is not None and (always_declare or declare[0] not in self._declared):
            with self._write_lock:
                self._declare_exchange(declare)
                self._enqueue(future, data, mandatory_body)
                self._flush()
            return future
        self._enqueue(future, data, mandatory_body)
        with self._write_lock:
            self._flush()
        return future

    def ack_soon(self, delivery_tag: int, then: Callable[[], None] | None = None) -> None:
        """Acknowledge a delivery (I/O thread only) together with the ones before it.

        The I/O thread sends one ``basic.ack`` with ``multiple`` once it has handled
        every delivery already read from the socket, instead of one ack per message;
        then it runs ``then`` (on the I/O thread). If the connection drops before the
        ack is written, ``then`` never runs and the broker delivers the message again.
        """
        self._ack_upto = delivery_tag
        if then is not None:
            self._after_ack.append(then)

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        """Reject a delivery, requeued or dropped."""
        self._send_method(spec.Basic.Reject, "Lb", (delivery_tag, requeue))

    def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer without waiting for the broker's answer."""
        self._send_method(spec.Basic.Cancel, "sb", (consumer_tag, True))

    def delete_queue(self, queue: str) -> None:
        """Delete a queue without waiting for the broker's answer."""
        self._send_method(spec.Queue.Delete, "Bsbbb", (0, queue, False, False, True))

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the I/O thread; pending publishes fail."""
        self._closed.set()
        with self._write_lock:
            conn, transport = self._amqp, self._transport
            if conn is not None and self._connected.is_set():
                try:
                    # Ask the broker to close: its Close-Ok wakes the I/O thread.
                    conn.send_method(spec.Connection.Close, "BsBB", (200, "", 0, 0))
                except Exception:
                    shutdown_socket(transport)
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                shutdown_socket(transport)
                self._thread.join(timeout)

    def force_reconnect(self) -> None:
        """Drop the current connection; the I/O thread reconnects."""
        with self._write_lock:
            transport = self._transport
        shutdown_socket(transport)

    # -- write internals ------------------------------------------------------------------------

    def _ready(self) -> bool:
        return self._connected.is_set() and self._channel is not None

    def _not_ready(self) -> str:
        return f"not connected to the AMQP broker ({self.last_error})"

    def _declare_exchange(self, declare: ExchangeDeclare) -> None:
        """Declare an exchange (nowait) after what is queued (the write lock is held)."""
        channel = self._channel
        if not self._connected.is_set() or channel is None:
            raise ConnectionLost(self._not_ready())
        try:
            self._flush()
            name, type_, durable, auto_delete = declare
            channel.exchange_declare(name, type_, durable=durable, auto_delete=auto_delete,
                                     nowait=True)
        except Exception as exc:
            self._break(exc)
            raise ConnectionLost(f"declare failed: {exc}") from exc
        self._declared.add(name)

    def _enqueue(self, future: Future, data: bytes, mandatory_body: bytes | None) -> None:
        self._confirms.add(future, data, mandatory_body, self._ready, self._not_ready)

    def _flush(self) -> None:
        """Write every queued publish in one system call (the write lock is held).

        Whoever holds the lock sends what other threads queued meanwhile, so under
        load many publishes share one ``sendall``.
        """
        data = self._confirms.take_outbox()
        if data is None:
            return
        conn, transport = self._amqp, self._transport
        try:
            if conn is None:
                raise ConnectionLost("not connected")
            transport.write(data)
            conn.bytes_sent += 1
        except Exception as exc:
            # The futures fail with ConnectionLost when the I/O thread sees the drop.
            self._break(exc)

    def _send_method(self, method: tuple[int, int], signature: str, args: tuple) -> None:
        with self._write_lock:
            channel = self._channel
            if channel is None or not self._connected.is_set():
                raise ConnectionLost("not connected to the AMQP broker")
            try:
                channel.send_method(method, signature, args)
            except Exception as exc:
                self._break(exc)
                raise ConnectionLost(str(exc)) from exc

    def _break(self, exc: BaseException) -> None:
        """A write failed half-way: the stream is unusable, make the I/O thread reconnect."""
        self._connected.clear()
        shutdown_socket(self._transport)

    # -- the I/O thread -------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed; True if closed meanwhile."""
        return self._closed.wait(seconds) if seconds > 0 else self._closed.is_set()

    def _run(self) -> None:
        attempt, first, lost = 0, True, False
        while not self._closed.is_set():
            if not first and self._sleep(self._hosts.delay(attempt)):
                break
            first = False
            try:
                self._connect()
            except ReconnectNow:
                self._discard()
                first = True
                continue
            except Exception as exc:
                attempt += 1
                self.last_error = exc
                self._discard()
                if self._refused_for_good(exc):
                    break
                self._first_attempt.set()
                if refused_for_good(exc):
                    continue  # logged as a refusal, not as "unreachable"
                LOG.warning("AMQP server %s is unreachable: %s. Trying again in %.1f seconds.",
                            self._hosts.label, exc, self._hosts.delay(attempt))
                continue
            if attempt or lost:
                LOG.info("Reconnected to AMQP server on %s (%s)", self._hosts.label, self.name)
            attempt, lost = 0, False
            self._first_attempt.set()
            if self.generation > 1:
                record_reconnect("amqp")  # bridge_reconnects_total{wire="amqp"}
            try:
                self._drain()
            except Exception as exc:
                if not self._closed.is_set():
                    self.last_error = exc
                    if refused_for_good(exc):
                        self._refusals.log(explain(exc, self._hosts.label), "reconnecting")
                    else:
                        LOG.warning("AMQP connection %s to %s lost: %r; reconnecting",
                                    self.name, self._hosts.label, exc)
                    lost = True
            finally:
                self._discard()
        self._discard()
        self._first_attempt.set()
        with self._write_lock:
            callbacks, self._when_connected = self._when_connected, []
        if self.refused is None:
            return
        self._call_each(callbacks, "a reconnection callback")  # they meet the refusal

    def _refused_for_good(self, exc: BaseException) -> bool:
        """After a failed attempt: a refusal ends the first attempt (the owner reports it)
        and is logged, not called "unreachable", on a later one (then retried)."""
        refusal = self._refusals.failed_attempt(exc, self._hosts.label, self._was_connected)
        if refusal is not None:
            self.last_error = refusal
        if refusal is None or self._was_connected:
            return False
        self.refused = refusal
        return True

    def _connect(self) -> None:
        kconn = self._hosts.open(self._hosts.next())
        self._kombu, self._amqp = kconn, kconn.connection
        self._transport = transport = self._amqp.transport
        buffer_reads(transport)
        serialize_tls_reads(transport, self._write_lock)
        channel = kconn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._confirms.on_ack)
        channel.events["basic_nack"].add(self._confirms.on_nack)
        channel.events["basic_return"].add(self._confirms.on_return)
        if self.options.rabbit_qos_prefetch_count > 0:
            channel.basic_qos(0, self.options.rabbit_qos_prefetch_count, False)
        channel._callbacks[spec.Channel.Close] = self._on_channel_closed
        channel._callbacks[spec.Basic.ConsumeOk] = self._on_consume_ok
        self._declarer = Declarer(kconn.channel(), self._write_lock)
        self._channel = channel
        self._channel_id = channel.channel_id
        self._frame_max = self._amqp.frame_max
        self._declared = set()
        self._confirms.restart()
        self._ack_upto, self._after_ack = 0, []
        self.generation += 1
        if self._setup is not None:
            self._setup(self, channel)
        with self._write_lock:
            self._connected.set()
            self._was_connected = True
            callbacks, self._when_connected = self._when_connected, []
        self._call_each(callbacks, "a reconnection callback")

    def _on_channel_closed(self, *args: Any) -> None:
        """The broker closed the publishing channel (I/O thread): reconnect."""
        raise self._refusals.channel_closed(*args, where=self._hosts.label)

    def _drain(self) -> None:
        conn = self._amqp
        assert conn is not None
        heartbeat = self.options.heartbeat_timeout_threshold
        rate = self.options.heartbeat_rate
        # Wake often enough to send heartbeats at ``rate`` per timeout (every 10 s by default,
        # as oslo.messaging does). This is also the socket's timeout, which bounds a single
        # write, so it is not made shorter than needed; close() wakes the thread itself.
        tick = max(0.2, heartbeat / rate / 2) if heartbeat else 10.0
        next_check = time.monotonic() + tick
        transport = self._transport
        # A fixed socket timeout, instead of drain_events(timeout=...), which would set and
        # reset it (two system calls) around every frame read.
        transport.sock.settimeout(tick)
        while not self._closed.is_set():
            try:
                conn.drain_events()
                idle = not transport._read_buffer  # every delivery read is handled
            except TimeoutError:
                idle = True
            if self._ack_upto and idle:
                self._send_acks()
            now = time.monotonic()
            if heartbeat and now >= next_check:
                next_check = now + tick
                with self._write_lock:
                    conn.heartbeat_tick(rate=rate)

    def _send_acks(self) -> None:
        """One ``basic.ack`` for every delivery handled so far, then what waited for it."""
        tag, self._ack_upto = self._ack_upto, 0
        with self._write_lock:
            self._channel.send_method(spec.Basic.Ack, "Lb", (tag, True))
        callbacks, self._after_ack = self._after_ack, []
        self._call_each(callbacks, "a callback after acknowledging")

    def _call_each(self, callbacks: list[Callable[[], None]], what: str) -> None:
        """Run each callback; one that raises is logged, and the others still run."""
        for callback in callbacks:
            try:
                callback()
            except Exception:
                LOG.exception("Error in %s of %s", what, self.name)

    def _discard(self) -> None:
        with self._write_lock:
            self._connected.clear()
            kconn, self._kombu, self._channel = self._kombu, None, None
            self._amqp = self._transport = None
            declarer, self._declarer = self._declarer, None
            waiting, self._consume_ok = self._consume_ok, {}
        for event in waiting.values():
            event.set()
        self._ack_upto, self._after_ack = 0, []  # never acknowledged: delivered again
        self._confirms.fail_all(ConnectionLost(
            f"connection lost before the broker confirmed ({self.last_error})"))
        if declarer is not None:
            declarer.fail_all(ConnectionLost(f"connection lost ({self.last_error})"))
        if kconn is not None:
            try:
                kconn.collect()
            except Exception:
                pass
