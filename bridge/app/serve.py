"""``bridge serve``: one server, one dispatcher, one executor, every configured wire.

Lifecycle of the process:

* start: build one transport per URL (gRPC first, then each AMQP URL), one server
  listening on all of them, optional metrics; print where it listens, a command to
  call it, then ``bridge: ready``;
* SIGTERM or SIGINT: ``stop()`` (no new messages on any wire), then ``wait()`` up to
  the grace period for the calls already taken, then exit 0; if calls are still
  running when the grace period ends, exit 1 without waiting for them. A second
  SIGTERM/SIGINT while draining exits 1 at once;
* SIGHUP: ``reset()`` (listeners renew their connections);
* every ``health_interval`` seconds, ``server.healthy`` (False while an AMQP listener
  has lost its broker) is published by the wires that can tell (``set_serving``: the
  gRPC health service), so ``bridge health`` and Kubernetes gRPC probes see
  NOT_SERVING until the broker is back.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import bridge
from bridge.app.logs import RequestIdObserver, configure_logging
from bridge.app.settings import ServeSettings
from bridge.exceptions import TaskTimeout
from bridge.transport import driver_class

LOG = logging.getLogger("bridge.serve")

EXIT_OK = 0
EXIT_FAILED = 1


class EndpointLoadError(Exception):
    """An endpoint spec names nothing that can be imported or built."""


def load_endpoints(specs: Sequence[str], server: Any) -> list[Any]:
    """Build endpoints from ``module:Class``, ``module:factory`` or ``module`` specs.

    A class or factory that takes a ``server`` argument receives the server; a
    module (or a ``module:name`` naming a list) contributes every endpoint listed in
    its ``ENDPOINTS``. No specs: the shipped endpoints.
    """
    if not specs:
        from endpoints import default_endpoints

        return default_endpoints(server)
    result: list[Any] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EndpointLoadError(
                f"cannot import endpoint module {module_name!r}: {exc}") from exc
        if not attr:
            listed = getattr(module, "ENDPOINTS", None)
            if not isinstance(listed, (list, tuple)):
                raise EndpointLoadError(f"module {module_name!r} has no ENDPOINTS list; "
                                        "name a class or factory as module:Name")
            result.extend(listed)
            continue
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise EndpointLoadError(f"module {module_name!r} has no {attr!r}") from None
        if isinstance(obj, (list, tuple)):
            result.extend(obj)
        elif callable(obj):
            try:
                made = obj(server=server)
            except TypeError:
                made = obj()
            result.extend(made if isinstance(made, (list, tuple)) else [made])
        else:
            result.append(obj)
    return result


class _ServerProxy:
    """Stands for the server while endpoints are built, before the server exists."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    def __getattr__(self, name: str) -> Any:
        server = self._holder.get("server")
        if server is None:
            raise AttributeError(f"the server is not built yet (asked for {name!r})")
        return getattr(server, name)


def driver_conf(settings: ServeSettings) -> dict[str, Any]:
    """The ``conf`` mapping handed to ``get_transport``: the drivers' option groups, with
    the settings of ``bridge serve`` (message size, TLS files) in the groups of the gRPC
    and HTTP URLs' drivers (TLS files only where the URL asks for TLS)."""
    conf: dict[str, Any] = {name: dict(table) for name, table in settings.driver_groups.items()}
    tls: dict[str, Any] = {}
    if settings.tls_cert_file:
        tls["tls_cert_file"] = settings.tls_cert_file
        tls["tls_key_file"] = settings.tls_key_file
    if settings.tls_ca_file:
        # A CA on the server side means: clients must present a certificate it signed.
        tls["tls_ca_file"] = settings.tls_ca_file
        tls["tls_client_auth"] = True
    size = settings.max_message_size
    http_tls = bool(settings.http_url and settings.http_url.startswith("https://"))
    # gRPC's group gets the TLS files with grpcs://, and with gRPC off (then gateway
    # clients of grpcs:// routes use them).
    grpc_tls = not settings.grpc_url or settings.grpc_url.startswith("grpcs://")
    for url, served, with_tls in (
            (settings.grpc_url or "grpc://", {"max_receive_message_length": size,
                                             "max_send_message_length": size}, grpc_tls),
            (settings.http_url, {"max_message_size": size}, http_tls)):
        if not url:
            continue
        group_name = driver_class(url).implements.option_group or ""
        conf[group_name] = {**served, **(tls if with_tls else {}), **conf.get(group_name, {})}
    if settings.exchange:
        conf["control_exchange"] = settings.exchange
    return conf


