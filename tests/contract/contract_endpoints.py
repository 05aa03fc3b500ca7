"""Endpoints, exceptions and serializers the contract suite serves on every wire.

This module's name is what a failure raised here carries over the wire
(``contract_endpoints``), so a client rebuilds :class:`AppError` only when its
transport allows this module (``allowed_remote_exmods``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import bridge

#: The module whose exceptions a client may be allowed to rebuild (this one).
APP_MODULE = __name__
#: Where the bridge's own dispatch errors travel (oslo.messaging's module names).
DISPATCHER_MODULE = "oslo_messaging.rpc.dispatcher"
#: How long an endpoint waits for the test to release it before it gives up (a test
#: that forgets to release fails instead of hanging).
HOLD_LIMIT = 10.0


class AppError(Exception):
    """An application exception with positional and keyword state."""

    def __init__(self, code: int, detail: str = "none") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def nested(depth: int, leaf: Any = "leaf") -> Any:
    """``depth`` levels of containers around ``leaf``, lists and dicts in turn."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


class Echo:
    """The plain endpoint (null namespace, version 1.0): values, context, failures."""

    def __init__(self, name: str, events: Any = None) -> None:
        self.name = name
        self.events = events

    def echo(self, ctxt: Any, value: Any) -> Any:
        return value

    def echo_many(self, ctxt: Any, **values: Any) -> dict[str, Any]:
        return values

    def blob(self, ctxt: Any, size: int) -> str:
        return "x" * size

    def nest(self, ctxt: Any, depth: int) -> Any:
        return nested(depth)

    def surrogate(self, ctxt: Any) -> str:
        return "a\ud800b"  # a lone surrogate: a Python str, but not valid Unicode

    def whoami(self, ctxt: Any) -> str:
        return self.name

    def context(self, ctxt: Any) -> Any:
        return ctxt

    def record(self, ctxt: Any, token: str) -> None:
        if self.events is not None:
            self.events.put((self.name, token))

    def fail_builtin(self, ctxt: Any, text: str) -> None:
        raise ValueError(text)

    def fail_app(self, ctxt: Any, code: int) -> None:
        raise AppError(code, detail="from the endpoint")

    @bridge.expected_exceptions(AppError)
    def fail_expected(self, ctxt: Any, code: int) -> None:
        raise AppError(code, detail="expected")

    def _private(self, ctxt: Any) -> str:
        return "never"


class Versioned:
    """An endpoint of namespace ``inventory`` at version 1.3 (legacy namespace ``stock``)."""

    target = bridge.Target(namespace="inventory", version="1.3", legacy_namespaces=["stock"])

    def count(self, ctxt: Any) -> int:
        return 13


class Gate:
    """An endpoint whose ``hold`` blocks until the test calls :meth:`open`."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def hold(self, ctxt: Any, value: Any = None) -> Any:
        self.calls += 1
        self.entered.set()
        if not self.release.wait(HOLD_LIMIT):
            raise RuntimeError("the test never released the call")
        return value

    def quick(self, ctxt: Any) -> str:
        return "quick"

    def open(self) -> None:
        self.release.set()


class AsyncControl:
    """The control endpoint as a coroutine (the asyncio executor awaits it on its loop)."""

    target = bridge.Target(namespace="control", version="2.0")

    def __init__(self) -> None:
        self.server: Any = None

    async def stop(self, ctxt: Any) -> str:
        await asyncio.sleep(0)
        self.server.stop()
        return "stopping"


class Thing:
    """An application object no wire can carry: the serializer turns it into a dict."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.value == self.value

    def __repr__(self) -> str:
        return f"Thing({self.value!r})"


class RequestContext:
    """An application's request context object, turned into a dict by the serializer."""

    def __init__(self, user: str, roles: list[str]) -> None:
        self.user = user
        self.roles = roles


class ThingSerializer(bridge.Serializer):
    """Serializes :class:`Thing` and :class:`RequestContext`, and counts each hook by side."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.seen: list[str] = []

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        self.seen.append("serialize_entity")
        if isinstance(entity, Thing):
            return {"__thing__": entity.value, "by": self.side}
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        self.seen.append("deserialize_entity")
        if isinstance(entity, dict) and "__thing__" in entity:
            return Thing(entity["__thing__"])
        return entity

    def serialize_context(self, ctxt: Any) -> dict:
        self.seen.append("serialize_context")
        return {"user": ctxt.user, "roles": list(ctxt.roles), "by": self.side}

    def deserialize_context(self, ctxt: dict) -> Any:
        self.seen.append("deserialize_context")
        return RequestContext(ctxt["user"], ctxt["roles"])


class ThingEndpoint:
    """Receives the deserialized objects and answers with one."""

    def grow(self, ctxt: Any, thing: Any) -> Any:
        if not isinstance(ctxt, RequestContext) or not isinstance(thing, Thing):
            raise TypeError(f"got {type(ctxt).__name__} and {type(thing).__name__}")
        return Thing([thing.value, ctxt.user, ctxt.roles])
