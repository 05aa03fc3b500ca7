"""One AMQP connection with its own I/O thread, shared by many publishing threads.

The I/O thread owns every read: it connects (with oslo.messaging's backoff and
host failover), runs the owner's ``setup`` (declares and consumes) on each new
connection, then drains events: deliveries, publisher confirms, returns of
mandatory messages, and AMQP heartbeats (so a long endpoint method never starves
them). Other threads only write, under one lock, and never wait for a round trip:
a publish returns a Future that the I/O thread completes when the broker confirms
it. Many publishes are therefore in flight at once on one channel.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from struct import pack
from typing import Any

import amqp
import kombu
from amqp import spec
from amqp.serialization import dumps

from bridge.exceptions import MessageDeliveryFailure, MessageUndeliverable
from bridge.stats import record_reconnect
from bridge.transport.amqp.options import AmqpOptions, connection_name

LOG = logging.getLogger(__name__)

_PUBLISH_ARGSIG = "Bssbb"
_METHOD_HEAD = pack(">HH", *spec.Basic.Publish)
_FRAME_END = b"\xce"


def _buffer_reads(transport: Any) -> None:
    """Let py-amqp read the socket in chunks instead of 3 reads per frame.

    py-amqp asks the socket for exactly the bytes of the next frame part and keeps
    any surplus in its read buffer; asking for more cuts the system calls (and the
    GIL hand-overs each costs the I/O thread when many callers run) several-fold.
    """
    if type(transport).__name__ != "TCPTransport" or not hasattr(transport, "_quick_recv"):
        return
    recv = transport.sock.recv
    transport._quick_recv = lambda size: recv(max(size, 16384))


def _serialize_tls_reads(transport: Any, lock: threading.Lock) -> None:
    """Never read a TLS connection while another thread writes it.

    OpenSSL does not let one TLS session be read and written from two threads at
    once: under load (large messages, several callers), the I/O thread's reads, made
    while publishers wrote, saw the stream end and the connection was lost. The I/O
    thread now waits for input outside ``lock`` (the write lock), then, holding it,
    reads what has arrived without blocking; so no write waits for input to come.
    Reads take what is there (up to 16 KiB), as ``_buffer_reads`` does for TCP.
    """
    if type(transport).__name__ != "SSLTransport" or not hasattr(transport, "_quick_recv"):
        return
    sock = transport.sock
    poller = select.poll()
    poller.register(sock, select.POLLIN)

    def recv(size: int) -> bytes:
        while True:
            timeout = sock.gettimeout()
            if not sock.pending() and not poller.poll(
                    None if timeout is None else timeout * 1000):
                raise TimeoutError("The read operation timed out")
            with lock:
                sock.settimeout(0)  # a record may hold no data (a session ticket)
                try:
                    return sock.read(max(size, 16384))
                except ssl.SSLWantReadError:
                    continue
                finally:
                    sock.settimeout(timeout)

    transport._quick_recv = recv


class ConnectionLost(Exception):  # noqa: N818 - a state, not an error of the caller
    """The connection dropped (or is not up) before the broker confirmed a publish."""


Setup = Callable[["AmqpConnection", Any], None]


class AmqpConnection:
    """A self-healing connection: one channel, confirms on, consumers re-made on reconnect.

    ``setup(conn, channel)`` runs on the I/O thread after each (re)connection, before
    publishers are let through; it declares queues and starts consumers whose
    callbacks also run on the I/O thread (they must not block).
    """

    def __init__(self, hosts: list[dict[str, Any]], options: AmqpOptions, name: str,
                 setup: Setup | None = None,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.hosts = list(hosts)
        self.options = options
        self.name = name
        self._setup = setup
        self._on_state = on_state
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._mandatory: dict[bytes, int] = {}  # body -> delivery tag, to match returns
        self._mandatory_body: dict[int, bytes] = {}
        self._returned: dict[int, tuple[Any, str, str]] = {}
        self._seq = 0
        self._declared: set[str] = set()
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._kombu: kombu.Connection | None = None
        # py-amqp's connection and transport, used directly: kombu's ``connection``
        # property (and py-amqp's ``transport``) reconnect when they find it down.
        self._amqp: Any = None
        self._transport: Any = None
        self._channel: Any = None
        self._when_connected: list[Callable[[], None]] = []
        self._ack_upto = 0
        self._outbox: list[bytes] = []
        self._properties_cache: dict[Any, bytes] = {}
        self._channel_id = 1
        self._frame_max = 131072
        self._host_index = 0
        self._host = self.hosts[0]
        if len(self.hosts) > 1:
            random.shuffle(self.hosts)  # as oslo.messaging does with several hosts
        self.last_error: BaseException | None = None
        self.connect_attempts = 0
        #: Counts connections made; consumers compare it to know whether they are on this one.
        self.generation = 0
        self._first_attempt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bridge-amqp-{name}",
                                        daemon=True)
        self._started = False
        self._start_lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the I/O thread (idempotent)."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._closed.is_set()

    def wait_connected(self, timeout: float | None) -> bool:
        """Block until connected (and set up); False after ``timeout`` s or once closed."""
        self.start()
        if self._closed.is_set():
            return False
        return self._connected.wait(timeout) and not self._closed.is_set()

    def wait_first_attempt(self, timeout: float) -> bool:
        """Block until the first connection attempt succeeded or failed."""
        self.start()
        return self._first_attempt.wait(timeout)

    def consume(self, queue: str, consumer_tag: str, callback: Callable[[Any], None],
                arguments: dict[str, Any] | None = None) -> None:
        """Start a manual-ack consumer; ``callback(message)`` runs on the I/O thread."""
        with self._write_lock:
            channel = self._channel
            if channel is None:
                raise ConnectionLost("not connected to the AMQP broker")
            # Register before asking, so that no delivery can beat its callback.
            channel.callbacks[consumer_tag] = callback
            try:
                channel.send_method(spec.Basic.Consume, "BssbbbbF",
                                    (0, queue, consumer_tag, False, False, False, True,
                                     arguments))
            except Exception as exc:
                self._break(exc)
                raise ConnectionLost(str(exc)) from exc

    def publish(self, exchange: str, routing_key: str, body: bytes, *,
                mandatory: bool = False, expiration: str | None = None,
                headers: dict[str, Any] | None = None,
                declare: tuple[str, str, bool, bool] | None = None,
                always_declare: bool = False) -> Future:
        """Publish without waiting; the Future ends when the broker confirms.

        It fails with :class:`MessageUndeliverable` when a mandatory message was
        returned, :class:`ConnectionLost` when the connection dropped first, or
        :class:`MessageDeliveryFailure` when the broker nacked it. ``declare`` is
        ``(name, type, durable, auto_delete)`` of an exchange to declare first (once
        per connection unless ``always_declare``); declares are pipelined (nowait).
        Raises :class:`ConnectionLost` at once when not connected.
        """
        data = self._frames(exchange, routing_key, body, mandatory, expiration, headers)
        future: Future = Future()
        if declare is not None and (always_declare or declare[0] not in self._declared):
            with self._write_lock:
                channel = self._channel
                if not self._connected.is_set() or channel is None:
                    raise ConnectionLost(f"not connected to the AMQP broker ({self.last_error})")
                try:
                    self._flush()  # what is queued goes out before the declare
                    name, type_, durable, auto_delete = declare
                    channel.exchange_declare(name, type_, durable=durable,
                                             auto_delete=auto_delete, nowait=True)
                except Exception as exc:
                    self._break(exc)
                    raise ConnectionLost(f"declare failed: {exc}") from exc
                self._declared.add(name)
                self._enqueue(future, data, body if mandatory else None)
                self._flush()
            return future
        self._enqueue(future, data, body if mandatory else None)
        with self._write_lock:
            self._flush()
        return future

    def _frames(self, exchange: str, routing_key: str, body: bytes, mandatory: bool,
                expiration: str | None, headers: dict[str, Any] | None) -> bytes:
        """The method, header and body frames of one publish, ready for the socket."""
        key = (expiration, tuple(sorted(headers.items())) if headers else None)
        properties = self._properties_cache.get(key)
        if properties is None:
            values: dict[str, Any] = {
                "content_type": "application/json", "content_encoding": "utf-8",
                "application_headers": headers or {}, "delivery_mode": 2, "priority": 0,
            }
            if expiration is not None:
                values["expiration"] = expiration
            properties = amqp.Message(b"", **values)._serialize_properties()
            if len(self._properties_cache) < 256:
                self._properties_cache[key] = properties
        channel_id = self._channel_id
        method = _METHOD_HEAD + dumps(_PUBLISH_ARGSIG, (0, exchange, routing_key, mandatory,
                                                        False))
        header = pack(">HHQ", 60, 0, len(body)) + properties
        parts = [pack(">BHI", 1, channel_id, len(method)), method, _FRAME_END,
                 pack(">BHI", 2, channel_id, len(header)), header, _FRAME_END]
        chunk = self._frame_max - 8
        for offset in range(0, len(body), chunk):
            piece = body[offset:offset + chunk]
            parts += [pack(">BHI", 3, channel_id, len(piece)), piece, _FRAME_END]
        return b"".join(parts)

    def _enqueue(self, future: Future, data: bytes, mandatory_body: bytes | None) -> None:
        """Give a publish its delivery tag and queue its bytes, in the same order."""
        with self._pending_lock:
            if not self._connected.is_set() or self._channel is None:
                raise ConnectionLost(f"not connected to the AMQP broker ({self.last_error})")
            self._seq += 1
            tag = self._seq
            self._pending[tag] = future
            if mandatory_body is not None:
                self._mandatory[mandatory_body] = tag
                self._mandatory_body[tag] = mandatory_body
            self._outbox.append(data)

    def _flush(self) -> None:
        """Write every queued publish in one system call (the write lock is held).

        Whoever holds the lock sends what other threads queued meanwhile, so under
        load many publishes share one ``sendall``.
        """
        with self._pending_lock:
            if not self._outbox:
                return
            outbox, self._outbox = self._outbox, []
        conn, transport = self._amqp, self._transport
        try:
            if conn is None:
                raise ConnectionLost("not connected")
            transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
            conn.bytes_sent += 1
        except Exception as exc:
            # The futures fail with ConnectionLost when the I/O thread sees the drop.
            self._break(exc)

    def ack(self, delivery_tag: int) -> None:
        """Acknowledge a delivery (I/O thread or any thread)."""
        self._write("basic_ack", delivery_tag)

    def ack_soon(self, delivery_tag: int) -> None:
        """Acknowledge a delivery (I/O thread only) together with the ones before it.

        The I/O thread sends one ``basic.ack`` with ``multiple`` once it has handled
        every delivery already read from the socket, instead of one ack per message.
        """
        self._ack_upto = delivery_tag

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        """Reject a delivery, requeued or dropped."""
        self._write("basic_reject", delivery_tag, requeue)

    def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer without waiting for the broker's answer."""
        self._write("basic_cancel", consumer_tag, True)

    def delete_queue(self, queue: str) -> None:
        """Delete a queue without waiting for the broker's answer."""
        self._write("queue_delete", queue, False, False, True)

    def when_connected(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the I/O thread once connected (now if connected)."""
        with self._write_lock:
            if not self._connected.is_set():
                self._when_connected.append(callback)
                return
        callback()

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
                    self._shutdown_socket(transport)
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._shutdown_socket(transport)
                self._thread.join(timeout)

    def force_reconnect(self) -> None:
        """Drop the current connection; the I/O thread reconnects."""
        with self._write_lock:
            transport = self._transport
        self._shutdown_socket(transport)

    # -- internals ------------------------------------------------------------------------

    def _write(self, method: str, *args: Any) -> None:
        with self._write_lock:
            channel = self._channel
            if channel is None or not self._connected.is_set():
                raise ConnectionLost("not connected to the AMQP broker")
            try:
                if method == "basic_ack":
                    channel.send_method(spec.Basic.Ack, "Lb", (args[0], False))
                elif method == "basic_reject":
                    channel.send_method(spec.Basic.Reject, "Lb", args)
                elif method == "basic_cancel":
                    channel.send_method(spec.Basic.Cancel, "sb", args)
                elif method == "queue_delete":
                    channel.send_method(spec.Queue.Delete, "Bsbbb", (0,) + args)
                else:  # pragma: no cover - programming error
                    raise ValueError(method)
            except Exception as exc:
                self._break(exc)
                raise ConnectionLost(str(exc)) from exc

    @staticmethod
    def _shutdown_socket(transport: Any) -> None:
        """Cut the connection under its I/O thread, which sees it end and reconnects.

        ``socket.socket.shutdown`` on a TLS socket too: ``SSLSocket.shutdown`` drops
        its TLS state, py-amqp's close then failed before closing the descriptor, and
        each dropped TLS connection kept a socket open until garbage collection.
        """
        sock = getattr(transport, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _break(self, exc: BaseException) -> None:
        """A write failed half-way: the stream is unusable, make the I/O thread reconnect."""
        self._connected.clear()
        self._shutdown_socket(self._transport)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed; True if closed meanwhile."""
        return self._closed.wait(seconds) if seconds > 0 else self._closed.is_set()

    def _run(self) -> None:
        attempt = 0
        first = True
        while not self._closed.is_set():
            if not first:
                delay = self.options.kombu_reconnect_delay
                if attempt:
                    delay += self.options.backoff(attempt)
                if self._sleep(delay):
                    break
            first = False
            try:
                self._connect()
            except Exception as exc:
                attempt += 1
                self.connect_attempts += 1
                self.last_error = exc
                self._discard()
                self._first_attempt.set()
                LOG.warning("AMQP server %s is unreachable: %s. Trying again in %.1f seconds.",
                            self._host_label(), exc, self.options.kombu_reconnect_delay
                            + self.options.backoff(attempt))
                continue
            if attempt:
                LOG.info("Reconnected to AMQP server on %s (%s)", self._host_label(), self.name)
            attempt = 0
            self._first_attempt.set()
            self._set_state(True)
            if self.generation > 1:
                record_reconnect("amqp")  # bridge_reconnects_total{wire="amqp"}
            try:
                self._drain()
            except Exception as exc:
                if not self._closed.is_set():
                    self.last_error = exc
                    LOG.warning("AMQP connection %s to %s lost: %r; reconnecting", self.name,
                                self._host_label(), exc)
                    attempt = 1
            finally:
                self._set_state(False)
                self._discard()
        self._discard()

    def _host_label(self) -> str:
        host = self._host
        return f"{host['hostname']}:{host['port']}"

    def _connect(self) -> None:
        opts = self.options
        host = self._host = self.hosts[self._host_index % len(self.hosts)]
        if len(self.hosts) > 1:
            if opts.kombu_failover_strategy == "shuffle":
                self._host_index = random.randrange(len(self.hosts))
            else:
                self._host_index += 1
        heartbeat = opts.heartbeat_timeout_threshold
        kconn = kombu.Connection(
            transport="pyamqp", heartbeat=heartbeat, ssl=opts.ssl_params(host["hostname"]),
            login_method=opts.rabbit_login_method,
            connect_timeout=max(1.0, min(heartbeat or 30, 30)),
            transport_options={"client_properties": {
                "capabilities": {"authentication_failure_close": True,
                                 "connection.blocked": True,
                                 "consumer_cancel_notify": True},
                "connection_name": connection_name(),
                "product": "rpc-bridge", "platform": "Python",
            }},
            **host)
        kconn.connect()
        self._kombu, self._amqp = kconn, kconn.connection
        self._transport = transport = self._amqp.transport
        _buffer_reads(transport)
        _serialize_tls_reads(transport, self._write_lock)
        channel = kconn.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        if opts.rabbit_qos_prefetch_count > 0:
            channel.basic_qos(0, opts.rabbit_qos_prefetch_count, False)
        self._channel = channel
        self._channel_id = channel.channel_id
        self._frame_max = self._amqp.frame_max
        self._declared = set()
        with self._pending_lock:
            self._seq = 0
            self._outbox = []
        self._ack_upto = 0
        self.generation += 1
        if self._setup is not None:
            self._setup(self, channel)
        with self._write_lock:
            self._connected.set()
            callbacks, self._when_connected = self._when_connected, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                LOG.exception("Error in a reconnection callback of %s", self.name)

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
            except TimeoutError:
                pass
            if self._ack_upto and not transport._read_buffer:
                tag, self._ack_upto = self._ack_upto, 0
                with self._write_lock:
                    self._channel.send_method(spec.Basic.Ack, "Lb", (tag, True))
            now = time.monotonic()
            if heartbeat and now >= next_check:
                next_check = now + tick
                with self._write_lock:
                    conn.heartbeat_tick(rate=rate)

    def _discard(self) -> None:
        with self._write_lock:
            self._connected.clear()
            kconn, self._kombu, self._channel = self._kombu, None, None
            self._amqp = self._transport = None
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            self._outbox = []
            self._mandatory.clear()
            self._mandatory_body.clear()
            self._returned.clear()
        error = ConnectionLost(f"connection lost before the broker confirmed "
                               f"({self.last_error})")
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        if kconn is not None:
            try:
                kconn.collect()
            except Exception:
                pass

    def _set_state(self, up: bool) -> None:
        if self._on_state is not None:
            try:
                self._on_state(up)
            except Exception:
                LOG.exception("Error in the state callback of %s", self.name)

    def _take(self, delivery_tag: int, multiple: bool) -> list[tuple[int, Future]]:
        with self._pending_lock:
            if multiple:
                tags = [tag for tag in self._pending if tag <= delivery_tag]
            else:
                tags = [delivery_tag] if delivery_tag in self._pending else []
            for tag in tags:
                body = self._mandatory_body.pop(tag, None)
                if body is not None and self._mandatory.get(body) == tag:
                    del self._mandatory[body]
            return [(tag, self._pending.pop(tag)) for tag in tags]

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        for tag, future in self._take(delivery_tag, multiple):
            with self._pending_lock:
                returned = self._returned.pop(tag, None)
            if returned is not None:
                exc, exchange, routing_key = returned
                future.set_exception(MessageUndeliverable(exc, exchange, routing_key, None))
            else:
                future.set_result(None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        for _, future in self._take(delivery_tag, multiple):
            future.set_exception(MessageDeliveryFailure("The broker refused (nacked) a message"))

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        body = message.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._pending_lock:
            tag = self._mandatory.get(bytes(body))
            if tag is not None:
                self._returned[tag] = (exc, exchange, routing_key)
