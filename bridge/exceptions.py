"""Every public exception, and how a failure crosses the wire.

A failure travels as a dict with the fields of oslo.messaging's rabbit driver:
``class``, ``module``, ``message``, ``tb`` (a list of strings), ``args`` and
``kwargs``. The caller rebuilds the original class when its module is allowed
(builtins always are), else raises :class:`RemoteError`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import traceback
from typing import Any

LOG = logging.getLogger(__name__)


class MessagingException(Exception):
    """Base class for the exceptions raised by this library."""

    def __init__(self, msg: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return str(self.msg)


class MessagingTimeout(MessagingException):
    """No reply arrived in time."""


class MessageDeliveryFailure(MessagingException):
    """A message could not be sent after the allowed retries."""


class InvalidTarget(MessagingException, ValueError):
    """The target lacks what the operation needs."""

    def __init__(self, msg: str, target: Any = None) -> None:
        super().__init__(f"{msg}: {target}" if target is not None else msg)
        self.target = target


class RemoteError(MessagingException):
    """A remote exception whose class may not be rebuilt on this side."""

    def __init__(self, exc_type: str | None = None, value: str | None = None,
                 traceback: Any = None) -> None:
        msg = f"Remote error: {exc_type} {value}\n{traceback}."
        super().__init__(msg)
        self.exc_type = exc_type
        self.value = value
        self.traceback = traceback
        self.args = (exc_type, value, traceback)


class RPCVersionCapError(MessagingException):
    """The message's version is above the client's version cap."""

    def __init__(self, version: str | None, version_cap: str) -> None:
        super().__init__(
            f"Requested message version, {version} is incompatible. It needs to be equal in "
            f"major version and less than or equal in minor version as the specified version "
            f"cap {version_cap}."
        )
        self.version = version
        self.version_cap = version_cap
        self.args = (version, version_cap)


class ClientSendError(MessagingException):
    """The transport failed to send a message."""

    def __init__(self, target: Any, ex: BaseException) -> None:
        super().__init__(f"Failed to send to target {target}: {ex}")
        self.target = target
        self.ex = ex


class MessageUndeliverable(Exception):  # noqa: N818 - oslo.messaging's name
    """A mandatory message could not be routed to any queue (not a MessagingException)."""

    def __init__(self, exception: BaseException | None, exchange: str, routing_key: str,
                 message: Any) -> None:
        super().__init__(exception, exchange, routing_key, message)
        self.exception = exception
        self.exchange = exchange
        self.routing_key = routing_key
        self.message = message

    def __str__(self) -> str:
        return (f"Message to exchange {self.exchange!r} with routing key {self.routing_key!r} "
                f"could not be routed: {self.exception}")


class RPCDispatcherError(MessagingException):
    """Base class for the errors of dispatching one message."""


class NoSuchMethod(RPCDispatcherError, AttributeError):
    """A compatible endpoint exists, but none offers (or allows) the method."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Endpoint does not support RPC method {method}")
        self.method = method
        self.args = (method,)


class UnsupportedVersion(RPCDispatcherError):
    """No endpoint accepts the requested namespace and version."""

    def __init__(self, version: str | None, method: str | None = None, *,
                 unknown_namespace: str | None = None) -> None:
        # ``unknown_namespace``: no endpoint has that namespace at any version, which the
        # message says; the arguments sent on the wire stay oslo.messaging's.
        super().__init__(
            f"No endpoint serves namespace {unknown_namespace!r} (attempted method: "
            f"{method}, version {version})" if unknown_namespace is not None else
            f"Endpoint does not support RPC version {version}. Attempted method: {method}")
        self.version = version
        self.method = method
        self.args = (version,)
        self.kwargs = {"method": method}


class ExpectedException(Exception):  # noqa: N818 - oslo.messaging's name
    """Wraps an exception that an endpoint declared with ``expected_exceptions``."""

    def __init__(self) -> None:
        import sys

        self.exc_info = sys.exc_info()
        super().__init__(str(self.exc_info[1]))


