"""RPCClient: call and cast through a transport, with oslo.messaging's client API."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from bridge.exceptions import InvalidTarget, MessagingException, RPCVersionCapError
from bridge.rpc.dispatcher import version_is_compatible
from bridge.serializer import NoOpSerializer, Serializer, context_to_dict
from bridge.target import Target
from bridge.transport import Transport
from bridge.values import check_arguments, check_primitive

LOG = logging.getLogger(__name__)

_UNSET: Any = object()


class TransportOptions:
    """Per-client options for the driver; ``at_least_once`` makes sends mandatory."""

    def __init__(self, at_least_once: bool = False) -> None:
        self.at_least_once = at_least_once


def _check_version(version: str | None) -> None:
    if version is None:
        return
    parts = str(version).split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise MessagingException(
            f"Version must contain a major and minor integer, and an optional revision "
            f"integer, not {version!r}")


class _CallContext:
    """A prepared view of a client: a target and options used by call() and cast()."""

    def __init__(self, transport: Transport, target: Target, serializer: Serializer,
                 timeout: float | None, version_cap: str | None, retry: int | None,
                 call_monitor_timeout: float | None,
                 transport_options: TransportOptions | None) -> None:
        self.transport = transport
        self.target = target
        self.serializer = serializer
        self.timeout = timeout
        self.version_cap = version_cap
        self.retry = retry
        self.call_monitor_timeout = call_monitor_timeout
        self.transport_options = transport_options

    def prepare(self, exchange: Any = _UNSET, topic: Any = _UNSET, namespace: Any = _UNSET,
                version: Any = _UNSET, server: Any = _UNSET, fanout: Any = _UNSET,
                timeout: Any = _UNSET, version_cap: Any = _UNSET, retry: Any = _UNSET,
                call_monitor_timeout: Any = _UNSET, transport_options: Any = _UNSET,
                ) -> _CallContext:
        """Return a context whose target and options override this one's."""
        overrides = {name: value for name, value in (
            ("exchange", exchange), ("topic", topic), ("namespace", namespace),
            ("version", version), ("server", server), ("fanout", fanout))
            if value is not _UNSET}
        _check_version(overrides.get("version"))
        target = self.target(**overrides)

        def pick(value: Any, current: Any) -> Any:
            return current if value is _UNSET else value

        return _CallContext(self.transport, target, self.serializer,
                            pick(timeout, self.timeout), pick(version_cap, self.version_cap),
                            pick(retry, self.retry),
                            pick(call_monitor_timeout, self.call_monitor_timeout),
                            pick(transport_options, self.transport_options))

    def can_send_version(self, version: Any = _UNSET) -> bool:
        """True when ``version`` (default: the target's) fits under the version cap."""
        version = self.target.version if version is _UNSET else version
        return self.version_cap is None or version_is_compatible(self.version_cap, version)

    def _make_message(self, ctxt: Any, method: str, kwargs: dict[str, Any],
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not self.can_send_version():
            raise RPCVersionCapError(self.target.version, self.version_cap or "")
        if not isinstance(method, str) or not method:
            raise ValueError(f"the method name must be a non-empty string, not {method!r}")
        message: dict[str, Any] = {
            "method": method,
            "args": {name: self.serializer.serialize_entity(ctxt, value)
                     for name, value in kwargs.items()},
        }
        if self.target.namespace is not None:
            message["namespace"] = self.target.namespace
        if self.target.version is not None:
            message["version"] = self.target.version
        check_arguments(message["args"])
        wire_ctxt = context_to_dict(self.serializer.serialize_context(ctxt))
        check_primitive(wire_ctxt, "the request context")
        return wire_ctxt, message

    def cast(self, ctxt: Any, method: str, **kwargs: Any) -> None:
        """Send ``method`` and return once the transport accepted it; errors are not seen."""
        wire_ctxt, message = self._make_message(ctxt, method, kwargs)
        self.transport.send(self.target, wire_ctxt, message, wait_for_reply=False,
                             retry=self.retry, at_least_once=self._at_least_once)

    def call(self, ctxt: Any, method: str, **kwargs: Any) -> Any:
        """Invoke ``method`` and return its result, or raise the remote failure."""
        if self.target.fanout:
            raise InvalidTarget("A call cannot be used with fanout", self.target)
        wire_ctxt, message = self._make_message(ctxt, method, kwargs)
        timeout = self.timeout
        if timeout is None:
            timeout = self.transport.settings.rpc_response_timeout
        result = self.transport.send(
            self.target, wire_ctxt, message, wait_for_reply=True, timeout=timeout,
            call_monitor_timeout=self.call_monitor_timeout, retry=self.retry,
            at_least_once=self._at_least_once)
        return self.serializer.deserialize_entity(ctxt, result)

    def call_many(self, ctxt: Any, calls: Iterable[tuple[str, dict[str, Any]]],
                  timeout: float | None = None) -> Iterator[tuple[int, Any]]:
        """Invoke many methods at once; yield ``(index, outcome)`` as each answer comes.

        ``calls`` holds ``(method, kwargs)`` pairs; ``index`` is a call's position in it.
        ``outcome`` is the call's result, or the exception :meth:`call` would have raised
        (an instance, yielded, not raised), so one failure stops no other call. ``timeout``
        (default: the client's, else ``rpc_response_timeout``) bounds each call. On gRPC
        the calls share one ``CallStream``; on other wires they run concurrently. A call
        that cannot be encoded raises here, before any is sent.
        """
        messages = [self._make_message(ctxt, method, kwargs)
                    for method, kwargs in calls]
        if not messages:
            return (item for item in ())
        wire_ctxt = messages[0][0]
        if timeout is None:
            timeout = self.timeout
        if timeout is None:
            timeout = self.transport.settings.rpc_response_timeout
        answers = self.transport.call_many(self.target, wire_ctxt,
                                           [message for _, message in messages],
                                           timeout=timeout)
        return self._deserialized(ctxt, answers)

    def _deserialized(self, ctxt: Any, answers: Iterator[tuple[int, Any]],
                      ) -> Iterator[tuple[int, Any]]:
        try:
            for index, outcome in answers:
                if not isinstance(outcome, BaseException):
                    outcome = self.serializer.deserialize_entity(ctxt, outcome)
                yield index, outcome
        finally:
            answers.close()  # type: ignore[attr-defined]

    async def call_many_async(self, ctxt: Any, calls: Iterable[tuple[str, dict[str, Any]]],
                              timeout: float | None = None,
                              ) -> AsyncIterator[tuple[int, Any]]:
        """:meth:`call_many` as an async iterator, for asyncio: same arguments, same
        ``(index, outcome)`` pairs. The calls run on a thread of their own, so the event
        loop never blocks; leaving the loop early abandons the calls not answered yet
        (once the next answer comes, or their timeout)."""
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[tuple[int, Any] | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        iterator = self.call_many(ctxt, calls, timeout)  # encoding errors raise here

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(answers.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody waits any more
                stop.set()

        def run() -> None:
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    put(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                put(exc)
            finally:
                iterator.close()  # type: ignore[attr-defined]
                if not stop.is_set():
                    put(None)

        threading.Thread(target=run, name="bridge-call-many", daemon=True).start()
        try:
            while (item := await answers.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    @property
    def _at_least_once(self) -> bool:
        return bool(getattr(self.transport_options, "at_least_once", False))


class RPCClient(_CallContext):
    """Invokes methods on servers through a transport.

    ``timeout=None`` uses the transport's ``rpc_response_timeout`` (60 s). ``version_cap``
    refuses messages above it; ``call_monitor_timeout`` asks servers for heartbeats.
    """

    def __init__(self, transport: Transport, target: Target, timeout: float | None = None,
                 version_cap: str | None = None, serializer: Serializer | None = None,
                 retry: int | None = None, call_monitor_timeout: float | None = None,
                 transport_options: TransportOptions | None = None) -> None:
        _check_version(target.version)
        super().__init__(transport, target, serializer or NoOpSerializer(), timeout,
                         version_cap, retry, call_monitor_timeout, transport_options)


def get_rpc_client(transport: Transport, target: Target, client_cls: type = RPCClient,
                   **kwargs: Any) -> RPCClient:
    """Build an :class:`RPCClient`; ``kwargs`` are its options."""
    return client_cls(transport, target, **kwargs)
