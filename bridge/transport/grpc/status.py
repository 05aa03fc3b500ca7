"""Failures <-> gRPC statuses: the status table of the gRPC wire (docs/grpc.md).

Every error status carries a ``google.rpc.Status`` in ``grpc-status-details-bin``
whose single detail is a ``bridge.v1.Failure``. The failure holds the fields of
:func:`bridge.exceptions.serialize_failure`, so a Python caller rebuilds the
exception exactly as over the other wires.

A failure travels in the trailers, which gRPC clients accept up to 8 KiB (Python's
grpcio refuses more, Node's grpc-js loses the status): so every failure is cut to
fixed budgets (:func:`bounded`) before it is sent, its text, arguments and traceback
truncated with a visible marker, and its class and module kept.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.exceptions import (
    MessageDeliveryFailure,
    MessageUndeliverable,
    MessagingTimeout,
    PermissionDenied,
    Unauthenticated,
    deserialize_failure,
    serialize_failure,
)
from bridge.failures import classify
from bridge.stats import record_refusal
from bridge.transport.grpc.values import fill_value, from_value

Reason = pb.Failure.Reason
DETAILS_KEY = "grpc-status-details-bin"

#: The status code of each failure reason: the table of docs/grpc.md.
STATUS_FOR_REASON: dict[int, grpc.StatusCode] = {
    pb.Failure.REASON_ENDPOINT_ERROR: grpc.StatusCode.UNKNOWN,
    pb.Failure.REASON_EXPECTED_ERROR: grpc.StatusCode.FAILED_PRECONDITION,
    pb.Failure.REASON_NO_SUCH_METHOD: grpc.StatusCode.UNIMPLEMENTED,
    pb.Failure.REASON_UNSUPPORTED_VERSION: grpc.StatusCode.UNIMPLEMENTED,
    pb.Failure.REASON_INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    pb.Failure.REASON_TARGET_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    pb.Failure.REASON_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    pb.Failure.REASON_DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    pb.Failure.REASON_RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.Failure.REASON_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    pb.Failure.REASON_PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

# Reasons whose Failure describes an exception raised while dispatching: the
# caller rebuilds that exception.
_REBUILT = frozenset({
    pb.Failure.REASON_ENDPOINT_ERROR, pb.Failure.REASON_EXPECTED_ERROR,
    pb.Failure.REASON_NO_SUCH_METHOD, pb.Failure.REASON_UNSUPPORTED_VERSION,
    pb.Failure.REASON_INVALID_ARGUMENT,
})


class Rejection(Exception):  # noqa: N818 - a reply, not an error of the bridge
    """A request the gRPC driver answers with an error before (or instead of) dispatch."""

    def __init__(self, reason: int, message: str, limit_name: str = "",
                 limit_value: int = 0) -> None:
        super().__init__(message)
        self.failure = pb.Failure(reason=reason, message=message, limit_name=limit_name,
                                  limit_value=limit_value)


#: bridge_refusals_total's reason label of each Failure reason: "target_not_found"...
_REASON_LABELS = {value: name.removeprefix("REASON_").lower()
                  for name, value in pb.Failure.Reason.items()}


#: Failure reasons the server's admission step (bridge.auth) counts and logs itself.
COUNTED_BY_SERVER = frozenset({pb.Failure.REASON_UNAUTHENTICATED,
                               pb.Failure.REASON_PERMISSION_DENIED})


def count_refusal(failure: pb.Failure) -> bool:
    """Count a request refused before any listener took it (bridge_refusals_total); False
    for a refusal of the server's admission step, which counted and logged it already."""
    if failure.reason in COUNTED_BY_SERVER:
        return False
    record_refusal("grpc", _REASON_LABELS.get(failure.reason, "unspecified"))
    return True


# -- budgets ---------------------------------------------------------------------------------
# In bytes of UTF-8. The status text is sent twice (grpc-message, percent-encoded, and the
# Status's message) and the Failure once, base64-encoded: at most about 6.5 KiB of trailers.

