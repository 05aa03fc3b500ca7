"""Prometheus metrics for ``bridge serve``.

Exposed series (all in one registry per server, served on ``/metrics``):

* ``bridge_requests_total{wire, topic, method, outcome}``: messages answered; the
  outcome is the kind of failure (:func:`bridge.failures.classify`): ``ok``,
  ``expected_error``, ``error``, ``no_such_method``, ``unsupported_version``,
  ``malformed``, ``timeout``, ... A method
  no endpoint serves is counted as ``method="(unknown)"``, so callers cannot grow the
  label set without bound.
* ``bridge_request_duration_seconds{wire, topic, method}``: a histogram of the time from
  the listener handing a message over to its reply being sent and acknowledged.
* ``bridge_requests_in_flight``: messages taken and not yet answered, all wires together.
* ``bridge_healthy``: 1 while the server runs and every listener can take messages.
* ``bridge_reconnects_total{wire}``: reconnections made by drivers in this process.
* ``bridge_forwarded_total{wire, route, method, outcome}``,
  ``bridge_forwarded_duration_seconds{wire, route, method}`` and
  ``bridge_forwarded_in_flight``: requests forwarded by the gateways registered with
  :meth:`ServerMetrics.observe_gateway`; ``route`` is the configured topic of the route
  that took the request, and the method label is kept only when an upstream server ran
  the method (docs/configuration.md, "Metrics").
* ``bridge_refusals_total{wire, reason}``: requests a driver of this process refused
  before any server saw them, so they are not in ``bridge_requests_total``. The reason
  is the ``bridge.v1.Failure`` reason without its ``REASON_`` prefix, lower-cased:
  ``invalid_argument`` (undecodable request, malformed envelope or value; on AMQP, a
  bad message rejected without requeue), ``target_not_found`` (no
  local server of the target), ``resource_exhausted`` (over ``max_concurrent_calls``),
  ``unavailable`` (the target's servers are stopping or not started); ``internal`` is
  an AMQP delivery dropped after an unexpected error while taking it.

Drivers count reconnections and refusals with :mod:`bridge.stats`, whether or not
metrics are served; they are read here at scrape time. The registry also holds
Prometheus' standard process (``process_*``: CPU, memory, open files), platform
(``python_info``) and garbage collector (``python_gc_*``) series.

The HTTP server answers ``/metrics``, ``/healthz`` (200 while the process serves,
else 503) and ``/readyz`` (200 while every wire and route is connected, else 503);
any other path is 404.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bridge.failures import UNTRUSTED_METHOD_OUTCOMES
from bridge.stats import reconnect_counts, refusal_counts
from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)

_UNKNOWN_METHOD = "(unknown)"
_UNBOUNDED_OUTCOMES = UNTRUSTED_METHOD_OUTCOMES
#: Forwarded requests keep their method label only when an upstream server ran the
#: method (ok, or its own exception): any other outcome may carry whatever name a
#: caller sent.
_ANSWERED_UPSTREAM = frozenset({"ok", "expected_error", "error"})
_MAX_LABEL = 100

#: Latency buckets in seconds: sub-millisecond in-process calls up to slow methods.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)

class _ReconnectCollector:
    """Reports :func:`bridge.stats.record_reconnect`'s counts at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("bridge_reconnects", "Driver reconnections, by wire",
                                     labels=["wire"])
        for wire, count in sorted(reconnect_counts().items()):
            family.add_metric([wire], count)
        yield family


