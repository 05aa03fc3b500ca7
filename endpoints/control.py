"""The control endpoint: namespace ``control``, version 2.0."""

from __future__ import annotations

from typing import Any

from bridge.target import Target


class ServerControlEndpoint:
    """Lets a caller stop the server (``stop``) and ask what it serves (``status``)."""

    target = Target(namespace="control", version="2.0")

    def __init__(self, server: Any = None) -> None:
        self.server = server

    def stop(self, ctx: dict) -> None:
        """Stop taking new messages; calls already taken are still answered."""
        if self.server is not None:
            self.server.stop()

    def status(self, ctx: dict) -> dict[str, Any]:
        """Whether the server runs, where it listens, and how many calls it is running."""
        if self.server is None:
            return {"running": False, "addresses": [], "in_flight": 0}
        return {"running": self.server.running, "addresses": self.server.addresses,
                "in_flight": self.server.in_flight}
