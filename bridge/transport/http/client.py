"""The client side of the HTTP wire: keep-alive connections (one per thread) to one
server, requests with a timeout, and the reconnect of a connection the server closed."""

from __future__ import annotations

import http.client
import ssl
import threading
import time

from bridge.exceptions import MessageDeliveryFailure, MessagingTimeout
from bridge.transport.http.options import HttpOptions

#: Errors of a kept-alive connection the server has closed meanwhile: sent again once.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
          http.client.CannotSendRequest, http.client.BadStatusLine)
_CONNECT_ATTEMPTS_WITHOUT_DEADLINE = 5


class HttpClient:
    """Requests to the server at ``host:port`` (``https``: with TLS from ``options``)."""

    def __init__(self, scheme: str, host: str, port: int, options: HttpOptions) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.options = options
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._ssl: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            opts = self.options
            context = ssl.create_default_context(cafile=opts.tls_ca_file or None)
            if opts.tls_cert_file:
                context.load_cert_chain(opts.tls_cert_file, opts.tls_key_file or None)
            self._ssl = context
        return self._ssl

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.scheme == "https":
                connection = _TlsConnection(self.host, self.port, timeout=timeout,
                                            context=self._context(),
                                            server_name=self.options.tls_server_name)
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None,
                retry: int | None = None) -> tuple[int, bytes]:
        """(status, body) of one request. A connection refused is tried again (``retry``
        times; None or negative: until ``timeout`` runs out); :class:`MessagingTimeout`
        when ``timeout`` runs out, :class:`MessageDeliveryFailure` when unreachable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        attempts, delay = 0, 0.05
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise MessagingTimeout(f"Timed out waiting for {self.address}{path}")
            try:
                return self._once(method, path, body, headers or {}, remaining)
            except TimeoutError:
                self._drop()
                raise MessagingTimeout(f"Timed out waiting for {self.address}{path}") from None
            except ConnectionRefusedError as exc:
                self._drop()
                attempts += 1
                limit = (retry if retry is not None and retry >= 0 else
                         (None if deadline is not None else _CONNECT_ATTEMPTS_WITHOUT_DEADLINE))
                if limit is not None and attempts > limit:
                    raise MessageDeliveryFailure(
                        f"HTTP server {self.address} unavailable after {attempts} "
                        f"attempt(s): {exc}") from None
                time.sleep(delay if remaining is None else min(delay, max(0.0, remaining)))
                delay = min(delay * 2, 1.0)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise MessageDeliveryFailure(f"HTTP request to {self.address}{path} "
                                             f"failed: {exc}") from None

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
              timeout: float | None) -> tuple[int, bytes]:
        reused = getattr(self._local, "connection", None) is not None
        connection = self._connection(timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except _STALE:
            self._drop()
            if not reused:
                raise
            connection = self._connection(timeout)  # the server closed it while idle
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        if response.will_close:
            self._drop()
        return response.status, data

    def close(self) -> None:
        """Close every connection this client opened (any thread's)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS that checks the server certificate against ``server_name`` when given."""

    def __init__(self, host: str, port: int, *, timeout: float | None,
                 context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self._server_name)