class _RefusalCollector:
    """Reports :func:`bridge.stats.record_refusal`'s counts at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("bridge_refusals",
                                     "Requests refused before dispatch, by wire and reason",
                                     labels=["wire", "reason"])
        for (wire, reason), count in sorted(refusal_counts().items()):
            family.add_metric([wire, reason], count)
        yield family


class ServerMetrics:
    """The metrics of one server; register it with ``server.add_observer(metrics)``."""

    def __init__(self, server: Any) -> None:
        from prometheus_client import (
            GC_COLLECTOR,
            PLATFORM_COLLECTOR,
            PROCESS_COLLECTOR,
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
        )

        self.server = server
        self.topic = str(server.target.topic)
        self.registry = CollectorRegistry()
        # The same process, platform and gc series a default registry has.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter("bridge_requests", "Messages answered",
                                ["wire", "topic", "method", "outcome"], registry=self.registry)
        self.latency = Histogram("bridge_request_duration_seconds",
                                 "Seconds from a message's arrival to its answer",
                                 ["wire", "topic", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        in_flight = Gauge("bridge_requests_in_flight", "Messages taken and not yet answered",
                          registry=self.registry)
        in_flight.set_function(lambda: server.in_flight)
        healthy = Gauge("bridge_healthy",
                        "1 while the server runs and every listener can take messages",
                        registry=self.registry)
        healthy.set_function(lambda: 1 if server.healthy else 0)
        self.registry.register(_ReconnectCollector())  # type: ignore[arg-type]
        self.registry.register(_RefusalCollector())  # type: ignore[arg-type]
        self.forwarded = Counter("bridge_forwarded", "Requests forwarded by gateway routes "
                                 "and answered", ["wire", "route", "method", "outcome"],
                                 registry=self.registry)
        self.forwarded_latency = Histogram(
            "bridge_forwarded_duration_seconds",
            "Seconds from a forwarded request's arrival to its answer",
            ["wire", "route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._gateways: list[Any] = []
        forwarding = Gauge("bridge_forwarded_in_flight",
                           "Forwarded requests taken and not yet answered",
                           registry=self.registry)
        forwarding.set_function(lambda: sum(item.in_flight for item in self._gateways))

    def observe_gateway(self, gateway: Any) -> None:
        """Count what ``gateway`` (a server with a :class:`bridge.gateway.ForwardHandler`)
        forwards."""
        self._gateways.append(gateway)
        gateway.add_observer(_GatewayObserver(self, gateway))

    def on_start(self, incoming: IncomingMessage) -> None:
        """Nothing to do before dispatch (in-flight is read from the server)."""

    def on_finish(self, incoming: IncomingMessage, outcome: str, seconds: float) -> None:
        """Count the message and observe its latency."""
        method = _UNKNOWN_METHOD if outcome in _UNBOUNDED_OUTCOMES else incoming.method
        _record(self.requests, self.latency, (incoming.wire, self.topic, method), outcome,
                seconds)

    def render(self) -> bytes:
        """The current metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _GatewayObserver:
    """Counts one gateway's forwarded requests into its :class:`ServerMetrics`."""

    def __init__(self, metrics: ServerMetrics, gateway: Any) -> None:
        self.metrics = metrics
        self.gateway = gateway

    def on_start(self, incoming: IncomingMessage) -> None:
        """Nothing to do before forwarding."""

    def on_finish(self, incoming: IncomingMessage, outcome: str, seconds: float) -> None:
        """Count the forwarded request under its route and observe its latency."""
        method = incoming.method if outcome in _ANSWERED_UPSTREAM else _UNKNOWN_METHOD
        _record(self.metrics.forwarded, self.metrics.forwarded_latency,
                (incoming.wire, self.gateway.handler.route_topic(incoming), method), outcome,
                seconds)


def _record(counter: Any, histogram: Any, labels: tuple[Any, ...], outcome: str,
            seconds: float) -> None:
    """Count one answered message under ``labels`` + ``outcome``; observe its latency."""
    values = tuple(str(value)[:_MAX_LABEL] for value in labels)
    counter.labels(*values, outcome).inc()
    histogram.labels(*values).observe(max(0.0, seconds))


def _plain(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


Probe = Callable[[], bool]


def _always() -> bool:
    return True


class MetricsHTTPServer:
    """Serves ``/metrics`` (a registry), ``/healthz`` and ``/readyz`` from a daemon thread.

    ``live`` and ``ready`` are asked at each request of ``/healthz`` and ``/readyz``.
    """

    def __init__(self, registry: Any, host: str = "127.0.0.1", port: int = 0,
                 live: Probe = _always, ready: Probe = _always) -> None:
        from prometheus_client import make_wsgi_app

        metrics_app = make_wsgi_app(registry)
        probes = {"/healthz": live, "/readyz": ready}

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path == "/metrics":
                return metrics_app(environ, start_response)
            probe = probes.get(path)
            if probe is None:
                return _plain(start_response, "404 Not Found",
                              "not found: try /metrics, /healthz or /readyz\n")
            try:
                ok = bool(probe())
            except Exception:  # a probe that fails says: not ok
                LOG.exception("The %s probe failed", path)
                ok = False
            return _plain(start_response, "200 OK" if ok else "503 Service Unavailable",
                          "ok\n" if ok else "not ok\n")

        server_cls = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        self._httpd = make_server(host, port, app, server_class=server_cls,
                                  handler_class=_QuietHandler)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="bridge-metrics", daemon=True)

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Start answering scrapes."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the socket."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
