"""Failures <-> HTTP error responses: the JSON form of ``google.rpc.Status``.

An error response's body is ``{"code", "message", "details"}``: ``code`` is the
``google.rpc.Code`` of the failure's reason (:data:`bridge.failures.CODE_OF_REASON`,
the same code gRPC sends), the HTTP status is that code's in the standard table
(:data:`HTTP_STATUS`, from google/rpc/code.proto), and ``details`` holds one
``bridge.v1.Failure`` in the proto3 JSON mapping, ``"@type":
"type.googleapis.com/bridge.v1.Failure"`` first (its ``args`` and ``kwargs`` are
``bridge.v1.Value`` objects: ``{"stringValue": "x"}``), so a protobuf JSON parser
decodes it like the gRPC trailer's.
"""

from __future__ import annotations

import math
from typing import Any

from bridge.exceptions import (
    MessageDeliveryFailure,
    MessageUndeliverable,
    MessagingTimeout,
    deserialize_failure,
    serialize_failure,
)
from bridge.failures import CODE_OF_REASON, classify
from bridge.transport.http import values

FAILURE_TYPE = "type.googleapis.com/bridge.v1.Failure"

#: google.rpc.Code: name -> number.
CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
CODE_NAMES = {number: name for name, number in CODES.items()}
#: The HTTP status of each google.rpc.Code (the table in google/rpc/code.proto).
HTTP_STATUS: dict[str, int] = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
#: Reasons whose Failure describes an exception raised while dispatching: the caller
#: rebuilds that exception.
_REBUILT = frozenset({"ENDPOINT_ERROR", "EXPECTED_ERROR", "NO_SUCH_METHOD",
                      "UNSUPPORTED_VERSION", "INVALID_ARGUMENT"})


class Rejection(Exception):  # noqa: N818 - a reply, not an error of the bridge
    """A request the HTTP driver answers with an error before (or instead of) dispatch."""

    def __init__(self, reason: str, message: str, limit_name: str = "",
                 limit_value: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.failure: dict[str, Any] = {"@type": FAILURE_TYPE, "reason": f"REASON_{reason}",
                                        "message": message}
        if limit_name:
            self.failure["limitName"] = limit_name
            self.failure["limitValue"] = str(limit_value)  # int64: a string in proto3 JSON


# -- bridge.v1.Value in the proto3 JSON mapping --------------------------------------------

def value_json(value: Any, depth: int = 0) -> dict[str, Any]:
    """``bridge.v1.Value`` in proto3 JSON (int64 as a string, NaN as ``"NaN"``)."""
    if value is None:
        return {"nullValue": "NULL_VALUE"}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return {"integerValue": str(value)}
        return {"bigIntegerValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {"doubleValue": "NaN" if value != value else
                ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)):
        return {"listValue": {"values": [value_json(item, depth + 1) for item in value]}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {str(k): value_json(v, depth + 1)
                                        for k, v in value.items()}}}
    return {"stringValue": str(value)}


def value_from_json(data: Any) -> Any:
    """The Python value of a ``bridge.v1.Value`` in proto3 JSON (lenient: None if unknown)."""
    if not isinstance(data, dict) or len(data) != 1:
        return None
    ((kind, item),) = data.items()
    if kind in ("boolValue", "stringValue"):
        return item
    if kind in ("integerValue", "bigIntegerValue"):
        return int(item)
    if kind == "doubleValue":
        return float(item)
    if kind == "listValue":
        return [value_from_json(v) for v in (item or {}).get("values", ())]
    if kind == "mapValue":
        return {k: value_from_json(v) for k, v in (item or {}).get("fields", {}).items()}
    return None


# -- server side ---------------------------------------------------------------------------