#: The status text (``Class: message``).
TEXT_BUDGET = 512
#: ``Failure.message``.
MESSAGE_BUDGET = 768
#: ``Failure.traceback``, all lines (the last lines are kept).
TRACEBACK_BUDGET = 1024
#: ``Failure.args`` and ``Failure.kwargs`` together, encoded.
ARGS_BUDGET = 768
#: ``Failure.module``, ``class_name`` and ``limit_name``, each.
NAME_BUDGET = 128
#: The most arguments, and keyword arguments, a failure keeps.
MAX_ARGS = 8


def truncate(text: str, budget: int) -> str:
    """``text`` if its UTF-8 fits ``budget`` bytes, else its start and a marker saying how
    long it was."""
    if len(text) * 4 <= budget:  # fits, whatever its characters
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= budget:
        return text
    marker = f" ... [truncated: {len(data)} bytes]"
    return data[:max(0, budget - len(marker))].decode("utf-8", "ignore") + marker


def _value_text(value: pb.Value) -> str:
    if value.WhichOneof("kind") == "string_value":
        return value.string_value
    try:
        return repr(from_value(value))
    except Exception:
        return f"<{value.WhichOneof('kind')}>"


def _bounded_values(failure: pb.Failure, out: pb.Failure) -> None:
    """Copy the arguments of ``failure`` into ``out`` within :data:`ARGS_BUDGET`."""
    args = list(failure.args)[:MAX_ARGS]
    kwargs = [(truncate(key, NAME_BUDGET), failure.kwargs[key])
              for key in sorted(failure.kwargs)[:MAX_ARGS]]
    count = max(1, len(args) + len(kwargs))
    share = ARGS_BUDGET // count - 8  # each item's share, less its own framing
    fits = (len(args) == len(failure.args) and len(kwargs) == len(failure.kwargs)
            and sum(v.ByteSize() for v in args)
            + sum(len(k) + v.ByteSize() for k, v in kwargs) <= ARGS_BUDGET)
    for value in args:
        item = out.args.add()
        if fits or value.ByteSize() <= share:
            item.CopyFrom(value)
        else:
            item.string_value = truncate(_value_text(value), share)
    for key, value in kwargs:
        if fits or len(key) + value.ByteSize() <= share:
            out.kwargs[key].CopyFrom(value)
        else:
            out.kwargs[key].string_value = truncate(_value_text(value), max(0, share - len(key)))


def _bounded_traceback(lines: Any) -> list[str]:
    """The last lines of a traceback within :data:`TRACEBACK_BUDGET`, after a marker."""
    kept: list[str] = []
    used = 0
    for line in reversed(list(lines)):
        size = len(line.encode("utf-8", "replace"))
        if used + size > TRACEBACK_BUDGET - 64:
            if not kept:  # one huge line (the exception's own text): its end
                kept.append(truncate(line, TRACEBACK_BUDGET - 64))
            kept.append(f"... [traceback truncated: {len(lines)} lines]\n")
            break
        kept.append(line)
        used += size
    return list(reversed(kept))


def bounded(failure: pb.Failure) -> pb.Failure:
    """``failure`` cut to the budgets above (itself when it fits them all)."""
    if (failure.ByteSize() <= MESSAGE_BUDGET and len(failure.args) <= MAX_ARGS
            and len(failure.kwargs) <= MAX_ARGS):
        return failure
    out = pb.Failure(reason=failure.reason, module=truncate(failure.module, NAME_BUDGET),
                     class_name=truncate(failure.class_name, NAME_BUDGET),
                     message=truncate(failure.message, MESSAGE_BUDGET),
                     limit_name=truncate(failure.limit_name, NAME_BUDGET),
                     limit_value=failure.limit_value)
    out.traceback.extend(_bounded_traceback(failure.traceback))
    _bounded_values(failure, out)
    return out


