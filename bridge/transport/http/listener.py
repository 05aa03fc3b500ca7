"""A listener of the HTTP wire: one target served on one shared HTTP server."""

from __future__ import annotations

from bridge.transport.base import IncomingMessage
from bridge.transport.shared_server import SharedServerListener


class HttpListener(SharedServerListener):
    """One target on a shared HTTP server; ``GET /v1/health`` answers 503 while
    ``set_serving(False)``."""

    def deliver(self, incoming: IncomingMessage) -> bool:
        """Hand ``incoming`` over; False when the listener is not started."""
        return self.hand_over(incoming)
