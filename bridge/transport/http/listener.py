"""One target served on one shared HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.transport.base import IncomingMessage, Listener

if TYPE_CHECKING:
    from bridge.transport.http.server import HttpServer


class HttpListener(Listener):
    """Takes the requests of one target (exchange, topic, server) from an :class:`HttpServer`."""

    def __init__(self, server: HttpServer, key: tuple[str, str, str],
                 release: Callable[[HttpListener], None]) -> None:
        super().__init__()
        self.server = server
        self.key = key
        self.address = server.address
        self.client_url = server.address
        self._release = release
        self._cleaned = False

    def deliver(self, incoming: IncomingMessage) -> bool:
        """Hand ``incoming`` over; False when the listener is not started."""
        return self.hand_over(incoming)

    def cleanup(self) -> None:
        with self.lock:
            if self._cleaned:
                return
            self._cleaned = True
            self.started = False
            self._on_incoming = None
        self._release(self)

    @property
    def healthy(self) -> bool:
        return self.server.running

    def set_serving(self, serving: bool) -> None:
        """Say whether the process can serve: ``GET /v1/health`` answers 503 while False."""
        self.server.process_serving = bool(serving)
