"""The forwarder: sends a message on to the transport of the first route that matches,
with its context, namespace, version, method and arguments untouched, and hands back
the upstream result or failure as a Future. Forwarded calls in flight are bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any

from bridge.exceptions import InvalidTarget, NoRoute, TooManyRequests
from bridge.gateway.routes import Route
from bridge.target import Target
from bridge.transport import Transport, get_transport
from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 1024
#: Seconds added to the caller's remaining time for the upstream call: a call that runs
#: too long then ends with the caller's own timeout, never with a relayed one that
#: races it. The upstream call still ends, so its slot is given back.
DEADLINE_GRACE = 0.5


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
        else:
            timeout += DEADLINE_GRACE
        call_monitor_timeout = incoming.client_timeout or route.call_monitor_timeout
        kwargs = dict(wait_for_reply=incoming.wants_reply, timeout=timeout,
                      call_monitor_timeout=call_monitor_timeout if incoming.wants_reply else None)
        ctxt, message = incoming.sent_context(), incoming.message
        try:
            upstream = transport.send_async(route.upstream_target(target), ctxt, message,
                                            **kwargs)
        except Exception as exc:  # refused before it left (a closed transport...)
            self._slots.release()
            future.set_exception(exc)
            return future

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

    def open(self) -> None:
        """Open every route's transport now (a bad URL fails here, not on the first call)."""
        for route in self.routes:
            self.transport_for(route)

    def close(self) -> None:
        """Release the transports this forwarder opened."""
        with self._lock:
            owned, self._owned = self._owned, []
            for transport in owned:
                self._transports = {url: item for url, item in self._transports.items()
                                    if item is not transport}
        for transport in owned:
            transport.cleanup()
