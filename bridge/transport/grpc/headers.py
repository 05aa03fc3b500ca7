"""The W3C trace context a gRPC request carries in its metadata.

Read with the caller's credentials in one pass over the metadata
(:func:`bridge.transport.grpc.credentials.sender_of`) and set as the ``headers`` of
the :class:`IncomingMessage` handed over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: The metadata keys of W3C trace context (gRPC metadata keys are lower case).
TRACE_KEYS = frozenset({"traceparent", "tracestate"})
_MAX_LENGTH = 512  # the W3C limit for tracestate; traceparent is 55 characters


def trace_headers(metadata: Iterable[Any] | None,
                  found: dict[str, str] | None = None) -> dict[str, str] | None:
    """``traceparent`` and ``tracestate`` from gRPC invocation metadata (added to
    ``found``), or None when there are none."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key in TRACE_KEYS and isinstance(value, str) and len(value) <= _MAX_LENGTH:
            if found is None:
                found = {}
            found[key] = value
    return found
