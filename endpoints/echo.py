"""Echo and ping: the endpoint for smoke tests, health checks and benchmarks."""

from __future__ import annotations

import time
from typing import Any


class EchoEndpoint:
    """Methods in the null namespace, version 1.0."""

    def ping(self, ctx: dict) -> str:
        """Return ``"pong"``."""
        return "pong"

    def echo(self, ctx: dict, value: Any = None) -> Any:
        """Return ``value`` unchanged."""
        return value

    def echo_context(self, ctx: dict) -> dict:
        """Return the request context as the endpoint received it."""
        return dict(ctx)

    def sleep(self, ctx: dict, seconds: float = 0.0) -> float:
        """Sleep ``seconds`` (at most 600), then return them."""
        seconds = min(float(seconds), 600.0)
        time.sleep(seconds)
        return seconds

    def fail(self, ctx: dict, message: str = "failure requested") -> None:
        """Raise ``ValueError(message)``: a remote failure on demand."""
        raise ValueError(message)
