"""The gateway: forward RPC messages from one wire to another by configured routes.

A gRPC client reaches a legacy oslo.messaging service over AMQP (and an AMQP caller a
gRPC-only backend) through a :class:`GatewayServer`: it takes messages from its
listeners like any server, but instead of dispatching them to local endpoints it
forwards each one, with its context, namespace, version, method and arguments
untouched, to the transport its :class:`Route` names, and relays the result or the
failure back. Forwarding does not hold a thread per call when the target driver
offers ``send_async``; the number of forwarded calls in flight is bounded.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bridge.exceptions import (
    InvalidTarget,
    MessagingTimeout,
    NoRoute,
    TooManyRequests,
    log_failure,
)
from bridge.server import MessageHandlingServer
from bridge.target import Target
from bridge.transport import Transport, get_transport
from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)

ANY = "*"
DEFAULT_MAX_IN_FLIGHT = 1024
#: Upstream dispatcher errors, by the class name they are relayed with: their outcome.
_UPSTREAM_OUTCOMES = {"NoSuchMethod": "no_such_method",
                      "UnsupportedVersion": "unsupported_version"}
#: The gateway's own failures: their outcome (any other is ``gateway_error``).
_OWN_OUTCOMES = ((MessagingTimeout, "timeout"), (NoRoute, "no_route"),
                 (TooManyRequests, "resource_exhausted"))


@dataclass(frozen=True)
class Route:
    """Forward messages for ``topic`` (in ``exchange``, for ``namespace``) to ``url``.

    ``topic``, ``exchange`` and ``namespace`` may be ``"*"`` (any). ``exchange=None``
    and ``namespace=None`` match the default exchange and the null namespace only.
    ``call_monitor_timeout`` asks the upstream server for heartbeats on forwarded calls.
    ``upstream_topic`` and ``upstream_exchange`` rename the target on its way upstream
    (by default it keeps its own).
    """

    topic: str
    url: str
    exchange: str | None = ANY
    namespace: str | None = ANY
    call_monitor_timeout: float | None = None
    upstream_topic: str | None = None
    upstream_exchange: str | None = None

    def upstream_target(self, target: Target) -> Target:
        """Where a matching ``target`` goes upstream."""
        overrides: dict[str, Any] = {}
        if self.upstream_topic:
            overrides["topic"] = self.upstream_topic
        if self.upstream_exchange:
            overrides["exchange"] = self.upstream_exchange
        return target(**overrides) if overrides else target

    def matches(self, target: Target, namespace: str | None) -> bool:
        return (self.topic in (ANY, target.topic)
                and (self.exchange == ANY or self.exchange == target.exchange)
                and (self.namespace == ANY or self.namespace == namespace))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        """A route from a config table: ``topic``, ``url`` and the optional fields."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown route keys {sorted(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        if not data.get("topic") or not data.get("url"):
            raise ValueError(f"a route needs a topic and a url, got {data!r}")
        return cls(**data)


