"""The gateway servers ``bridge serve`` runs for its routes (docs/gateway.md), and their
reload on SIGHUP.

A route is served on every transport that other processes reach and whose driver is
not its upstream's (never back onto its own wire): on a transport whose driver hands
over targets nobody serves (``implements.unrouted``: gRPC), by one gateway taking
those requests; on any other, by one gateway per route topic listening there as this
server.

A reload builds a new :class:`~bridge.gateway.Forwarder` for the new routes and hands
it to the gateways that stay, so the next request uses the new routes while those in
flight finish on the old forwarder, which is closed once they are answered. Gateways
for topics no longer routed stop and drain; gateways for new topics start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bridge
from bridge.transport import Transport, driver_class

LOG = logging.getLogger("bridge.serve")

Observe = Callable[[Any], None]


@dataclass
class GatewayPlan:
    """Which gateway servers the routes need, and on which transports."""

    unrouted: list[Transport] = field(default_factory=list)
    #: route topic -> (exchange to listen in, the transports to listen on)
    listen: dict[str, tuple[str | None, list[Transport]]] = field(default_factory=dict)


def plan_gateways(routes: Sequence[Any], transports: Sequence[Transport],
                  default_exchange: str | None) -> GatewayPlan:
    """The gateways ``routes`` need on ``transports``; ``ValueError`` naming a route that
    no transport here can take."""
    plan = GatewayPlan()
    for route in routes:
        upstream = driver_class(route.url)
        local = [t for t in transports
                 if type(t.driver) is not upstream and t.implements.remote]
        if not local:
            raise ValueError(f"the route for {route.topic!r} forwards to "
                             f"{bridge.TransportURL.parse(route.url)}, but no other wire is "
                             "served here to take its callers")
        for transport in local:
            if transport.implements.unrouted:
                if transport not in plan.unrouted:
                    plan.unrouted.append(transport)
                continue
            if route.topic == "*":
                raise ValueError(f"a route to {bridge.TransportURL.parse(route.url)} taken "
                                 f"on {transport.url} needs a topic to listen on, not '*'")
            exchange = route.exchange if route.exchange not in ("*", None) else default_exchange
            _, on = plan.listen.setdefault(route.topic, (exchange, []))
            if transport not in on:
                on.append(transport)
    return plan


class Gateways:
    """The gateway servers of one ``bridge serve``: started, reloaded, stopped together."""

    def __init__(self, server_name: str, conf: dict[str, Any], transports: Sequence[Transport],
                 default_exchange: str | None, max_in_flight: int,
                 observe: Observe | None = None, guard: Any = None) -> None:
        self.server_name = server_name
        #: The bridge.auth.Guard every gateway server admits requests with (None: default).
        self.guard = guard
        self.conf = conf
        self.transports = list(transports)
        self.default_exchange = default_exchange
        self.max_in_flight = max_in_flight
        self.observe = observe
        self.forwarder: Any = None
        self.routes: list[Any] = []
        #: The gateway taking unrouted requests (None without one) and the per-topic ones.
        self.unrouted: Any = None
        self.by_topic: dict[str, Any] = {}
        self._unrouted_on: list[Transport] = []
        self._retired: list[threading.Thread] = []

    @property
    def servers(self) -> list[Any]:
        """Every gateway server running now."""
        return ([self.unrouted] if self.unrouted is not None else []) + list(
            self.by_topic.values())

    @property
    def healthy(self) -> bool:
        """True while every gateway listens and every route's transport is connected."""
        if not all(server.healthy for server in self.servers):
            return False
        forwarder = self.forwarder
        if forwarder is None:
            return True
        try:
            return all(forwarder.transport_for(route).connected for route in forwarder.routes)
        except Exception:  # a transport that cannot even be built is not ready
            return False

    def start(self, route_tables: Sequence[dict[str, Any]]) -> None:
        """Start the gateways ``route_tables`` need (nothing without routes)."""
        from bridge.gateway import routes_from_config

        routes = routes_from_config(route_tables)
        plan = plan_gateways(routes, self.transports, self.default_exchange)
        forwarder = self._forwarder(routes)
        try:
            self._apply(plan, forwarder)
        except BaseException:
            self.stop()
            self.wait(10)
            forwarder.close()
            raise
        self.forwarder, self.routes = forwarder, routes
        self._log_routes()

    def reload(self, route_tables: Sequence[dict[str, Any]], grace: float) -> None:
        """Serve ``route_tables`` from now on, without dropping a request in flight.

        A route set that cannot be served (ValueError, a bad URL) leaves the old one."""
        from bridge.gateway import routes_from_config

        routes = routes_from_config(route_tables)
        plan = plan_gateways(routes, self.transports, self.default_exchange)
        old, before = self.forwarder, self.servers
        forwarder = self._forwarder(routes) if routes else None
        self._apply(plan, forwarder)
        self.forwarder, self.routes = forwarder, routes
        if old is not None:
            self._retire(old, grace, before)
        self._log_routes()

    def _forwarder(self, routes: Sequence[Any]) -> Any:
        from bridge.gateway import Forwarder

        forwarder = Forwarder(routes, conf=self.conf, max_in_flight=self.max_in_flight)
        try:
            forwarder.open()  # a bad URL fails here, before any gateway uses it
        except BaseException:
            forwarder.close()
            raise
        return forwarder

    def _apply(self, plan: GatewayPlan, forwarder: Any) -> None:
        """Make the running gateways those of ``plan``, all using ``forwarder``."""
        from bridge.gateway import gateway_server

        for topic in [topic for topic in self.by_topic if topic not in plan.listen]:
            self._stop_later(self.by_topic.pop(topic))
        if forwarder is not None:
            for server in self.servers:
                server.handler.forwarder = forwarder
        if plan.unrouted and self.unrouted is None:
            self.unrouted = self._start(gateway_server(
                [], bridge.Target(topic="gateway", server=self.server_name), forwarder,
                guard=self.guard))
        if self.unrouted is not None:
            if plan.unrouted:
                for transport in plan.unrouted:
                    self.unrouted.serve_unrouted(transport)
            else:
                server, self.unrouted = self.unrouted, None
                self._stop_later(server)
        self._unrouted_on = list(plan.unrouted)
        for topic, (exchange, on) in plan.listen.items():
            if topic not in self.by_topic:
                target = bridge.Target(exchange=exchange, topic=topic, server=self.server_name)
                self.by_topic[topic] = self._start(gateway_server(on, target, forwarder,
                                                                  guard=self.guard))

    def _start(self, server: Any) -> Any:
        if self.observe is not None:
            self.observe(server)
        server.start()
        return server

    def _stop_later(self, server: Any) -> None:
        server.stop()
        worker = threading.Thread(target=server.wait, name="bridge-gateway-drain", daemon=True)
        worker.start()
        self._retired.append(worker)

    def _retire(self, forwarder: Any, grace: float, servers: Sequence[Any]) -> None:
        """Close ``forwarder`` once ``servers`` have answered what it took (at most
        ``grace`` seconds)."""

        def close() -> None:
            deadline = time.monotonic() + grace
            # Requests taken before the swap hold the old forwarder's futures; the
            # gateways' in-flight counts fall to zero once those are answered.
            while time.monotonic() < deadline and any(s.in_flight for s in servers):
                time.sleep(0.05)
            forwarder.close()

        worker = threading.Thread(target=close, name="bridge-forwarder-retire", daemon=True)
        worker.start()
        self._retired.append(worker)

    def _log_routes(self) -> None:
        for route in self.routes:
            LOG.info("Gateway route: topic %r -> %s", route.topic,
                     bridge.TransportURL.parse(route.url))

    def stop(self) -> None:
        """Take no new requests on any gateway."""
        for server in self.servers:
            server.stop()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the gateways' requests in flight; ``TaskTimeout`` past ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for server in self.servers:
            server.wait(timeout=None if deadline is None
                        else max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Release the routes' transports (after :meth:`wait`)."""
        for worker in self._retired:
            worker.join(5)
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None
