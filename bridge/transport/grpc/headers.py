"""The W3C trace context a gRPC request carries in its metadata.

Hook: each request handler sets ``incoming.headers = trace_headers(
context.invocation_metadata())`` on the :class:`IncomingMessage` it hands over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The metadata keys of W3C trace context (gRPC metadata keys are lower case).
TRACE_KEYS = frozenset({"traceparent", "tracestate"})
_MAX_LENGTH = 512  # the W3C limit for tracestate; traceparent is 55 characters


def trace_headers(metadata: Iterable[Any] | None) -> dict[str, str] | None:
    """``traceparent`` and ``tracestate`` from gRPC invocation metadata, or None."""
    found: dict[str, str] | None = None
    for item in metadata or ():
        key, value = item[0], item[1]
        if key in TRACE_KEYS and isinstance(value, str) and len(value) <= _MAX_LENGTH:
            if found is None:
                found = {}
            found[key] = value
    return found
