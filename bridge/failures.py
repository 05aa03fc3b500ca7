"""One classification of failures, used by the server, the gateway, every wire's status
mapping and the metrics.

:func:`classify` names the :class:`Kind` of an exception raised while handling a
request (dispatching it, or forwarding it): its ``outcome`` (the metrics label and the
word in logs) and its ``reason`` (the ``bridge.v1.Failure`` reason, from which each
wire derives its status: gRPC status codes, HTTP statuses). A failure relayed from
an upstream server keeps the kind of the class it was raised as there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bridge.exceptions import (
    ExpectedException,
    InvalidTarget,
    MalformedMessage,
    MessageDeliveryFailure,
    MessageUndeliverable,
    MessagingTimeout,
    NoRoute,
    NoSuchMethod,
    PermissionDenied,
    TooManyRequests,
    Unauthenticated,
    UnsupportedVersion,
    relayed_failure,
)
from bridge.values import InvalidValueError, NotPrimitiveError


@dataclass(frozen=True)
class Kind:
    """How one class of failure is reported."""

    #: The metrics ``outcome`` label (``bridge_requests_total``, ``bridge_forwarded_total``).
    outcome: str
    #: The ``bridge.v1.Failure`` reason name, without its ``REASON_`` prefix.
    reason: str
    #: The caller rebuilds the exception from its class and module (else the wire's
    #: status says what happened, and the message why).
    rebuilt: bool = True
    #: The method name of such a request may be anything a caller sent: metrics do not
    #: use it as a label.
    method_untrusted: bool = False


OK = Kind("ok", "UNSPECIFIED", rebuilt=False)
ERROR = Kind("error", "ENDPOINT_ERROR")
GATEWAY_ERROR = Kind("gateway_error", "ENDPOINT_ERROR")
EXPECTED = Kind("expected_error", "EXPECTED_ERROR")
NO_SUCH_METHOD = Kind("no_such_method", "NO_SUCH_METHOD", method_untrusted=True)
UNSUPPORTED_VERSION = Kind("unsupported_version", "UNSUPPORTED_VERSION", method_untrusted=True)
MALFORMED = Kind("malformed", "INVALID_ARGUMENT", method_untrusted=True)
INVALID_VALUE = Kind("error", "INVALID_ARGUMENT")
TIMEOUT = Kind("timeout", "DEADLINE_EXCEEDED", rebuilt=False)
NO_ROUTE = Kind("no_route", "TARGET_NOT_FOUND", rebuilt=False, method_untrusted=True)
RESOURCE_EXHAUSTED = Kind("resource_exhausted", "RESOURCE_EXHAUSTED", rebuilt=False)
UNAVAILABLE = Kind("unavailable", "UNAVAILABLE", rebuilt=False)
#: Refused by the server's admission step (bridge.auth) before any handler ran.
UNAUTHENTICATED = Kind("unauthenticated", "UNAUTHENTICATED", rebuilt=False,
                       method_untrusted=True)
PERMISSION_DENIED = Kind("permission_denied", "PERMISSION_DENIED", rebuilt=False,
                         method_untrusted=True)
#: Every kind, for documentation and tables built from them.
ALL_KINDS = (OK, ERROR, GATEWAY_ERROR, EXPECTED, NO_SUCH_METHOD, UNSUPPORTED_VERSION,
             MALFORMED, INVALID_VALUE, TIMEOUT, NO_ROUTE, RESOURCE_EXHAUSTED, UNAVAILABLE,
             UNAUTHENTICATED, PERMISSION_DENIED)
#: Outcomes of requests that may name any method a caller sent (not a metrics label).
UNTRUSTED_METHOD_OUTCOMES = frozenset(kind.outcome for kind in ALL_KINDS
                                      if kind.method_untrusted)

#: The status code (a ``google.rpc.Code`` name) of each failure reason: every wire reports a
#: failure with the code of its reason (gRPC statuses; HTTP statuses through the standard
#: code -> HTTP table), so the same failure has the same code on every wire.
CODE_OF_REASON: dict[str, str] = {
    "UNSPECIFIED": "UNKNOWN",
    "ENDPOINT_ERROR": "UNKNOWN",
    "EXPECTED_ERROR": "FAILED_PRECONDITION",
    "NO_SUCH_METHOD": "UNIMPLEMENTED",
    "UNSUPPORTED_VERSION": "UNIMPLEMENTED",
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "TARGET_NOT_FOUND": "NOT_FOUND",
    "UNAVAILABLE": "UNAVAILABLE",
    "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
    "RESOURCE_EXHAUSTED": "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED": "UNAUTHENTICATED",
    "PERMISSION_DENIED": "PERMISSION_DENIED",
}

#: Exception classes and their kind, first match wins.
_BY_TYPE: tuple[tuple[type[BaseException], Kind], ...] = (
    (ExpectedException, EXPECTED),
    (NoSuchMethod, NO_SUCH_METHOD),
    (UnsupportedVersion, UNSUPPORTED_VERSION),
    (MalformedMessage, MALFORMED),
    (InvalidValueError, MALFORMED),
    (InvalidTarget, MALFORMED),
    (NotPrimitiveError, INVALID_VALUE),
    (MessagingTimeout, TIMEOUT),
    (NoRoute, NO_ROUTE),
    (MessageUndeliverable, NO_ROUTE),
    (TooManyRequests, RESOURCE_EXHAUSTED),
    (MessageDeliveryFailure, UNAVAILABLE),
    (Unauthenticated, UNAUTHENTICATED),
    (PermissionDenied, PERMISSION_DENIED),
)

#: Failures relayed from an upstream server, by the class they were raised as there
#: (under oslo.messaging's module name for the dispatcher's own errors).
_RELAYED = {
    ("oslo_messaging.rpc.dispatcher", "NoSuchMethod"): NO_SUCH_METHOD,
    ("oslo_messaging.rpc.dispatcher", "UnsupportedVersion"): UNSUPPORTED_VERSION,
    ("oslo_messaging.exceptions", "Unauthenticated"): UNAUTHENTICATED,
    ("oslo_messaging.exceptions", "PermissionDenied"): PERMISSION_DENIED,
}


def classify(failure: BaseException | None, expected: bool = False,
             unknown: Kind = ERROR) -> Kind:
    """The kind of ``failure`` (None: :data:`OK`).

    ``expected``: the endpoint declared it (``expected_exceptions``). ``unknown``: the
    kind of a failure no rule names (:data:`GATEWAY_ERROR` for the gateway's own).
    """
    if failure is None:
        return OK
    relayed = relayed_failure(failure)
    if relayed is not None:
        return _RELAYED.get((relayed.get("module"), relayed.get("class")), ERROR)
    for cls, kind in _BY_TYPE:
        if isinstance(failure, cls):
            return kind
    return EXPECTED if expected else unknown


def log_failure(logger: logging.Logger, exc: BaseException, what: str,
                kind: Kind | None = None) -> None:
    """Log one line for a failed request.

    Expected failures, and failures relayed from upstream (their own server logged
    them), at debug; an endpoint's own exception with its traceback; any other kind
    (a dispatcher error, a refused value, a timeout...) as one error line.
    """
    kind = kind or classify(exc)
    if relayed_failure(exc) is not None:
        logger.debug("%s: relayed %s: %s", what, type(exc).__name__, exc)
    elif kind is EXPECTED:
        logger.debug("Expected exception during %s: %s", what, exc)
    elif isinstance(exc, NoSuchMethod) and exc.method.endswith("_ignore_errors"):
        logger.debug("%s: %s", what, exc)
    elif kind in (ERROR, GATEWAY_ERROR):
        logger.error("Exception during %s", what, exc_info=(type(exc), exc, exc.__traceback__))
    else:
        logger.error("%s: %s", what, exc)
