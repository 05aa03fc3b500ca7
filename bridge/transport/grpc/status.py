"""Failures <-> gRPC statuses: the status table of the gRPC wire (docs/grpc.md).

Every error status carries a ``google.rpc.Status`` in ``grpc-status-details-bin``
whose single detail is a ``bridge.v1.Failure``. The failure holds the fields of
:func:`bridge.exceptions.serialize_failure`, so a Python caller rebuilds the
exception exactly as over the other wires.
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
    for index, arg in enumerate(data["args"]):
        fill_value(failure.args.add(), arg, f"exception argument {index}")
    for key, value in data["kwargs"].items():
        fill_value(failure.kwargs[key], value, f"exception keyword {key!r}")
    return failure


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
    """(code, details text, trailing metadata with ``grpc-status-details-bin``)."""
    code = STATUS_FOR_REASON.get(failure.reason, grpc.StatusCode.UNKNOWN)
    message = status_message(failure)
    detail = any_pb2.Any()
    detail.Pack(failure)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return code, message, ((DETAILS_KEY, status.SerializeToString()),)


def failure_from_metadata(metadata: Any) -> pb.Failure | None:
    """The ``Failure`` in trailing metadata, or None when there is none."""
    for key, value in metadata or ():
        if key != DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            failure = pb.Failure()
            if detail.Unpack(failure):
                return failure
    return None


def exception_for_error(code: grpc.StatusCode, details: str, failure: pb.Failure | None,
                        allowed_remote_exmods: list[str], at_least_once: bool = False,
                        target: Any = None) -> BaseException:
    """What a Python caller raises for an error status."""
    if failure is not None and failure.reason in _REBUILT and failure.class_name:
        return deserialize_failure(failure_to_dict(failure), allowed_remote_exmods)
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
