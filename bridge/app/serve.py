"""``bridge serve``: one server, one dispatcher, one executor, every configured wire.

Lifecycle of the process:

* start: check the whole configuration (:mod:`bridge.app.check`: a problem exits 2
  before anything listens), build one transport per URL (gRPC first, then each AMQP
  URL), one server listening on all of them, the gateways of the routes, optional
  metrics; print where it listens, a command to call it, then ``bridge: ready``;
* SIGTERM or SIGINT: ``stop()`` (no new messages on any wire), then ``wait()`` up to
  the grace period for the calls already taken, then exit 0; if calls are still
  running when the grace period ends, exit 1 without waiting for them. A second
  SIGTERM/SIGINT while draining exits 1 at once;
* SIGHUP: read the settings again (same flags, environment and config file) and
  serve the new routes, run every hook of :data:`RELOAD_HOOKS` (the token file, the JWT
  keys and the policy: :mod:`bridge.app.security`), then ``reset()`` the listeners;
  calls in flight are not dropped, and a configuration that does not load keeps the
  old one (logged). The gRPC server's TLS files are followed without a signal;
* every ``health_interval`` seconds, readiness (every listener and every route's
  transport connected) is published through ``set_serving`` (the gRPC health
  service's ``readiness`` name) and on ``/readyz``; liveness (the server runs) is
  ``liveness`` and ``/healthz`` (docs/configuration.md, "Health").
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import bridge
from bridge.app import security
from bridge.app.announce import Announcer, call_hint
from bridge.app.gateways import Gateways
from bridge.app.loading import EndpointLoadError, load_endpoints
from bridge.app.logs import RequestIdObserver, configure_logging
from bridge.app.memory import limit_malloc_arenas
from bridge.app.settings import ServeSettings, SettingsError, resolve
from bridge.exceptions import TaskTimeout
from bridge.transport import driver_class

LOG = logging.getLogger("bridge.serve")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

#: Called with the :class:`Runtime` on each SIGHUP, after the routes are reloaded, in
#: order. A hook that raises is logged and the others still run; each keeps its own
#: old state when its new one does not load (a TLS reload, an access policy reload).
RELOAD_HOOKS: list[Callable[[Runtime], None]] = [security.reload_guard]

__all__ = ["RELOAD_HOOKS", "EndpointLoadError", "Runtime", "call_hint", "driver_conf",
           "load_endpoints", "run"]


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
    the settings of ``bridge serve`` (message size, TLS files, connection age) in the groups
    of the gRPC and HTTP URLs' drivers (TLS files only where the URL asks for TLS;
    connection age on gRPC only)."""
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
    grpc_served: dict[str, Any] = {"max_receive_message_length": size,
                                   "max_send_message_length": size}
    if settings.max_connection_age is not None:
        grpc_served["max_connection_age_ms"] = max(1, round(settings.max_connection_age * 1000))
    if settings.max_connection_age_grace is not None:
        grpc_served["max_connection_age_grace_ms"] = max(
            1, round(settings.max_connection_age_grace * 1000))
    http_tls = bool(settings.http_url and settings.http_url.startswith("https://"))
    # gRPC's group gets the TLS files with grpcs://, and with gRPC off (then gateway
    # clients of grpcs:// routes use them).
    grpc_tls = not settings.grpc_url or settings.grpc_url.startswith("grpcs://")
    for url, served, with_tls in (
            (settings.grpc_url or "grpc://", grpc_served, grpc_tls),
            (settings.http_url, {"max_message_size": size}, http_tls)):
        if not url:
            continue
        group_name = driver_class(url).implements.option_group or ""
        conf[group_name] = {**served, **(tls if with_tls else {}), **conf.get(group_name, {})}
    if settings.exchange:
        conf["control_exchange"] = settings.exchange
    return conf


