"""A TCP forwarder a test can cut: a broker outage for one process, no one else's.

``proxy = TcpProxy(("127.0.0.1", 5672)); proxy.start()`` listens on ``proxy.port``;
``proxy.stop()`` closes the listening socket and every forwarded connection (the
client sees its broker vanish); ``proxy.start()`` again listens on the same port;
``proxy.drop()`` cuts the forwarded connections but goes on listening.
``proxy.pause()`` holds back what clients send (the upstream sees nothing more, what it
sends still reaches the clients) until ``proxy.resume()`` forwards it, in order, or
``drop()`` discards it: a client whose last writes never reached its broker.

With ``tls=`` a server-side :class:`ssl.SSLContext`, the proxy terminates TLS: it
does the handshake (requiring a client certificate if the context does) and forwards
the decrypted stream, so a plain broker looks like a TLS one. Each TLS connection is
served by one thread, so the TLS session is never read and written at the same time.
``handshake_errors`` keeps why handshakes failed, ``client_names`` the common names of
the client certificates of handshakes that succeeded (None without one).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time


class TcpProxy:
    """Forwards connections on 127.0.0.1:``port`` to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.port = port
        self.tls = tls
        self.handshake_errors: list[BaseException] = []
        self.client_names: list[str | None] = []
        self.stream_errors: list[BaseException] = []
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pause_lock = threading.Lock()
        self._paused = False
        self._held: dict[socket.socket, list[bytes]] = {}

    @property
    def listening(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._listener is not None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.tls is not None:
                threading.Thread(target=self._serve_tls, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool = False) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    with self._pause_lock:
                        if self._paused:
                            self._held.setdefault(dst, []).append(data)
                            continue
                        dst.sendall(data)
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _serve_tls(self, raw: socket.socket) -> None:
        """Handshake, then forward both ways in this one thread (see ``_forward_tls``)."""
        assert self.tls is not None
        with self._lock:
            self._sockets.add(raw)
        raw.settimeout(10)
        client = self.tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._sockets.discard(raw)
            self._sockets.add(client)
        upstream = None
        try:
            try:
                client.do_handshake()
            except (OSError, ValueError) as exc:
                self.handshake_errors.append(exc)
                _close_gently(client)
                return
            peer = client.getpeercert()
            self.client_names.append(
                dict(item[0] for item in peer["subject"]).get("commonName") if peer else None)
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._sockets.add(upstream)
            self._forward_tls(client, upstream)
        except (OSError, ValueError) as exc:
            self.stream_errors.append(exc)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                    with self._lock:
                        self._sockets.discard(sock)

    @staticmethod
    def _forward_tls(client: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Forward both ways without ever blocking: a side that is not read stalls alone.

        Non-blocking sockets and one pending chunk per direction; a direction whose
        chunk is not written yet reads no more, the other one goes on.
        """
        client.setblocking(False)
        upstream.setblocking(False)
        to_client = to_upstream = b""
        tls_retry = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)
        while True:
            readers = ([] if to_upstream else [client]) + ([] if to_client else [upstream])
            writers = ([client] if to_client else []) + ([upstream] if to_upstream else [])
            if client in readers and client.pending():
                readable, writable = [client], []  # decrypted already, select cannot see it
            else:
                readable, writable, _ = select.select(readers, writers, [])
            if client in readable:
                with contextlib.suppress(*tls_retry):
                    to_upstream = client.recv(65536)
                    if not to_upstream:
                        return
            if upstream in readable:
                with contextlib.suppress(BlockingIOError):
                    to_client = upstream.recv(65536)
                    if not to_client:
                        return
            if client in writable:
                with contextlib.suppress(*tls_retry):  # retried with the same bytes
                    to_client = to_client[client.send(to_client[:16384]):]
            if upstream in writable:
                with contextlib.suppress(BlockingIOError):
                    to_upstream = to_upstream[upstream.send(to_upstream):]

    def pause(self) -> None:
        """Hold back what clients send (plain TCP only) until :meth:`resume`."""
        with self._pause_lock:
            self._paused = True

    def resume(self) -> None:
        """Forward what was held back, in order, and go on forwarding."""
        with self._pause_lock:
            self._paused = False
            held, self._held = self._held, {}
            for dst, chunks in held.items():
                with contextlib.suppress(OSError):
                    dst.sendall(b"".join(chunks))

    def drop(self) -> None:
        """Cut every forwarded connection (what was held back is lost); new ones are still
        accepted."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._pause_lock:  # after the cut: nothing held back can leak out
            self._paused = False
            self._held = {}

    def stop(self) -> None:
        """Stop listening and cut every forwarded connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.drop()
        for thread in self._threads:
            thread.join(5)
        self._threads = []


def _close_gently(sock: ssl.SSLSocket) -> None:
    """Close after a failed handshake without resetting the connection.

    OpenSSL has queued its alert; closing with unread input would send a reset that
    can overtake it, so the client would see "connection reset" instead of why.
    """
    with contextlib.suppress(OSError):
        sock.settimeout(0.5)
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and socket.socket.recv(sock, 4096):
            pass
    sock.close()