def failure_of_exception(exc: BaseException, include_traceback: bool = False,
                         expected: bool = False) -> dict[str, Any]:
    """The ``bridge.v1.Failure`` (proto3 JSON, with ``@type``) describing ``exc``."""
    data = serialize_failure(exc, include_traceback)
    failure: dict[str, Any] = {"@type": FAILURE_TYPE,
                               "reason": "REASON_" + classify(exc, expected).reason}
    for key, name in (("module", "module"), ("class", "className"), ("message", "message")):
        if data[key]:
            failure[name] = str(data[key])
    if data["args"]:
        failure["args"] = [value_json(item) for item in data["args"]]
    if data["kwargs"]:
        failure["kwargs"] = {key: value_json(item) for key, item in data["kwargs"].items()}
    if data["tb"]:
        failure["traceback"] = [str(line) for line in data["tb"]]
    return failure


def code_of(failure: dict[str, Any]) -> str:
    """The google.rpc.Code name of a Failure's reason."""
    return CODE_OF_REASON.get(str(failure.get("reason", "")).removeprefix("REASON_"), "UNKNOWN")


def status_message(failure: dict[str, Any]) -> str:
    """The human text of the status: ``Class: message`` for exceptions."""
    if failure.get("className"):
        return f"{failure['className']}: {failure.get('message', '')}"
    return str(failure.get("message", ""))


def status_json(failure: dict[str, Any]) -> dict[str, Any]:
    """The ``google.rpc.Status`` (JSON) carrying ``failure``."""
    return {"code": CODES[code_of(failure)], "message": status_message(failure),
            "details": [failure]}


def error_response(failure: dict[str, Any]) -> tuple[int, bytes]:
    """(HTTP status, body) of a failure."""
    return HTTP_STATUS[code_of(failure)], values.dumps(status_json(failure))


def plain_error(code: str, message: str, http_status: int | None = None) -> tuple[int, bytes]:
    """(HTTP status, body) of an error outside any RPC (a bad path, a wrong HTTP method):
    no Failure detail; ``http_status`` overrides the code's (405 for a wrong method)."""
    return http_status or HTTP_STATUS[code], values.dumps(
        {"code": CODES[code], "message": message, "details": []})


# -- client side ---------------------------------------------------------------------------

def failure_of_status(body: Any) -> dict[str, Any] | None:
    """The ``bridge.v1.Failure`` in a Status body, or None."""
    if not isinstance(body, dict):
        return None
    for detail in body.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == FAILURE_TYPE:
            return detail
    return None


def failure_dict(failure: dict[str, Any]) -> dict[str, Any]:
    """The wire failure dict of :func:`bridge.exceptions.deserialize_failure`."""
    return {"class": failure.get("className") or "Exception",
            "module": failure.get("module") or "builtins",
            "message": failure.get("message", ""),
            "tb": list(failure.get("traceback") or ()),
            "args": [value_from_json(item) for item in failure.get("args") or ()],
            "kwargs": {key: value_from_json(item)
                       for key, item in (failure.get("kwargs") or {}).items()}}


def exception_for_status(http_status: int, body: Any, allowed_remote_exmods: list[str],
                         at_least_once: bool = False, target: Any = None) -> BaseException:
    """What a Python caller raises for an error response."""
    failure = failure_of_status(body)
    reason = str((failure or {}).get("reason", "")).removeprefix("REASON_")
    if failure is not None and reason in _REBUILT and failure.get("className"):
        return deserialize_failure(failure_dict(failure), allowed_remote_exmods)
    code = code_of(failure) if failure is not None else _code_of_body(body, http_status)
    text = ((failure or {}).get("message") or (body or {}).get("message", "")
            if isinstance(body, dict) else str(body))
    if code == "DEADLINE_EXCEEDED":
        return MessagingTimeout(f"Timed out waiting for a reply from {target}: {text}")
    if code == "NOT_FOUND" and at_least_once:
        return MessageUndeliverable(None, getattr(target, "exchange", None) or "",
                                    getattr(target, "topic", None) or "", text)
    return MessageDeliveryFailure(f"HTTP {http_status} {code} from {target}: {text}")


def _code_of_body(body: Any, http_status: int) -> str:
    if isinstance(body, dict) and body.get("code") in CODE_NAMES:
        return CODE_NAMES[body["code"]]
    for name, status in HTTP_STATUS.items():
        if status == http_status:
            return name
    return "UNKNOWN"
