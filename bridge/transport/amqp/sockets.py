"""How the I/O thread reads py-amqp's socket, and how a connection is cut under it.

py-amqp reads a frame in three exact-size reads; :func:`buffer_reads` and
:func:`serialize_tls_reads` replace its reader (``_quick_recv``) so that one system
call takes whatever has arrived, and so that a TLS session is never read and
written at once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import Any

#: The most one read takes from the socket; py-amqp keeps any surplus in its buffer.
READ_SIZE = 16384


def buffer_reads(transport: Any) -> None:
    """Read a plain TCP connection in chunks of up to :data:`READ_SIZE` bytes.

    Fewer system calls per frame also means fewer GIL hand-overs for the I/O
    thread when many callers run.
    """
    if type(transport).__name__ != "TCPTransport" or not hasattr(transport, "_quick_recv"):
        return
    recv = transport.sock.recv
    transport._quick_recv = lambda size: recv(max(size, READ_SIZE))


def serialize_tls_reads(transport: Any, lock: threading.Lock) -> None:
    """Read a TLS connection only while holding ``lock``, the connection's write lock.

    OpenSSL does not let one TLS session be read and written from two threads at
    once. So the I/O thread waits for input without the lock (a write never waits
    for input to arrive), then takes the lock and reads, without blocking, what has
    arrived (up to :data:`READ_SIZE` bytes).
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
                    return sock.read(max(size, READ_SIZE))
                except ssl.SSLWantReadError:
                    continue
                finally:
                    sock.settimeout(timeout)

    transport._quick_recv = recv


def shutdown_socket(transport: Any) -> None:
    """Cut the connection under its I/O thread, which sees it end and reconnects.

    The plain ``socket.socket.shutdown`` also for a TLS socket: it ends the TCP
    stream and leaves the TLS state to py-amqp's own close, which then releases
    the descriptor.
    """
    sock = getattr(transport, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