class Runtime:
    """What one ``bridge serve`` runs: its settings, transports, server and gateways.

    Reload hooks (:data:`RELOAD_HOOKS`) receive it; ``settings`` is then the newly
    read configuration (the old one when it did not load).
    """

    def __init__(self, settings: ServeSettings, flags: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.flags = dict(flags or {})
        self.conf = driver_conf(settings)
        self.transports: list[bridge.Transport] = []
        self.server: Any = None
        self.gateways: Gateways | None = None
        self.metrics: Any = None
        self.metrics_http: Any = None
        #: The bridge.auth.Guard of the server and its gateways (built by start()).
        self.guard: Any = None

    # -- health ------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """The process serves: its server runs."""
        return self.server is not None and self.server.running

    @property
    def ready(self) -> bool:
        """Every listener takes messages and every route's transport is connected."""
        if self.server is None or not self.server.healthy:
            return False
        return self.gateways is None or self.gateways.healthy

    # -- start and stop ----------------------------------------------------------------

    def start(self) -> None:
        """Build and start everything; on failure, release what was built and raise."""
        settings = self.settings
        try:
            self.guard = security.build_guard(settings)
            for url in settings.urls:
                self.transports.append(bridge.get_transport(self.conf, url))
            target = bridge.Target(topic=settings.topic,
                                   server=settings.server or socket.gethostname(),
                                   exchange=settings.exchange)
            holder: dict[str, Any] = {}
            endpoints = load_endpoints(settings.endpoints, _ServerProxy(holder),
                                       settings.default_endpoints)
            security.check_exposure(settings, endpoints, self.guard)
            self.server = bridge.get_rpc_server(self.transports, target, endpoints,
                                                executor=settings.executor, guard=self.guard)
            holder["server"] = self.server
            self._observe(self.server)
            self._start_metrics()
            self.server.start(override_pool_size=settings.pool_size)
            self.gateways = Gateways(target.server, self.conf, self.transports,
                                     settings.exchange, settings.gateway_max_in_flight,
                                     observe=functools.partial(_observe_gateway, self),
                                     guard=self.guard)
            self.gateways.start(settings.routes)
        except BaseException:
            self.close()
            raise

    def _observe(self, server: Any, forwarding: bool = False) -> None:
        server.add_observer(RequestIdObserver())
        from bridge.app import tracing

        observer = tracing.server_observer(forwarding, str(server.target.topic))
        if observer is not None:
            server.add_observer(observer)

    def _start_metrics(self) -> None:
        settings = self.settings
        if settings.metrics_port is None:
            return
        from bridge.app.metrics import MetricsHTTPServer, ServerMetrics

        self.metrics = ServerMetrics(self.server)
        self.server.add_observer(self.metrics)
        self.metrics_http = MetricsHTTPServer(self.metrics.registry, settings.metrics_host,
                                              settings.metrics_port,
                                              live=lambda: self.live, ready=lambda: self.ready)
        self.metrics_http.start()

    def stop(self) -> None:
        """Take no new messages on any wire or gateway."""
        if self.gateways is not None:
            self.gateways.stop()
        if self.server is not None:
            self.server.stop()

    def wait(self, timeout: float) -> None:
        """Wait for the calls in flight; ``TaskTimeout`` past ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        if self.gateways is not None:
            self.gateways.wait(timeout)
        if self.server is not None:
            self.server.wait(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Release everything (after :meth:`wait`, or after a failed start)."""
        if self.gateways is not None:
            self.gateways.stop()
            self.gateways.close()
        if self.server is not None and self.server.running:
            self.server.stop()
            self.server.wait()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        for transport in self.transports:
            transport.cleanup()

    # -- reload ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the configuration again, serve its routes, run the reload hooks
        and reset the listeners. What does not load keeps its old state."""
        try:
            settings = resolve(self.flags)
        except SettingsError as exc:
            LOG.error("SIGHUP: the configuration does not load, keeping the old one: %s",
                      exc)
            settings = None
        if settings is not None:
            if settings.routes != self.settings.routes and self.gateways is not None:
                try:
                    self.gateways.reload(settings.routes, settings.grace_period)
                    LOG.info("SIGHUP: %d route(s) now served", len(settings.routes))
                except Exception as exc:  # noqa: BLE001 - the old routes stay
                    LOG.error("SIGHUP: the new routes cannot be served, keeping the old "
                              "ones: %s", exc)
                    settings.routes = self.settings.routes
            self.settings = settings
        for hook in list(RELOAD_HOOKS):
            try:
                hook(self)
            except Exception:
                LOG.exception("SIGHUP: reload hook %r failed", hook)
        LOG.info("SIGHUP: resetting the listeners' connections")
        self.server.reset()


def _observe_gateway(runtime: Runtime, gateway: Any) -> None:
    runtime._observe(gateway, forwarding=True)
    if runtime.metrics is not None:
        runtime.metrics.observe_gateway(gateway)


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
        self._previous.clear()

    def _on_stop(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise _ForcedExit(signal.Signals(signum).name)
        self.events.put(signal.Signals(signum).name)

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.events.put("SIGHUP")


class _ForcedExit(BaseException):
    """A second stop signal while draining."""


def run(settings: ServeSettings, out: TextIO | None = None,
        flags: Mapping[str, Any] | None = None, command: str = "bridge") -> int:
    """Serve until SIGTERM/SIGINT (or the control endpoint's ``stop``); return the exit code.

    ``flags`` are the command-line settings, read again with the environment and the
    config file on SIGHUP; ``command`` is how the printed hint calls this program.
    """
    out = out or sys.stdout
    limit_malloc_arenas()  # before the threads that would each get an arena start
    announcer = Announcer(out, settings.log_format)
    if settings.log_format == "json":
        # grpc's C core writes its own lines to stderr; in JSON mode it keeps quiet.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    configure_logging(settings.log_level, settings.log_format)
    from bridge.app import check, tracing

    problems = check.problems(settings, build_endpoints=False)
    if problems:
        for problem in problems:
            announcer.error(f"bridge serve: configuration problem: {problem}")
        announcer.error("bridge serve: fix the problems above (bridge check lists them "
                        "without serving)")
        return EXIT_CONFIG
    tracing.configure(settings.tracing)
    runtime = Runtime(settings, flags)
    signals = _Signals()
    try:
        signals.install()
        runtime.start()
    except (bridge.MessagingException, EndpointLoadError, OSError, ValueError) as exc:
        LOG.debug("Cannot start", exc_info=True)
        announcer.error(f"bridge serve: cannot start: {_one_line(exc)}")
        signals.restore()
        return EXIT_CONFIG if isinstance(exc, EndpointLoadError) else EXIT_FAILED
    try:
        announcer.announce(runtime, command)
        code = _main_loop(runtime, signals)
        runtime.close()
        announcer.say("bridge: stopped")
    except _ForcedExit as exc:
        LOG.error("%s again: exiting now", exc)
        _flush_and_exit(EXIT_FAILED)
    signals.restore()
    tracing.shutdown()
    return code


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _main_loop(runtime: Runtime, signals: _Signals) -> int:
    """Wait for signals, keep readiness published, then stop and drain (gateways too)."""
    server, settings = runtime.server, runtime.settings
    serving: bool | None = None
    reason = "the server stopped"
    published = any(t.implements.process_health for t in server.transports)
    while server.running:
        ready = runtime.ready
        if ready != serving:
            server.set_serving(ready)
            if published and serving is not None:
                LOG.warning("Readiness is now %s", "SERVING" if ready else "NOT_SERVING")
            serving = ready
        try:
            event = signals.events.get(timeout=settings.health_interval)
        except queue.Empty:
            continue
        if event == "SIGHUP":
            runtime.reload()
            settings = runtime.settings
            continue
        reason = event
        break
    signals.stopping = True
    grace = runtime.settings.grace_period
    LOG.info("%s: stopping; waiting up to %s s for %d call(s) in flight", reason, grace,
             server.in_flight)
    try:
        runtime.stop()
        runtime.wait(grace)
    except TaskTimeout:
        LOG.error("Grace period of %s s over with %d call(s) still running; exiting",
                  grace, server.in_flight)
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