def reason_for_exception(exc: BaseException, expected: bool = False) -> int:
    """The failure reason of an exception raised while dispatching or forwarding
    (:func:`bridge.failures.classify`)."""
    return pb.Failure.Reason.Value("REASON_" + classify(exc, expected).reason)


def failure_from_exception(exc: BaseException, include_traceback: bool = False,
                           expected: bool = False) -> pb.Failure:
    """The ``Failure`` describing ``exc`` (fields of :func:`serialize_failure`)."""
    data = serialize_failure(exc, include_traceback)
    failure = pb.Failure(reason=reason_for_exception(exc, expected), module=data["module"],
                         class_name=data["class"], message=data["message"],
                         traceback=[str(line) for line in data["tb"]])
    for index, arg in enumerate(data["args"][:MAX_ARGS]):
        _fill_or_text(failure.args.add(), arg, f"exception argument {index}")
    for key, value in list(data["kwargs"].items())[:MAX_ARGS]:
        _fill_or_text(failure.kwargs[truncate(key, NAME_BUDGET)], value,
                      f"exception keyword {key!r}")
    return bounded(failure)


def _fill_or_text(msg: pb.Value, value: Any, path: str) -> None:
    """``value`` into ``msg``, or its text when no Value can hold it."""
    try:
        fill_value(msg, value, path)
    except (TypeError, ValueError):
        msg.Clear()
        msg.string_value = truncate(repr(value), ARGS_BUDGET)


def failure_to_dict(failure: pb.Failure) -> dict[str, Any]:
    """The wire failure dict of :func:`bridge.exceptions.deserialize_failure`."""
    return {
        "class": failure.class_name or "Exception",
        "module": failure.module or "builtins",
        "message": failure.message,
        "tb": list(failure.traceback),
        "args": [from_value(item) for item in failure.args],
        "kwargs": {key: from_value(item) for key, item in failure.kwargs.items()},
    }


def status_message(failure: pb.Failure) -> str:
    """The human text of the status: ``Class: message`` for exceptions."""
    if failure.class_name:
        return f"{failure.class_name}: {failure.message}"
    return failure.message


def status_of(failure: pb.Failure) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """(code, details text, trailing metadata with ``grpc-status-details-bin``), within the
    budgets (:func:`bounded`)."""
    failure = bounded(failure)
    code = STATUS_FOR_REASON.get(failure.reason, grpc.StatusCode.UNKNOWN)
    message = truncate(status_message(failure), TEXT_BUDGET)
    detail = any_pb2.Any()
    detail.Pack(failure)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return code, message, ((DETAILS_KEY, status.SerializeToString()),)


def failure_from_metadata(metadata: Any) -> pb.Failure | None:
    """The ``Failure`` in trailing metadata, or None when there is none (or it cannot be
    decoded: the status code and text then say what happened)."""
    for key, value in metadata or ():
        if key != DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                failure = pb.Failure()
                if detail.Unpack(failure):
                    return failure
        except Exception:
            return None
    return None


def exception_for_error(code: grpc.StatusCode, details: str, failure: pb.Failure | None,
                        allowed_remote_exmods: list[str], at_least_once: bool = False,
                        target: Any = None) -> BaseException:
    """What a Python caller raises for an error status."""
    if failure is not None and failure.reason in _REBUILT and failure.class_name:
        try:
            return deserialize_failure(failure_to_dict(failure), allowed_remote_exmods)
        except Exception:  # arguments this side cannot read: the text still tells
            pass
    text = failure.message if failure is not None and failure.message else details
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(text)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(text)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return MessagingTimeout(f"Timed out waiting for a reply from {target}: {text}")
    if code == grpc.StatusCode.NOT_FOUND and at_least_once:
        return MessageUndeliverable(None, getattr(target, "exchange", None) or "",
                                    getattr(target, "topic", None) or "", text)
    return MessageDeliveryFailure(f"gRPC {code.name} from {target}: {text}")