def call_hint(url: str | None, settings: ServeSettings, topic: str) -> str | None:
    """A ready-to-paste ``bridge call`` for a listener's client URL, or None."""
    if not url:
        return None
    for wildcard, local in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
        url = url.replace(f"://{wildcard}:", f"://{local}:")
    extra = ""
    if settings.exchange:
        extra += f" --exchange {settings.exchange}"
    if url.startswith("grpcs://") and settings.tls_ca_file:
        extra += f" --tls-ca {settings.tls_ca_file}"
    return f"bridge call{extra} {url} {topic} echo value='\"hello\"'"


class _Signals:
    """Turns SIGTERM/SIGINT/SIGHUP into events on a queue the main loop reads."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._on_stop)
        if hasattr(signal, "SIGHUP"):
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_stop(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise _ForcedExit(signal.Signals(signum).name)
        self.events.put(signal.Signals(signum).name)

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.events.put("SIGHUP")


class _ForcedExit(BaseException):
    """A second stop signal while draining."""


def run(settings: ServeSettings, out: TextIO | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or the control endpoint's ``stop``); return the exit code."""
    out = out or sys.stdout
    configure_logging(settings.log_level, settings.log_format)
    conf = driver_conf(settings)
    transports: list[bridge.Transport] = []
    metrics_http = None
    signals = _Signals()
    server: Any = None
    gateways: list[Any] = []
    try:
        for url in settings.urls:
            transports.append(bridge.get_transport(conf, url))
        target = bridge.Target(topic=settings.topic,
                               server=settings.server or socket.gethostname(),
                               exchange=settings.exchange)
        holder: dict[str, Any] = {}
        endpoints = load_endpoints(settings.endpoints, _ServerProxy(holder))
        server = bridge.get_rpc_server(transports, target, endpoints,
                                       executor=settings.executor)
        holder["server"] = server
        server.add_observer(RequestIdObserver())
        metrics = None
        if settings.metrics_port is not None:
            from bridge.app.metrics import MetricsHTTPServer, ServerMetrics

            metrics = ServerMetrics(server)
            server.add_observer(metrics)
            metrics_http = MetricsHTTPServer(metrics.registry, settings.metrics_host,
                                             settings.metrics_port)
            metrics_http.start()
        signals.install()
        server.start(override_pool_size=settings.pool_size)
        gateways = start_gateways(settings, conf, server, transports,
                                  observe=functools.partial(_observe_gateway, metrics))
    except (bridge.MessagingException, EndpointLoadError, OSError, ValueError) as exc:
        LOG.error("Cannot start: %s", exc)
        _say(sys.stderr, f"bridge: cannot start: {exc}")
        signals.restore()
        for item in (*gateways, server):
            if item is not None and item.running:
                item.stop()
                item.wait()
        if metrics_http is not None:
            metrics_http.stop()
        for transport in transports:
            transport.cleanup()
        return EXIT_FAILED

    try:
        _announce(server, settings, metrics_http, out)
        code = _main_loop(server, settings, signals, gateways)
        for gateway in gateways:
            gateway.handler.forwarder.close()
        if metrics_http is not None:
            metrics_http.stop()
        for transport in transports:
            transport.cleanup()
        _say(out, "bridge: stopped")
    except _ForcedExit as exc:
        LOG.error("%s again: exiting now", exc)
        _flush_and_exit(EXIT_FAILED)
    signals.restore()
    return code


def _observe_gateway(metrics: Any, gateway: Any) -> None:
    gateway.add_observer(RequestIdObserver())
    if metrics is not None:
        metrics.observe_gateway(gateway)


