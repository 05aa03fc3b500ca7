"""The fields of an HTTP request, checked: bodies of ``/v1/call``, ``/v1/cast`` and
``/v1/stream`` lines, the shorthand ``/v1/{topic}/{method}``, and the headers the bridge
reads. Anything malformed is a :class:`~bridge.transport.http.status.Rejection`
(INVALID_ARGUMENT) that says which field is wrong; unknown fields are refused.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass
from typing import Any

from bridge.transport.http import values
from bridge.transport.http.status import Rejection
from bridge.transport.shared_server import target_text
from bridge.values import InvalidValueError

#: The request timeout header: seconds (a decimal number > 0) the caller waits.
TIMEOUT_HEADER = "x-bridge-timeout"
#: The request context of a shorthand call: a JSON object.
CONTEXT_HEADER = "x-bridge-context"

CALL_FIELDS = frozenset({"target", "namespace", "version", "method", "context", "args"})
STREAM_FIELDS = CALL_FIELDS | {"id", "timeout"}
TARGET_FIELDS = frozenset({"topic", "server", "exchange", "fanout"})
QUERY_FIELDS = frozenset({"namespace", "version", "server", "exchange"})


@dataclass
class Request:
    """One invocation: where it goes, the dispatcher's message, and the context."""

    topic: str
    server: str | None
    exchange: str | None
    fanout: bool
    message: dict[str, Any]
    ctxt: dict[str, Any]

    def target_text(self) -> str:
        """The target in an error message."""
        return target_text(self.exchange, self.topic, self.server, self.fanout)


def _invalid(message: str) -> Rejection:
    return Rejection("INVALID_ARGUMENT", message)


def _optional_text(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"'{where}{key}' must be a string or null, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value),
                                                                           type(value).__name__)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a JSON object, not {_kind(value)}")
    try:
        values.check_depth(value, what)
    except InvalidValueError as exc:
        raise _invalid(str(exc)) from None
    return value


def _unknown(data: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(map(repr, unknown))} in {where}; known: "
                       f"{', '.join(sorted(known))}")


def parse_call(body: Any, fields: frozenset[str] = CALL_FIELDS) -> Request:
    """The :class:`Request` of a ``/v1/call`` or ``/v1/cast`` body (already JSON-decoded)."""
    if not isinstance(body, dict):
        raise _invalid(f"the request body must be a JSON object, not {_kind(body)}")
    _unknown(body, fields, "the request")
    target = body.get("target")
    if not isinstance(target, dict):
        raise _invalid("'target' must be an object with at least a 'topic', not "
                       f"{_kind(target)}")
    _unknown(target, TARGET_FIELDS, "'target'")
    topic = target.get("topic")
    if not isinstance(topic, str) or not topic:
        raise _invalid(f"'target.topic' must be a non-empty string, not {_kind(topic)}")
    fanout = target.get("fanout")
    if fanout is not None and not isinstance(fanout, bool):
        raise _invalid(f"'target.fanout' must be a boolean, not {_kind(fanout)}")
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise _invalid(f"'method' must be a non-empty string, not {_kind(method)}")
    message: dict[str, Any] = {"method": method, "args": _object(body.get("args"), "'args'")}
    for key in ("namespace", "version"):
        if key in body:
            value = _optional_text(body, key, "")
            if value is not None or key == "namespace":
                message[key] = value
    return Request(topic, _optional_text(target, "server", "target.") or None,
                   _optional_text(target, "exchange", "target.") or None, bool(fanout),
                   message, dict(_object(body.get("context"), "'context'")))


def parse_shorthand(raw_path: bytes, query: bytes, body: Any,
                    ctxt: dict[str, Any]) -> Request:
    """The :class:`Request` of ``POST /v1/{topic}/{method}?namespace=&version=&server=``."""
    _, _, topic, method = raw_path.split(b"/", 3)
    topic_text = urllib.parse.unquote(topic.decode("ascii", "replace"), errors="strict")
    method_text = urllib.parse.unquote(method.decode("ascii", "replace"), errors="strict")
    if not topic_text or not method_text:
        raise _invalid("the path must be /v1/{topic}/{method}, both non-empty")
    message: dict[str, Any] = {"method": method_text,
                               "args": _object(body, "the request body (the arguments)")}
    params: dict[str, str] = {}
    if query:
        try:
            pairs = urllib.parse.parse_qsl(query.decode("ascii"), keep_blank_values=True,
                                           strict_parsing=True, errors="strict")
        except (UnicodeError, ValueError) as exc:
            raise _invalid(f"the query string is malformed: {exc}") from None
        for key, value in pairs:
            if key not in QUERY_FIELDS:
                raise _invalid(f"unknown query parameter {key!r}; known: "
                               f"{', '.join(sorted(QUERY_FIELDS))}")
            if key in params:
                raise _invalid(f"query parameter {key!r} is given twice")
            params[key] = value
    if "namespace" in params:
        message["namespace"] = params["namespace"]
    if "version" in params:
        message["version"] = params["version"]
    return Request(topic_text, params.get("server") or None, params.get("exchange") or None,
                   False, message, ctxt)


def parse_timeout(text: str, what: str = "the X-Bridge-Timeout header") -> float:
    """Seconds from a timeout header: a decimal number > 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise _invalid(f"{what} must be a number of seconds, not {text[:40]!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise _invalid(f"{what} must be a number of seconds > 0, not {text[:40]!r}")
    return seconds


def parse_stream_timeout(value: Any) -> float | None:
    """A ``/v1/stream`` line's ``timeout`` field: seconds > 0, or null/absent/0 for none."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"'timeout' must be a number of seconds, not {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise _invalid(f"'timeout' must be a number of seconds >= 0, not {value!r}")
    return float(value)


def parse_context_header(text: str) -> dict[str, Any]:
    """The request context of a shorthand call from its header (a JSON object)."""
    try:
        value = values.loads(text, "the X-Bridge-Context header")
    except values.JSONValueError as exc:
        raise _invalid(str(exc)) from None
    return dict(_object(value, "the X-Bridge-Context header"))
