"""OpenTelemetry tracing for ``bridge serve`` (``pip install rpc-bridge[tracing]``).

With ``tracing = "otlp"`` or ``"console"`` every message a server takes gets a span
(kind SERVER; a forwarded one, kind CLIENT, ``forward <topic>.<method>``), whatever
its wire. The parent is the W3C trace context the caller sent, read in this order:

1. the wire's own headers (:attr:`IncomingMessage.headers`: gRPC metadata, AMQP
   application headers), ``traceparent`` and ``tracestate``;
2. the RPC context: oslo.messaging's tracing writes ``traceparent`` (and
   ``tracestate``) as top-level keys of the request context it sends.

A forwarded request leaves with the context of its forward span written the way
oslo.messaging writes it (``traceparent`` in the request context), so an
oslo.messaging service with tracing on continues the same trace: one trace runs from
a gRPC client through the bridge into that service.

Without the ``tracing`` extra nothing here imports OpenTelemetry. The exporter of
``otlp`` is configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables, the service
name by ``OTEL_SERVICE_NAME`` (default ``rpc-bridge``). An application that already
set a tracer provider keeps it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)

#: The request context keys oslo.messaging's tracing writes (W3C trace context).
CONTEXT_KEYS = ("traceparent", "tracestate")
_SPAN = "_bridge_span"

_enabled = False
_provider: Any = None


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but OpenTelemetry is not installed."""


def enabled() -> bool:
    """True once :func:`configure` turned tracing on (or :func:`enable` was called)."""
    return _enabled


def enable() -> None:
    """Trace with the tracer provider already set (tests, applications of their own)."""
    global _enabled
    _import()
    _enabled = True


def _import() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise TracingUnavailable("tracing needs OpenTelemetry: pip install "
                                 "'rpc-bridge[tracing]'") from None
    return trace


def configure(mode: str) -> None:
    """Turn tracing on with an exporter (``otlp``, ``console``), or leave it off."""
    global _enabled, _provider
    if mode == "off":
        return
    trace = _import()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise TracingUnavailable("tracing needs the OpenTelemetry SDK: pip install "
                                 "'rpc-bridge[tracing]'") from None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _enabled = True  # someone set a provider already: use it
        return
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                               "rpc-bridge")})
    provider = TracerProvider(resource=resource)
    if mode == "console":
        exporter: Any = ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n")
    else:
        exporter = _otlp_exporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    _enabled = True


def _otlp_exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                              os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
    try:
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingUnavailable(f"tracing = otlp ({protocol}) needs its exporter: pip "
                                 "install 'rpc-bridge[tracing]'") from None
    return OTLPSpanExporter()


def shutdown() -> None:
    """Export what is left (a provider this module set up)."""
    global _provider, _enabled
    if _provider is not None:
        _provider.shutdown()
        _provider = None
    _enabled = False


def carrier(incoming: IncomingMessage) -> dict[str, str]:
    """The W3C trace context of ``incoming``: the wire's headers, else its context."""
    headers = incoming.headers
    if headers and headers.get("traceparent"):
        return dict(headers)
    ctxt = incoming.ctxt if isinstance(incoming.ctxt, dict) else {}
    return {key: ctxt[key] for key in CONTEXT_KEYS if isinstance(ctxt.get(key), str)}


class TracingObserver:
    """A :class:`bridge.rpc.server.ServerObserver` that runs a span per message.

    ``forwarding`` (a gateway's observer) makes CLIENT spans and writes their context
    into the request context that is forwarded.
    """

    def __init__(self, forwarding: bool = False, topic: str | None = None) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = trace.get_tracer("rpc-bridge")
        self.forwarding = forwarding
        #: The topic in span names when the wire does not tell the request's own.
        self.topic = topic

    def on_start(self, incoming: IncomingMessage) -> None:
        """Start the span (its parent from the caller) and make it current."""
        from opentelemetry import context, propagate

        parent = propagate.extract(carrier(incoming))
        topic = getattr(incoming.target, "topic", None) or self.topic or "?"
        kind = self._trace.SpanKind.CLIENT if self.forwarding else self._trace.SpanKind.SERVER
        name = f"{'forward ' if self.forwarding else ''}{topic}.{incoming.method}"
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes={
            "rpc.system": "oslo_messaging", "rpc.method": incoming.method,
            "rpc.service": str(incoming.message.get("namespace") or ""),
            "messaging.destination.name": str(topic), "bridge.wire": incoming.wire,
            "messaging.operation": "call" if incoming.wants_reply else "cast"})
        incoming.__dict__[_SPAN] = span
        current = self._trace.set_span_in_context(span, parent)
        if not self.forwarding:
            context.attach(current)  # the endpoint method's own spans nest under it
        elif isinstance(incoming.ctxt, dict):
            # Written as oslo.messaging writes it, so its tracing continues the trace.
            for key in CONTEXT_KEYS:
                incoming.ctxt.pop(key, None)
            propagate.inject(incoming.ctxt, context=current)

    def on_finish(self, incoming: IncomingMessage, outcome: str, seconds: float) -> None:
        """End the span with the outcome; forget it as the current one."""
        from opentelemetry import context

        span = incoming.__dict__.pop(_SPAN, None)
        if span is None:
            return
        span.set_attribute("bridge.outcome", outcome)
        if outcome not in ("ok", "expected_error"):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome))
        span.end()
        if not self.forwarding:
            context.attach(context.Context())


def server_observer(forwarding: bool = False, topic: str | None = None,
                    ) -> TracingObserver | None:
    """The tracing observer of a server of ``topic`` (a gateway: ``forwarding``), None
    when tracing is off."""
    if not _enabled:
        return None
    return TracingObserver(forwarding, topic)
