"""Log set-up for ``bridge serve``: text or JSON lines, with the request id of the message.

While a message is dispatched, :data:`request_id` holds the ``request_id`` of its
context (oslo.context's key; ``global_request_id`` when that is all there is), so every
line logged on that thread or task carries it: ``[req-...]`` in text, a
``"request_id"`` field in JSON. :class:`RequestIdObserver` sets it; it is a
:class:`bridge.rpc.server.ServerObserver`.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
import threading
from typing import Any, TextIO

from bridge.auth.redact import RedactingFormatter
from bridge.transport.base import IncomingMessage

#: The request id of the message being dispatched in this context, or None.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bridge_request_id", default=None)

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_MAX_ID_LENGTH = 128


def request_id_of(ctxt: Any) -> str | None:
    """The request id a context carries, or None (never raises, whatever the context)."""
    if not isinstance(ctxt, dict):
        return None
    value = ctxt.get("request_id") or ctxt.get("global_request_id")
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:_MAX_ID_LENGTH]


class RequestIdObserver:
    """Puts the request id of each message into :data:`request_id` while it is handled."""

    def on_start(self, incoming: IncomingMessage) -> None:
        """Set the request id for the lines logged during dispatch."""
        request_id.set(request_id_of(incoming.ctxt))

    def on_finish(self, incoming: IncomingMessage, outcome: str, seconds: float) -> None:
        """Forget the request id once the message is answered."""
        request_id.set(None)


class RequestIdFilter(logging.Filter):
    """Copies :data:`request_id` onto each record as ``record.request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [req-id]: message``; the bracket only when there is an id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(req)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.req = f" [{rid}]" if rid else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            data["request_id"] = rid
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text",
                      stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr).

    Replaces the root logger's handlers; returns the new handler.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    # Secrets (URL passwords, tokens, JWTs, keys) are masked in every line.
    handler.setFormatter(RedactingFormatter(JsonFormatter() if fmt == "json"
                                            else TextFormatter()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python's warnings and the exceptions that end a thread become log lines too, so
    # in JSON mode every line the process writes is JSON.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    return handler


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("bridge").error(
        "Unhandled exception in thread %s", name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
