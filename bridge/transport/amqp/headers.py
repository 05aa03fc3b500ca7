"""The W3C trace context an AMQP message carries in its application headers.

A delivery's ``traceparent`` and ``tracestate`` become the ``headers`` of its
``AmqpIncoming`` (:func:`bridge.transport.amqp.incoming.parse_request`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TRACE_KEYS = ("traceparent", "tracestate")
_MAX_LENGTH = 512  # the W3C limit for tracestate; traceparent is 55 characters


def trace_headers(headers: Mapping[str, Any] | None) -> dict[str, str] | None:
    """``traceparent`` and ``tracestate`` from AMQP application headers, or None."""
    if not isinstance(headers, Mapping):
        return None
    found = {}
    for key in TRACE_KEYS:
        value = headers.get(key)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str) and len(value) <= _MAX_LENGTH:
            found[key] = value
    return found or None