def start_gateways(settings: ServeSettings, conf: dict[str, Any], server: Any,
                   transports: list[bridge.Transport],
                   observe: Callable[[Any], None] | None = None,
                   forwarder: Any = None) -> list[Any]:
    """Start the gateway servers the routes ask for (docs/gateway.md); [] without routes.

    ``observe(gateway)`` is called for each gateway before it starts (logs, metrics).

    A route is served on every transport that other processes reach and whose driver
    is not its upstream's (never back onto its own wire): on a transport whose driver
    hands over targets nobody serves (``implements.unrouted``: gRPC), by one gateway
    taking those requests; on any other, by one gateway per route topic listening
    there as this server.
    """
    if not settings.routes:
        return []
    from bridge.gateway import Forwarder, gateway_server, routes_from_config

    routes = routes_from_config(settings.routes)
    forwarder = forwarder or Forwarder(routes, conf=conf,
                                       max_in_flight=settings.gateway_max_in_flight)
    name = server.target.server
    gateways: list[Any] = []
    unrouted: list[bridge.Transport] = []
    listen: dict[str, list[bridge.Transport]] = {}
    for route in routes:
        upstream = driver_class(route.url)
        local = [t for t in transports
                 if type(t.driver) is not upstream and t.implements.remote]
        if not local:
            raise ValueError(f"the route for {route.topic!r} forwards to {route.url}, but "
                             "no other wire is served here to take its callers")
        for transport in local:
            if transport.implements.unrouted:
                if transport not in unrouted:
                    unrouted.append(transport)
                continue
            if route.topic == "*":
                raise ValueError(f"a route to {route.url} taken on {transport.url} needs a "
                                 "topic to listen on, not '*'")
            listen.setdefault(route.topic, [])
            if transport not in listen[route.topic]:
                listen[route.topic].append(transport)
    try:
        if unrouted:
            gateway = gateway_server([], bridge.Target(topic="gateway", server=name), forwarder)
            gateways.append(gateway)
            if observe is not None:
                observe(gateway)
            gateway.start()
            for transport in unrouted:
                gateway.serve_unrouted(transport)
        for topic, on in listen.items():
            route = next(item for item in routes if item.topic == topic)
            exchange = route.exchange if route.exchange not in ("*", None) else settings.exchange
            gateway = gateway_server(on, bridge.Target(exchange=exchange, topic=topic,
                                                       server=name), forwarder)
            gateways.append(gateway)
            if observe is not None:
                observe(gateway)
            gateway.start()
    except BaseException:
        for gateway in gateways:
            gateway.stop()
            gateway.wait()
        forwarder.close()
        raise
    for route in routes:
        LOG.info("Gateway route: topic %r -> %s", route.topic, bridge.TransportURL.parse(route.url))
    return gateways


def _say(out: TextIO, line: str) -> None:
    """One line in one write: endpoints' threads may print at the same time."""
    out.write(line + "\n")
    out.flush()


def _announce(server: Any, settings: ServeSettings, metrics_http: Any, out: TextIO) -> None:
    target = server.target
    _say(out, f"bridge: serving topic {target.topic!r} as server {target.server!r} with "
              f"{len(server.dispatcher.endpoints)} endpoints")
    hint = None
    for listener in server.listeners:
        _say(out, f"bridge: listening on {listener.address}")
        hint = hint or call_hint(listener.client_url, settings, target.topic)
    if metrics_http is not None:
        _say(out, f"bridge: metrics on {metrics_http.url}")
    if hint:
        _say(out, f"bridge: try: {hint}")
    _say(out, "bridge: ready")


def _main_loop(server: Any, settings: ServeSettings, signals: _Signals,
               gateways: Sequence[Any] = ()) -> int:
    """Wait for signals, keep gRPC health in step, then stop and drain (gateways too)."""
    serving: bool | None = None
    reason = "the server stopped"
    published = any(t.implements.process_health for t in server.transports)
    while server.running:
        healthy = server.healthy
        if healthy != serving:
            server.set_serving(healthy)
            if published and serving is not None:
                LOG.warning("Health is now %s", "SERVING" if healthy else "NOT_SERVING")
            serving = healthy
        try:
            event = signals.events.get(timeout=settings.health_interval)
        except queue.Empty:
            continue
        if event == "SIGHUP":
            LOG.info("SIGHUP: resetting the listeners' connections")
            server.reset()
            continue
        reason = event
        break
    signals.stopping = True
    LOG.info("%s: stopping; waiting up to %s s for %d call(s) in flight", reason,
             settings.grace_period, server.in_flight)
    try:
        for gateway in gateways:
            gateway.stop()
        server.stop()
        deadline = time.monotonic() + settings.grace_period
        for item in (*gateways, server):
            item.wait(timeout=max(0.0, deadline - time.monotonic()))
    except TaskTimeout:
        LOG.error("Grace period of %s s over with %d call(s) still running; exiting",
                  settings.grace_period, server.in_flight)
        _flush_and_exit(EXIT_FAILED)
    except _ForcedExit as exc:
        LOG.error("%s again: exiting with %d call(s) still running", exc, server.in_flight)
        _flush_and_exit(EXIT_FAILED)
    LOG.info("Stopped; every call taken was answered")
    return EXIT_OK


def _flush_and_exit(code: int) -> None:
    """Exit now, without joining worker threads that still run endpoint methods."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