class MessagingServerError(MessagingException):
    """Base class for server errors."""


class ServerListenError(MessagingServerError):
    """The transport could not listen for the target."""

    def __init__(self, target: Any, ex: BaseException) -> None:
        super().__init__(f"Failed to listen on target '{target}': {ex}")
        self.target = target
        self.ex = ex


class ExecutorLoadFailure(MessagingServerError):
    """The executor name is not known."""

    def __init__(self, executor: str, ex: BaseException | str) -> None:
        super().__init__(f"Failed to load executor '{executor}': {ex}")
        self.executor = executor
        self.ex = ex


class TaskTimeout(MessagingServerError):
    """A lifecycle method waited too long for the one it depends on."""


class DriverLoadFailure(MessagingException):
    """The transport URL names no known driver."""

    def __init__(self, driver: str, ex: BaseException | str) -> None:
        super().__init__(f"Failed to load transport driver '{driver}': {ex}")
        self.driver = driver
        self.ex = ex


class InvalidTransportURL(MessagingException):
    """The transport URL cannot be parsed."""

    def __init__(self, url: str, msg: str) -> None:
        super().__init__(msg)
        self.url = url


class TransportDriverError(MessagingException):
    """A driver failed in a way the caller cannot act on."""


# Bridge classes travel under the module names oslo.messaging uses for them, so an
# oslo.messaging peer that allows that module rebuilds its own class, and back.
_DISPATCHER_MODULE = "oslo_messaging.rpc.dispatcher"
_EXCEPTIONS_MODULE = "oslo_messaging.exceptions"
_WIRE_MODULES = {
    "NoSuchMethod": _DISPATCHER_MODULE,
    "UnsupportedVersion": _DISPATCHER_MODULE,
    "ExpectedException": _DISPATCHER_MODULE,
    "RPCDispatcherError": _DISPATCHER_MODULE,
}
_BRIDGE_MODULES = {__name__, _DISPATCHER_MODULE, _EXCEPTIONS_MODULE}
_REMOTE_SUFFIX = "_Remote"


def _primitive_or_text(value: Any) -> Any:
    """Make an exception argument safe for JSON: primitives stay, the rest becomes text."""
    from bridge.values import is_primitive

    return value if is_primitive(value) else str(value)


_FAILURE_ATTR = "_bridge_failure"


def relayed_failure(exc: BaseException) -> dict[str, Any] | None:
    """The failure dict ``exc`` was rebuilt from (a remote failure), else None."""
    data = getattr(exc, _FAILURE_ATTR, None)
    return data if isinstance(data, dict) else None


def serialize_failure(exc: BaseException, include_traceback: bool = True) -> dict[str, Any]:
    """Describe an exception as the wire's failure dict (docs/wire.md 2.10).

    An exception rebuilt from a remote failure is described by the failure it came
    from, so a server that passes a remote failure on (a gateway) forwards it unchanged.
    """
    forwarded = relayed_failure(exc)
    if forwarded is not None:
        data = dict(forwarded)
        if not include_traceback:
            data["tb"] = []
        return data
    cls = type(exc)
    name, module = cls.__name__, cls.__module__
    if module == __name__:
        module = _WIRE_MODULES.get(name, _EXCEPTIONS_MODULE)
    if name.endswith(_REMOTE_SUFFIX) and module.endswith(_REMOTE_SUFFIX):
        name, module = name[: -len(_REMOTE_SUFFIX)], module[: -len(_REMOTE_SUFFIX)]
    tb = (traceback.format_exception(cls, exc, exc.__traceback__) if include_traceback else [])
    message = getattr(exc, "_remote_message", None) or str(exc)
    kwargs = getattr(exc, "kwargs", None)
    return {
        "class": name,
        "module": module,
        "message": message,
        "tb": tb,
        "args": [_primitive_or_text(a) for a in getattr(exc, "args", ())],
        "kwargs": ({str(k): _primitive_or_text(v) for k, v in kwargs.items()}
                   if isinstance(kwargs, dict) else {}),
    }


