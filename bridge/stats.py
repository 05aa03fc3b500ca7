"""Counters that drivers keep whether or not metrics are served.

A driver calls :func:`record_reconnect` after re-establishing a lost connection
(``record_reconnect("amqp")``), and :func:`record_refusal` where it refuses a request
before any server sees it (``record_refusal("grpc", "target_not_found")``). They are
plain functions with no prometheus import behind them, cheap enough to call from any
thread; ``bridge serve``'s metrics read them at scrape time. Their labels must come
from a fixed set (never from the request), since every value is a series of every
scrape.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_reconnects: dict[str, int] = {}
_refusals: dict[tuple[str, str], int] = {}


def record_reconnect(wire: str) -> None:
    """Count one reconnection of a ``wire`` driver."""
    with _lock:
        _reconnects[wire] = _reconnects.get(wire, 0) + 1


def reconnect_counts() -> dict[str, int]:
    """Reconnections counted so far in this process, by wire."""
    with _lock:
        return dict(_reconnects)


def record_refusal(wire: str, reason: str) -> None:
    """Count one request a ``wire`` driver refused before dispatch, for ``reason``.

    ``reason`` is a bounded name such as ``"target_not_found"`` (a ``bridge.v1.Failure``
    reason, lower-cased, without its prefix); never text taken from the request.
    """
    key = (wire, reason)
    with _lock:
        _refusals[key] = _refusals.get(key, 0) + 1


def refusal_counts() -> dict[tuple[str, str], int]:
    """Refusals counted so far in this process, by ``(wire, reason)``."""
    with _lock:
        return dict(_refusals)
