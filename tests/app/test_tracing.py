"""OpenTelemetry tracing: a span per message on every wire and per forwarded call, the
W3C trace context read from the wire's headers or the RPC context (where oslo.messaging
18.3's tracing writes it), and written there when forwarding: one trace from a client
through the bridge into a real oslo.messaging service with its tracing on."""

from __future__ import annotations

import queue
import uuid

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra: pip install '.[tracing]'")

from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from waiting import wait_for  # noqa: E402

import bridge  # noqa: E402
from bridge.app import tracing  # noqa: E402
from bridge.app.tracing import TracingObserver, carrier  # noqa: E402
from bridge.transport.base import IncomingMessage  # noqa: E402
from endpoints import EchoEndpoint  # noqa: E402

BROKER = "rabbit://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="module")
def exporter():
    """An in-memory exporter on the process's tracer provider (set here if none is)."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.enable()
    yield memory
    memory.clear()


@pytest.fixture
def spans(exporter):
    exporter.clear()
    return exporter


def client_context(name: str = "client") -> tuple[dict, trace.Span]:
    """A request context carrying the trace context of a new client span."""
    tracer = trace.get_tracer("test-client")
    span = tracer.start_span(name, kind=trace.SpanKind.CLIENT)
    ctxt: dict = {"request_id": "req-trace"}
    propagate.inject(ctxt, context=trace.set_span_in_context(span))
    return ctxt, span


class _Incoming(IncomingMessage):
    def __init__(self, ctxt, headers=None):
        self.ctxt = ctxt
        self.message = {"method": "m"}
        self.headers = headers

    def reply(self, result=None, failure=None):
        pass


def test_the_wire_headers_come_before_the_context_keys():
    header = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    context = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"
    assert carrier(_Incoming({"traceparent": context}, {"traceparent": header})) == \
        {"traceparent": header}
    assert carrier(_Incoming({"traceparent": context, "tracestate": "a=b"})) == \
        {"traceparent": context, "tracestate": "a=b"}
    assert carrier(_Incoming({"traceparent": 5})) == {}


def test_a_server_span_continues_the_callers_trace(spans, memory_url, transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                   [EchoEndpoint()])
    server.add_observer(TracingObserver())
    server.start()
    try:
        ctxt, parent = client_context()
        client = bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=10)
        assert client.call(ctxt, "echo", value=1) == 1
        parent.end()
        with pytest.raises(ValueError):
            client.call({}, "fail")
    finally:
        server.stop()
        server.wait()
    done = [span for span in spans.get_finished_spans() if span.name.startswith("t.")]
    echo = next(span for span in done if span.name == "t.echo")
    assert echo.kind == trace.SpanKind.SERVER
    assert echo.context.trace_id == parent.get_span_context().trace_id
    assert echo.parent.span_id == parent.get_span_context().span_id
    assert echo.attributes["bridge.outcome"] == "ok" and echo.attributes["rpc.method"] == "echo"
    failed = next(span for span in done if span.name == "t.fail")
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.parent is None  # no trace context sent: a new trace


@pytest.fixture
def oslo_tracing_conf():
    from amqp_support import oslo_conf

    conf = oslo_conf()
    conf.set_override("tracing_enabled", True, group="oslo_messaging_tracing")
    return conf


@pytest.mark.broker
def test_one_trace_from_a_grpc_client_through_the_gateway_into_oslo_messaging(
        spans, broker_available, oslo_tracing_conf):
    import oslo_messaging

    from bridge.app.gateways import Gateways

    topic = f"traced_{uuid.uuid4().hex[:10]}"
    events: queue.Queue = queue.Queue()

    class Service:
        def echo(self, ctxt, value):
            events.put(dict(ctxt))
            return value

    oslo_transport = oslo_messaging.get_rpc_transport(oslo_tracing_conf, url=BROKER)
    oslo_server = oslo_messaging.get_rpc_server(
        oslo_transport, oslo_messaging.Target(topic=topic, server="oslo-1"), [Service()],
        executor="threading")
    oslo_server.start()
    grpc_transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    local = bridge.get_rpc_server(grpc_transport, bridge.Target(topic="bridge", server="b1"),
                                  [EchoEndpoint()])
    local.add_observer(TracingObserver())
    local.start()
    gateways = Gateways("b1", {}, [grpc_transport], None, 16,
                        observe=lambda gateway: gateway.add_observer(TracingObserver(True)))
    gateways.start([{"topic": topic, "url": BROKER}])
    client_transport = bridge.get_transport(None, local.addresses[0])
    try:
        ctxt, parent = client_context("grpc client")
        client = bridge.get_rpc_client(client_transport, bridge.Target(topic=topic), timeout=30)
        assert client.call(ctxt, "echo", value="through") == "through"
        parent.end()
        seen = events.get(timeout=10)
    finally:
        client_transport.cleanup()
        gateways.stop()
        gateways.wait(10)
        gateways.close()
        local.stop()
        local.wait()
        grpc_transport.cleanup()
        oslo_server.stop()
        oslo_server.wait()
        oslo_transport.cleanup()
    trace_id = parent.get_span_context().trace_id
    assert wait_for(lambda: any(span.name == "echo receive"
                                for span in spans.get_finished_spans()))
    done = {span.name: span for span in spans.get_finished_spans()
            if span.context.trace_id == trace_id}
    forward = done[f"forward {topic}.echo"]
    received = done["echo receive"]  # oslo.messaging's own span, on its side of the broker
    assert forward.kind == trace.SpanKind.CLIENT
    assert forward.parent.span_id == parent.get_span_context().span_id
    assert received.parent.span_id == forward.context.span_id
    assert seen["traceparent"].split("-")[2] == format(forward.context.span_id, "016x")
    assert seen["request_id"] == "req-trace"


@pytest.mark.broker
def test_an_oslo_messaging_client_with_tracing_starts_the_trace_a_bridge_server_continues(
        spans, broker_available, oslo_tracing_conf):
    import oslo_messaging

    topic = f"traced_{uuid.uuid4().hex[:10]}"
    transport = bridge.get_transport(None, BROKER)
    server = bridge.get_rpc_server(transport, bridge.Target(topic=topic, server="b1"),
                                   [EchoEndpoint()])
    server.add_observer(TracingObserver(topic=topic))
    server.start()
    oslo_transport = oslo_messaging.get_rpc_transport(oslo_tracing_conf, url=BROKER)
    try:
        client = oslo_messaging.get_rpc_client(oslo_transport, oslo_messaging.Target(topic=topic),
                                               timeout=30)
        assert client.call({}, "echo", value=7) == 7
    finally:
        oslo_transport.cleanup()
        server.stop()
        server.wait()
        transport.cleanup()
    finished = spans.get_finished_spans()
    sent = next(span for span in finished if span.name == f"{topic}.echo"
                and span.kind == trace.SpanKind.PRODUCER)
    served = next(span for span in finished if span.name == f"{topic}.echo"
                  and span.kind == trace.SpanKind.SERVER)
    assert served.context.trace_id == sent.context.trace_id
    assert served.parent.span_id == sent.context.span_id
    assert served.attributes["bridge.wire"] == "amqp"


def test_the_wire_header_readers_keep_only_w3c_trace_context():
    from bridge.transport.amqp.headers import trace_headers as amqp_headers
    from bridge.transport.grpc.headers import trace_headers as grpc_headers

    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert grpc_headers([("traceparent", parent), ("authorization", "secret"),
                         ("tracestate", "x=1")]) == {"traceparent": parent, "tracestate": "x=1"}
    assert grpc_headers([("user-agent", "x")]) is None and grpc_headers(None) is None
    assert grpc_headers([("traceparent", "x" * 600)]) is None
    assert amqp_headers({"traceparent": parent.encode(), "other": 1}) == {"traceparent": parent}
    assert amqp_headers(None) is None and amqp_headers({"traceparent": 5}) is None


def test_bridge_serve_with_console_tracing_writes_spans_as_json_lines():
    import json
    import signal
    import subprocess
    import sys

    from serving import ROOT, ServeProcess, source_env

    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--tracing", "console",
                         "--log-format", "json"])
    trace_id = uuid.uuid4().hex
    try:
        proc.wait_ready()
        context = json.dumps({"traceparent": f"00-{trace_id}-{'c' * 16}-01"})
        done = subprocess.run([sys.executable, "-m", "bridge", "call", proc.address("grpc"),
                               "bridge", "echo", "value=1", "--context", context],
                              capture_output=True, text=True, env=source_env(), cwd=ROOT,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        proc.close()
    records = [json.loads(line) for line in proc.stderr_lines]
    served = [item for item in records if item.get("name") == "bridge.echo"]
    assert served and served[0]["context"]["trace_id"] == "0x" + trace_id
    assert served[0]["parent_id"] == "0x" + "c" * 16
