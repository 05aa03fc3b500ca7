"""RPCDispatcher: picks the endpoint method for a message (docs/architecture.md,
"Dispatch") and runs it."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from bridge.exceptions import ExpectedException, NoSuchMethod, UnsupportedVersion
from bridge.message import DEFAULT_VERSION, parse_version, validate_message
from bridge.serializer import NoOpSerializer, Serializer
from bridge.target import Target
from bridge.values import check_primitive

LOG = logging.getLogger(__name__)

def version_is_compatible(imp_version: str | None, version: str | None) -> bool:
    """True when an endpoint implementing ``imp_version`` can serve ``version``.

    Same major; the implemented minor at least the requested one; the third part
    compared only when the minors are equal. A missing request version is never
    compatible; a missing implemented version accepts everything.
    """
    if imp_version is None:
        return True
    if version is None:
        return False
    imp_major, imp_minor, imp_rev = parse_version(imp_version)
    major, minor, rev = parse_version(version)
    if major != imp_major or minor > imp_minor:
        return False
    return not (minor == imp_minor and rev > imp_rev)


class RPCAccessPolicyBase:
    """Decides which endpoint methods a message may call."""

    def is_allowed(self, endpoint: Any, method: str) -> bool:
        raise NotImplementedError


class LegacyRPCAccessPolicy(RPCAccessPolicyBase):
    """Allows every method, ``_private`` ones included."""

    def is_allowed(self, endpoint: Any, method: str) -> bool:
        return True


class DefaultRPCAccessPolicy(RPCAccessPolicyBase):
    """Refuses names that start with ``_``."""

    def is_allowed(self, endpoint: Any, method: str) -> bool:
        return not method.startswith("_")


class ExplicitRPCAccessPolicy(RPCAccessPolicyBase):
    """Allows only methods marked with :func:`expose`."""

    def is_allowed(self, endpoint: Any, method: str) -> bool:
        return bool(getattr(getattr(endpoint, method, None), "exposed", False))


def expose(func: Callable) -> Callable:
    """Mark a method as callable under :class:`ExplicitRPCAccessPolicy`."""
    func.exposed = True  # type: ignore[attr-defined]
    return func


def expected_exceptions(*exceptions: type[BaseException]) -> Callable[[Callable], Callable]:
    """Declare exceptions an endpoint method raises as part of its contract.

    They reach the caller as themselves, but the server logs them at debug only.
    """

    def decorator(func: Callable) -> Callable:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await func(*args, **kwargs)
                except exceptions:
                    raise ExpectedException() from None
            return async_inner

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except exceptions:
                raise ExpectedException() from None
        return inner

    return decorator


class Invocation:
    """A resolved call: the endpoint method with its deserialized context and arguments."""

    def __init__(self, method: Callable, ctxt: Any, args: dict[str, Any],
                 serializer: Serializer) -> None:
        self.method = method
        self.ctxt = ctxt
        self.args = args
        self.serializer = serializer

    @property
    def is_coroutine(self) -> bool:
        """True for ``async def`` methods, which an asyncio executor awaits on its loop."""
        return inspect.iscoroutinefunction(self.method)

    def run(self) -> Any:
        """Call the method and return its serialized, checked result."""
        result = self.method(self.ctxt, **self.args)
        if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):
            import asyncio

            result = asyncio.run(_await(result))
        return self.finish(result)

    def finish(self, result: Any) -> Any:
        """Serialize and check a result the method returned."""
        if type(self.serializer) is not NoOpSerializer:
            result = self.serializer.serialize_entity(self.ctxt, result)
        check_primitive(result, "the result")
        return result


#: Results that need no awaitable check (the common ones, cheaply told apart).
_NEVER_AWAITABLE = frozenset({type(None), bool, int, float, str, list, tuple, dict})
#: Distinct (namespace, version) pairs whose compatible endpoints are remembered.
_MAX_REMEMBERED = 256


async def _await(awaitable: Any) -> Any:
    return await awaitable


class RPCDispatcher:
    """Dispatches messages to the first compatible endpoint that has the method."""

    def __init__(self, endpoints: Sequence[Any], serializer: Serializer | None = None,
                 access_policy: type[RPCAccessPolicyBase] | None = None) -> None:
        for endpoint in endpoints:
            target = getattr(endpoint, "target", None)
            if target is not None and not isinstance(target, Target):
                raise TypeError(f"The 'target' attribute of endpoint {endpoint!r} must be a "
                                f"bridge.Target, not {type(target).__name__}")
        if access_policy is None:
            access_policy = DefaultRPCAccessPolicy
        if not (isinstance(access_policy, type) and issubclass(access_policy,
                                                                 RPCAccessPolicyBase)):
            raise TypeError(f"access_policy must be a subclass of RPCAccessPolicyBase, "
                            f"not {access_policy!r}")
        self.endpoints = list(endpoints)
        self.serializer = serializer or NoOpSerializer()
        self.access_policy = access_policy()
        self._targets = [getattr(e, "target", None) or Target() for e in self.endpoints]
        # (namespace, version) -> the endpoints that accept it, in list order. Depends
        # only on the endpoints' targets, which are read once above.
        self._compatible: dict[tuple[Any, Any], list[Any]] = {}
        self._noop = type(self.serializer) is NoOpSerializer

    def _endpoints_for(self, namespace: Any, version: Any) -> list[Any]:
        key = (namespace, version)
        found = self._compatible.get(key)
        if found is None:
            found = [endpoint for endpoint, target in zip(self.endpoints, self._targets,
                                                          strict=True)
                     if namespace in target.accepted_namespaces
                     and version_is_compatible(target.version or DEFAULT_VERSION, version)]
            if len(self._compatible) < _MAX_REMEMBERED:
                self._compatible[key] = found
        return found

    def resolve(self, ctxt: dict[str, Any], message: dict[str, Any]) -> Invocation:
        """Find the method for ``message``; raise NoSuchMethod or UnsupportedVersion."""
        method, args, namespace, version = validate_message(message)
        compatible = self._endpoints_for(namespace, version)
        for endpoint in compatible:
            if hasattr(endpoint, method) and self.access_policy.is_allowed(endpoint, method):
                if self._noop:
                    return Invocation(getattr(endpoint, method), ctxt, args, self.serializer)
                new_ctxt = self.serializer.deserialize_context(ctxt)
                new_args = {name: self.serializer.deserialize_entity(new_ctxt, value)
                            for name, value in args.items()}
                return Invocation(getattr(endpoint, method), new_ctxt, new_args,
                                  self.serializer)
        if compatible:
            raise NoSuchMethod(method)
        if namespace is not None and not any(namespace in target.accepted_namespaces
                                             for target in self._targets):
            raise UnsupportedVersion(version, method=method, unknown_namespace=namespace)
        raise UnsupportedVersion(version, method=method)

    def dispatch(self, ctxt: dict[str, Any], message: dict[str, Any]) -> Any:
        """Resolve and run one message, returning the serialized result."""
        return self.resolve(ctxt, message).run()