def _find_class(module: str, name: str, allowed: list[str]) -> type[BaseException] | None:
    if module == "exceptions":
        module = "builtins"
    if module in _BRIDGE_MODULES:
        if module not in allowed and __name__ not in allowed:
            return None
        cls = globals().get(name)
    else:
        if module != "builtins" and module not in allowed:
            return None
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def deserialize_failure(data: dict[str, Any], allowed_remote_exmods: list[str] | None = None,
                        ) -> BaseException:
    """Rebuild the exception a failure dict describes, as the caller should see it.

    The result remembers ``data``, so :func:`serialize_failure` can forward it as it came.
    """
    exc = _rebuild(data, allowed_remote_exmods)
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _FAILURE_ATTR, {
            "class": str(data.get("class", "Exception")),
            "module": str(data.get("module", "builtins")),
            "message": str(data.get("message", "")),
            "tb": list(data.get("tb") or []) if isinstance(data.get("tb"), list) else [],
            "args": list(data.get("args") or []),
            "kwargs": dict(data.get("kwargs") or {}),
        })
    return exc


def _rebuild(data: dict[str, Any], allowed_remote_exmods: list[str] | None) -> BaseException:
    allowed = list(allowed_remote_exmods or [])
    name = str(data.get("class", "Exception"))
    module = str(data.get("module", "builtins"))
    message = str(data.get("message", ""))
    tb = data.get("tb") or []
    args = data.get("args") or []
    kwargs = data.get("kwargs") or {}
    tb_text = "\n".join(tb) if isinstance(tb, list) else str(tb)
    full_message = f"{message}\n{tb_text}" if tb_text else message

    cls = _find_class(module, name, allowed)
    if cls is None:
        return RemoteError(name, message, tb)
    try:
        exc = cls(*args, **kwargs)
    except Exception:  # the class's constructor does not take what was sent
        return RemoteError(name, message, tb)
    try:
        remote_cls = type(f"{name}{_REMOTE_SUFFIX}", (cls,), {
            "__str__": lambda self: self._remote_message_tb,
            "__unicode__": lambda self: self._remote_message_tb,
        })
        remote_cls.__module__ = f"{cls.__module__}{_REMOTE_SUFFIX}"
        exc.__class__ = remote_cls
        exc._remote_message = message  # type: ignore[attr-defined]
        exc._remote_message_tb = full_message  # type: ignore[attr-defined]
    except TypeError:
        # Builtin exceptions cannot change class: keep the type, carry the text in args.
        exc.args = (full_message,) + tuple(exc.args[1:])
    return exc


class MalformedMessage(RPCDispatcherError, ValueError):
    """A request whose fields have the wrong types or values (method, args, version...)."""


class NoRoute(MessagingException):
    """No local endpoint serves the target and no gateway route forwards it."""

    def __init__(self, target: Any) -> None:
        super().__init__(f"No server or route for {target}")
        self.target = target
        self.args = (str(target),)


class TooManyRequests(MessagingException):
    """A concurrency limit is reached; the caller may retry later."""


class Unauthenticated(MessagingException):
    """The caller presented no credentials the server accepts: none where a policy wants
    some, or a token or certificate that is unknown, expired, wrongly signed or malformed.

    gRPC callers get the status UNAUTHENTICATED. Over AMQP the failure travels as class
    ``Unauthenticated`` of module ``oslo_messaging.exceptions``: an oslo.messaging caller
    raises ``RemoteError`` (``exc_type == "Unauthenticated"``), an rpc-bridge caller
    whose ``allowed_remote_exmods`` lists ``oslo_messaging.exceptions`` (or
    ``bridge.exceptions``) raises this class, else ``RemoteError`` too.
    """


class PermissionDenied(MessagingException):
    """The caller is identified, but the authorization policy does not allow the request.

    gRPC callers get the status PERMISSION_DENIED; AMQP callers see it as
    :class:`Unauthenticated` describes (``RemoteError`` with ``exc_type ==
    "PermissionDenied"``, or this class where its module is allowed).
    """
