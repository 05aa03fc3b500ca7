"""A listener of the gRPC wire: one target served on one shared :class:`GrpcServer`."""

from __future__ import annotations

from collections.abc import Callable

from bridge.transport.base import Listener
from bridge.transport.grpc.server import GrpcServer


class GrpcListener(Listener):
    """One target, ``key`` = ``(exchange, topic, server)``, on a shared server.

    The server's router hands it the requests of its target. ``cleanup()`` calls
    ``release(listener)`` once, which forgets it and stops the server with its last
    listener.
    """

    def __init__(self, server: GrpcServer, key: tuple[str, str, str],
                 release: Callable[[GrpcListener], None]) -> None:
        super().__init__()
        self.server = server
        self.key = key
        self.address = server.address
        self.client_url = server.address
        self._release = release
        self._cleaned = False

    def _start(self) -> None:
        self.server.update_health()

    def _stop(self) -> None:
        self.server.update_health()

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
        """Say whether the process can serve; False holds the health service at NOT_SERVING.

        ``bridge serve`` sets it every ``health_interval`` from ``server.healthy``, so the
        health service turns NOT_SERVING while an AMQP listener of the same server has
        lost its broker, and SERVING again once it is back.
        """
        self.server.process_serving = bool(serving)
        self.server.update_health()