class Forwarder:
    """Sends messages on to the transport of the first route that matches."""

    def __init__(self, routes: Sequence[Route], conf: Any = None,
                 transports: dict[str, Transport] | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 default_timeout: float | None = None) -> None:
        self.routes = list(routes)
        self.conf = conf
        self._transports: dict[str, Transport] = dict(transports or {})
        self._owned: list[Transport] = []
        self._lock = threading.Lock()
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._default_timeout = default_timeout
        self._pool: ThreadPoolExecutor | None = None

    def route_for(self, target: Target, namespace: str | None) -> Route | None:
        """The first route that matches, or None."""
        for route in self.routes:
            if route.matches(target, namespace):
                return route
        return None

    def serves(self, target: Target) -> bool:
        """True when some route may forward ``target`` (whatever the namespace)."""
        return any(route.matches(target, route.namespace) for route in self.routes)

    def transport_for(self, route: Route) -> Transport:
        with self._lock:
            transport = self._transports.get(route.url)
            if transport is None:
                transport = get_transport(self.conf, route.url)
                self._transports[route.url] = transport
                self._owned.append(transport)
            return transport

    def forward(self, incoming: IncomingMessage, target: Target | None = None) -> Future:
        """Forward ``incoming``; the future holds the upstream result or failure."""
        target = target or incoming.target
        future: Future = Future()
        if target is None or not target.topic:
            future.set_exception(InvalidTarget("The message names no topic to forward to",
                                               target))
            return future
        namespace = incoming.message.get("namespace")
        route = self.route_for(target, namespace)
        if route is None:
            future.set_exception(NoRoute(target))
            return future
        if incoming.wants_reply and target.fanout:
            future.set_exception(InvalidTarget("A call cannot be used with fanout", target))
            return future
        if not self._slots.acquire(blocking=False):
            future.set_exception(TooManyRequests(
                f"{self.max_in_flight} forwarded calls are already in flight"))
            return future
        try:
            transport = self.transport_for(route)
        except Exception as exc:
            self._slots.release()
            future.set_exception(exc)
            return future
        timeout = incoming.remaining()
        if timeout is None:
            timeout = self._default_timeout or transport.settings.rpc_response_timeout
        call_monitor_timeout = incoming.client_timeout or route.call_monitor_timeout
        kwargs = dict(wait_for_reply=incoming.wants_reply, timeout=timeout,
                      call_monitor_timeout=call_monitor_timeout if incoming.wants_reply else None)
        ctxt, message = incoming.sent_context(), incoming.message
        target = route.upstream_target(target)
        send_async = getattr(transport.driver, "send_async", None)
        if send_async is not None:
            upstream = send_async(target, ctxt, message, **kwargs)
        else:
            upstream = self._thread_pool().submit(transport._send, target, ctxt, message,
                                                  **kwargs)

        def relay(done: Future) -> None:
            self._slots.release()
            try:
                if done.cancelled():
                    future.cancel()
                elif done.exception() is not None:
                    future.set_exception(done.exception())
                else:
                    future.set_result(done.result())
            except InvalidStateError:
                pass  # the caller cancelled meanwhile

        upstream.add_done_callback(relay)
        # The caller went away: the upstream call, its pending reply and timers go too.
        future.add_done_callback(lambda done: done.cancelled() and upstream.cancel())
        return future

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(min(self.max_in_flight, 64),
                                                thread_name_prefix="bridge-forward")
            return self._pool

    def close(self) -> None:
        """Release the transports this forwarder opened."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for transport in self._owned:
            transport.cleanup()


class GatewayServer(MessageHandlingServer):
    """A server whose messages are forwarded by routes instead of dispatched locally.

    It takes messages from its own listeners (``transport`` may be an empty list),
    and, once :meth:`attach_grpc` is called, the gRPC requests whose target no
    local listener of that gRPC server serves.
    """

    def __init__(self, transport: Transport | Sequence[Transport], target: Target,
                 forwarder: Forwarder) -> None:
        from bridge.dispatcher import RPCDispatcher

        super().__init__(transport, target, RPCDispatcher([]), executor="threading")
        self.forwarder = forwarder
        self._attached: list[str] = []

    def start(self, override_pool_size: int | None = None) -> None:
        """Open every route's transport (a bad URL fails here), then listen."""
        for route in self.forwarder.routes:
            self.forwarder.transport_for(route)
        super().start(override_pool_size)

    def attach_grpc(self, address: str) -> None:
        """Forward the routed requests that the gRPC server at ``address`` does not serve.

        ``address`` is a gRPC listener's address (``server.addresses`` of the server
        that listens there). Unrouted targets still get NOT_FOUND.
        """
        from bridge.transport import grpc as grpc_wire

        def fallback(target: Target) -> Any:
            if self.running and self.forwarder.serves(target):
                return self._on_fallback
            return None

        grpc_wire.set_fallback(address, fallback)
        self._attached.append(address)

    def stop(self) -> None:
        from bridge.transport import grpc as grpc_wire

        for address in self._attached:
            try:
                grpc_wire.set_fallback(address, None)
            except KeyError:
                pass  # that gRPC server is already gone
        self._attached = []
        super().stop()

    def _on_incoming(self, incoming: IncomingMessage) -> None:
        # Taken from the gateway's own listeners: addressed to the gateway, so upstream
        # it goes to the upstream's default exchange and to any server of the topic.
        own = incoming.target or self.target
        self._forward(incoming, Target(topic=own.topic, fanout=own.fanout))

    def _on_fallback(self, incoming: IncomingMessage) -> None:
        # A gRPC request for a target no local listener serves: forwarded as addressed.
        self._forward(incoming, incoming.target or self.target)

    def _forward(self, incoming: IncomingMessage, target: Target) -> None:
        with self._cond:
            self._in_flight += 1
            if self._observers:
                self._accepted_at[id(incoming)] = time.monotonic()
        if self._observers:
            self._notify("on_start", incoming)
        try:
            upstream = self.forwarder.forward(incoming, target)
        except Exception as exc:  # forward() reports through its future; this is a defect
            self._answer(incoming, None, exc)
            return
        incoming.add_cancel_callback(upstream.cancel)
        upstream.add_done_callback(lambda done: self._relay(incoming, done))

    def _relay(self, incoming: IncomingMessage, done: Future) -> None:
        if done.cancelled():
            self._answer(incoming, None, None)
        else:
            failure = done.exception()
            self._answer(incoming, None if failure else done.result(), failure)

    def route_topic(self, incoming: IncomingMessage) -> str:
        """The topic of the route that forwards ``incoming`` (``*`` for a wildcard
        route): a label from the configuration, never from the request."""
        route = self.forwarder.route_for(incoming.target or self.target,
                                         incoming.message.get("namespace"))
        return str(route.topic) if route is not None else str(self.target.topic)

    def _outcome_of(self, failure: BaseException | None) -> str:
        # Upstream failures keep the outcome the upstream server gave them (its dispatcher
        # errors by class name); the gateway's own failures get outcomes of their own.
        # See docs/configuration.md, "Metrics".
        if failure is None:
            return "ok"
        relayed = getattr(failure, "_bridge_failure", None)
        if isinstance(relayed, dict):
            return _UPSTREAM_OUTCOMES.get(relayed.get("class"), super()._outcome_of(failure))
        for kind, outcome in _OWN_OUTCOMES:
            if isinstance(failure, kind):
                return outcome
        return "gateway_error"

    def _report_failure(self, incoming: IncomingMessage,
                        failure: BaseException) -> BaseException:
        # A failure relayed from upstream was logged there; log only the gateway's own.
        if getattr(failure, "_bridge_failure", None) is None:
            log_failure(LOG, failure, f"forwarding {incoming.method!r}")
        return failure


def routes_from_config(items: Iterable[dict[str, Any]]) -> list[Route]:
    """Routes from config tables (``[[gateway.routes]]`` in TOML)."""
    return [Route.from_dict(dict(item)) for item in items]
