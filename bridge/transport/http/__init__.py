"""``http://HOST:PORT`` and ``https://HOST:PORT`` (TLS): the HTTP/JSON wire (docs/http.md).

Server side: one HTTP server per bound address in the process (uvicorn with a bare
ASGI application, on an event loop in a thread of its own), shared by every listener on
that address. Requests are routed by target like on gRPC; what no local listener
serves goes to the unrouted handler (a gateway), else 404. Each request becomes an
:class:`~bridge.transport.http.incoming.HttpIncoming` handed to the server's
``on_incoming``; its reply is encoded on the thread that answers and written by the loop.

Client side: ``POST /v1/call`` and ``/v1/cast`` over keep-alive connections (one per
thread), so ``bridge call http://...`` and :func:`bridge.get_rpc_client` work too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bridge.exceptions import InvalidTarget, InvalidTransportURL, MessageDeliveryFailure
from bridge.target import Target
from bridge.transport.base import Capabilities, Driver, Listener, UnroutedHandler
from bridge.transport.http import values
from bridge.transport.http.client import HttpClient
from bridge.transport.http.listener import HttpListener
from bridge.transport.http.options import HttpOptions, check_options
from bridge.transport.http.request import TIMEOUT_HEADER
from bridge.transport.http.server import HttpServer, host_port
from bridge.transport.http.status import exception_for_status

LOG = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 8080, "https": 8443}

_SERVERS: dict[tuple[str, int], HttpServer] = {}
_SERVERS_LOCK = threading.Lock()


def servers() -> list[HttpServer]:
    """The HTTP servers running in this process."""
    with _SERVERS_LOCK:
        return list(_SERVERS.values())


class HttpDriver(Driver):
    """The HTTP/JSON wire: ``http://HOST:PORT`` (plain) and ``https://HOST:PORT`` (TLS)."""

    wire = "http"
    implements = Capabilities(schemes=("http", "https"), option_group="http",
                              options_type=HttpOptions, unrouted=True, process_health=True,
                              health_check=True, describe=True)

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        check_options(url, self.options)
        self.scheme = url.driver_name
        host = url.hosts[0] if url.hosts else None
        self.host = (host.hostname if host is not None else None) or "127.0.0.1"
        self.port = DEFAULT_PORTS[self.scheme] if host is None or host.port is None else host.port
        self._bound_port: int | None = None  # the port port 0 was given
        self._unrouted: UnroutedHandler | None = None
        self._client: HttpClient | None = None
        self._lock = threading.Lock()

    # -- server side ------------------------------------------------------------------------

    def _endpoint(self) -> tuple[str, int]:
        return self.host, self._bound_port if self._bound_port is not None else self.port

    def listen(self, target: Target) -> Listener:
        exchange = target.exchange or self.settings.control_exchange
        key = (exchange, str(target.topic), str(target.server))
        with _SERVERS_LOCK:
            endpoint = self._endpoint()
            server = _SERVERS.get(endpoint) if endpoint[1] else None
            if server is not None and server.scheme != self.scheme:
                raise InvalidTransportURL(str(self.url), f"{server.address} already serves "
                                          f"{server.scheme}://, not {self.scheme}://")
            if server is None:
                server = HttpServer(self.scheme, endpoint[0], endpoint[1], self.options,
                                    self.settings.control_exchange)
                _SERVERS[(endpoint[0], server.port)] = server
                if endpoint[1] == 0:
                    self._bound_port = server.port
                LOG.info("HTTP server listening on %s", server.address)
            listener = HttpListener(server, key, self._release)
            server.router.add(listener)
            if self._unrouted is not None:
                server.router.fallback = self._unrouted
        return listener

    def _release(self, listener: HttpListener) -> None:
        server = listener.server
        with _SERVERS_LOCK:
            remaining = server.router.remove(listener)
            if remaining == 0 and server.router.fallback is None:
                for endpoint, item in list(_SERVERS.items()):
                    if item is server:
                        del _SERVERS[endpoint]
            else:
                return
        server.shutdown()
        LOG.info("HTTP server on %s stopped", server.address)

    def serve_unrouted(self, handler: UnroutedHandler | None) -> None:
        """Hand requests for targets no listener serves to ``handler`` (None: 404)."""
        self._unrouted = handler
        with _SERVERS_LOCK:
            server = _SERVERS.get(self._endpoint())
            if server is not None:
                server.router.fallback = handler
        if handler is None and server is not None and not server.router.listeners():
            with _SERVERS_LOCK:
                _SERVERS.pop((server.host, server.port), None)
            server.shutdown()

    # -- client side ------------------------------------------------------------------------

    def client(self) -> HttpClient:
        """The client of this transport's URL (made on first use)."""
        with self._lock:
            if self._client is None:
                host, port = self._endpoint()
                host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
                self._client = HttpClient(self.scheme, host, port, self.options)
            return self._client

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        if wait_for_reply and target.fanout:
            raise InvalidTarget("A call cannot be used with fanout", target)
        body: dict[str, Any] = {
            "target": {"topic": str(target.topic),
                       "exchange": target.exchange or self.settings.control_exchange,
                       "server": target.server or None, "fanout": bool(target.fanout)},
            "method": message["method"], "context": ctxt, "args": message.get("args") or {}}
        for key in ("namespace", "version"):
            if message.get(key) is not None:
                body[key] = message[key]
        if not wait_for_reply:
            timeout = timeout or self.settings.rpc_response_timeout
        headers = {"content-type": "application/json"}
        if timeout:
            headers[TIMEOUT_HEADER] = f"{timeout:.6g}"
        status, data = self.client().request(
            "POST", "/v1/call" if wait_for_reply else "/v1/cast", values.dumps(body), headers,
            None if timeout is None else timeout + 1.0, retry)
        if status in (200, 202):
            return values.loads(data, "the reply")["result"] if wait_for_reply else None
        try:
            error: Any = values.loads(data, "the error")
        except values.JSONValueError:
            error = data[:200].decode("utf-8", "replace")
        raise exception_for_status(status, error, self.allowed_remote_exmods, at_least_once,
                                   target)

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """``GET /v1/health`` at this URL: ``SERVING`` or ``NOT_SERVING``."""
        status, data = self.client().request("GET", "/v1/health", timeout=timeout, retry=0)
        try:
            return str(values.loads(data, "the health reply")["status"])
        except (values.JSONValueError, KeyError, TypeError):
            raise MessageDeliveryFailure(f"HTTP {status} from {self.client().address}"
                                         "/v1/health is no health reply") from None

    def describe(self, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /v1/describe`` at this URL: the plain description of what it serves."""
        status, data = self.client().request("GET", "/v1/describe", timeout=timeout, retry=0)
        if status != 200:
            raise exception_for_status(status, values.loads(data, "the error"),
                                       self.allowed_remote_exmods)
        return values.loads(data, "the description")

    @property
    def connect_address(self) -> str:
        return f"{self.scheme}://{host_port(*self._endpoint())}"

    def cleanup(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
