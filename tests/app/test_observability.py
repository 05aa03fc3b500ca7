"""Metrics (the server's observer seam, prometheus) and log lines that carry the request id."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import bridge
from bridge import stats
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.app import metrics
from bridge.app.logs import RequestIdObserver, configure_logging
from bridge.transport.grpc.values import from_value
from endpoints import default_endpoints
from tests.grpc_helpers import channel, envelope, raw_call
from tests.waiting import wait_for

LOG = logging.getLogger("tests.endpoint")


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self, ctxt):
        self.entered.set()
        assert self.release.wait(10)
        return "released"


class Chatty:
    def say(self, ctxt, text):
        LOG.warning("endpoint says %s", text)
        return text

    async def say_async(self, ctxt, text):
        LOG.warning("async endpoint says %s", text)
        return text


def samples(registry_text: bytes) -> dict[tuple, float]:
    result = {}
    for family in text_string_to_metric_families(registry_text.decode()):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


def client(transport, **kwargs):
    return bridge.get_rpc_client(transport, bridge.Target(topic="topic", **kwargs), timeout=5)


def test_requests_are_counted_by_wire_topic_method_and_outcome(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   default_endpoints())
    observed = metrics.ServerMetrics(server)
    server.add_observer(observed)
    server.start()
    try:
        rpc = client(transport)
        assert rpc.call({}, "ping") == "pong"
        assert rpc.call({}, "ping") == "pong"
        with pytest.raises(ValueError):
            rpc.call({}, "fail")
        with pytest.raises(bridge.RemoteError) as no_method:
            rpc.call({}, "made_up_name_1")
        assert no_method.value.exc_type == "NoSuchMethod"
        with pytest.raises(bridge.RemoteError) as no_version:
            client(transport, namespace="nowhere").call({}, "made_up_name_2")
        assert no_version.value.exc_type == "UnsupportedVersion"
    finally:
        server.stop()
        server.wait()
    got = samples(observed.render())

    def count(method, outcome):
        key = ("bridge_requests_total", (("method", method), ("outcome", outcome),
                                         ("topic", "topic"), ("wire", "memory")))
        return got.get(key)

    assert count("ping", "ok") == 2
    assert count("fail", "error") == 1
    assert count("(unknown)", "no_such_method") == 1
    assert count("(unknown)", "unsupported_version") == 1
    assert not any("made_up_name" in str(labels) for _, labels in got)
    latency = ("bridge_request_duration_seconds_count",
               (("method", "ping"), ("topic", "topic"), ("wire", "memory")))
    assert got[latency] == 2


def test_in_flight_and_health_gauges_read_the_server(transport):
    gate = Gate()
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"), [gate])
    observed = metrics.ServerMetrics(server)
    server.add_observer(observed)
    server.start()
    result = {}
    caller = threading.Thread(target=lambda: result.update(r=client(transport).call({}, "hold")))
    caller.start()
    try:
        assert gate.entered.wait(5)
        during = samples(observed.render())
        assert during[("bridge_requests_in_flight", ())] == 1
        assert during[("bridge_healthy", ())] == 1
    finally:
        gate.release.set()
        caller.join(10)
        server.stop()
        server.wait()
    after = samples(observed.render())
    assert after[("bridge_requests_in_flight", ())] == 0
    assert after[("bridge_healthy", ())] == 0
    assert result == {"r": "released"}


def test_reconnects_are_counted_and_served_over_http(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"), [])
    observed = metrics.ServerMetrics(server)
    before = stats.reconnect_counts().get("amqp", 0)
    stats.record_reconnect("amqp")
    stats.record_reconnect("amqp")
    http = metrics.MetricsHTTPServer(observed.registry, "127.0.0.1", 0)
    http.start()
    try:
        with urllib.request.urlopen(http.url, timeout=5) as response:
            body = response.read()
    finally:
        http.stop()
    got = samples(body)
    assert got[("bridge_reconnects_total", (("wire", "amqp"),))] == before + 2


class Broken:
    def on_start(self, incoming):
        raise RuntimeError("observer bug")

    def on_finish(self, incoming, outcome, seconds):
        raise RuntimeError("observer bug")


def test_a_failing_observer_never_breaks_handling(transport, caplog):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   default_endpoints())
    server.add_observer(Broken())
    server.start()
    try:
        assert client(transport).call({}, "echo", value=3) == 3
    finally:
        server.stop()
        server.wait()
    assert "observer bug" in caplog.text


@pytest.mark.parametrize("executor", ["threading", "blocking", "asyncio"])
def test_json_lines_carry_the_request_id(transport, executor):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json", stream)
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Chatty()], executor=executor)
    server.add_observer(RequestIdObserver())
    server.start()
    try:
        rpc = client(transport)
        assert rpc.call({"request_id": "req-abc"}, "say", text="hello") == "hello"
        assert rpc.call({}, "say", text="anonymous") == "anonymous"
        if executor == "asyncio":
            assert rpc.call({"request_id": "req-async"}, "say_async", text="x") == "x"
    finally:
        server.stop()
        server.wait()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    said = {line["message"]: line for line in lines if "says" in line["message"]}
    assert said["endpoint says hello"]["request_id"] == "req-abc"
    assert said["endpoint says hello"]["level"] == "WARNING"
    assert "request_id" not in said["endpoint says anonymous"]
    if executor == "asyncio":
        assert said["async endpoint says x"]["request_id"] == "req-async"


def test_text_lines_carry_the_request_id_and_failures_are_logged_with_it(transport):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "text", stream)
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   default_endpoints())
    server.add_observer(RequestIdObserver())
    server.start()
    try:
        with pytest.raises(ValueError):
            client(transport).call({"request_id": "req-fail-1"}, "fail", message="kaput")
    finally:
        server.stop()
        server.wait()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    failure_lines = [line for line in stream.getvalue().splitlines() if "[req-fail-1]" in line]
    assert failure_lines and "ERROR" in failure_lines[0]


@pytest.mark.parametrize("ctxt, expected", [
    ({"request_id": "req-1"}, "req-1"), ({"global_request_id": "g-1"}, "g-1"),
    ({"request_id": {"not": "text"}}, None), ({}, None), (None, None),
    ({"request_id": "x" * 1000}, "x" * 128),
])
def test_request_id_of_any_context(ctxt, expected):
    from bridge.app.logs import request_id_of

    assert request_id_of(ctxt) == expected


# -- refusals before dispatch (bridge_refusals_total) -----------------------------------------

class Refusals:
    """Follows ``bridge_refusals_total`` of one wire: ``moved()`` is the change by reason."""

    def __init__(self, wire: str) -> None:
        self.wire = wire
        self.last = stats.refusal_counts()

    def moved(self) -> dict[str, int]:
        now = stats.refusal_counts()
        changed = {reason: count - self.last.get((wire, reason), 0)
                   for (wire, reason), count in now.items()
                   if wire == self.wire and count != self.last.get((wire, reason), 0)}
        self.last = now
        return changed


def _grpc_server(flavour, endpoints, **options):
    transport = bridge.get_transport(
        {"grpc": {"server_flavour": flavour, **options}}, "grpc://127.0.0.1:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   endpoints)
    observed = metrics.ServerMetrics(server)
    server.add_observer(observed)
    server.start()
    return transport, server, observed


def _refused(chan, data, method="Call"):
    """The status code of a raw request that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        chan.unary_unary(f"/bridge.v1.Bridge/{method}")(data, timeout=10)
    return info.value.code()


def _call(env):
    return pb.CallRequest(envelope=env).SerializeToString()


def _cast(env):
    return pb.CastRequest(envelope=env).SerializeToString()


def _stream_errors(chan, *requests):
    """Send CallStream requests (bytes) on one stream; the error codes of the answers."""
    replies = chan.stream_stream("/bridge.v1.Bridge/CallStream")(iter(requests), timeout=10)
    return sorted(grpc.StatusCode.OK.value[0] if not reply.HasField("error")
                  else reply.error.code
                  for reply in map(pb.StreamResponse.FromString, replies))


def _stream_request(env, call_id=1):
    return pb.StreamRequest(id=call_id, envelope=env).SerializeToString()


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_grpc_bad_requests_and_unknown_targets_are_counted_once(flavour):
    transport, server, observed = _grpc_server(flavour, default_endpoints())
    chan = channel(server.addresses[0])
    refusals = Refusals("grpc")
    bad_value = envelope(method="echo")
    bad_value.args["value"].big_integer_value = "12x"
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    try:
        for data, method in [(b"\xff\xff\xff", "Call"), (b"\x0a\x05garbage", "Cast"),
                             (_call(envelope(topic="")), "Call"),
                             (_call(envelope(method="")), "Call"),
                             (_call(envelope(fanout=True)), "Call"),
                             (_call(bad_value), "Call"), (_cast(bad_value), "Cast")]:
            assert _refused(chan, data, method) == grpc.StatusCode.INVALID_ARGUMENT
            assert refusals.moved() == {"invalid_argument": 1}, (method, data)
        assert _refused(chan, _call(envelope(topic="nobody"))) == grpc.StatusCode.NOT_FOUND
        assert refusals.moved() == {"target_not_found": 1}
        assert _refused(chan, _cast(envelope(server="nobody")), "Cast") == (
            grpc.StatusCode.NOT_FOUND)
        assert refusals.moved() == {"target_not_found": 1}

        assert _stream_errors(chan, b"\xff\xff") == [invalid]
        assert refusals.moved() == {"invalid_argument": 1}
        assert _stream_errors(chan, _stream_request(bad_value, 1),
                              _stream_request(envelope(topic="nobody"), 2),
                              _stream_request(envelope(), 3)) == [0, invalid, not_found]
        assert refusals.moved() == {"invalid_argument": 1, "target_not_found": 1}

        # What reaches the dispatcher is counted by the server's observers instead.
        raw_call(chan, _call(envelope()))
        assert _refused(chan, _call(envelope(version="x.y"))) == (
            grpc.StatusCode.INVALID_ARGUMENT)
        assert _refused(chan, _call(envelope(method="made_up"))) == (
            grpc.StatusCode.UNIMPLEMENTED)
        assert refusals.moved() == {}
    finally:
        chan.close()
        server.stop()
        server.wait()
        transport.cleanup()
    got = samples(observed.render())

    def requests(outcome):
        return sum(value for (name, labels), value in got.items()
                   if name == "bridge_requests_total" and ("outcome", outcome) in labels)

    assert (requests("ok"), requests("malformed"), requests("no_such_method")) == (2, 1, 1)
    served = stats.refusal_counts()
    for reason in ("invalid_argument", "target_not_found"):
        key = ("bridge_refusals_total", (("reason", reason), ("wire", "grpc")))
        assert got[key] == served[("grpc", reason)]
    assert not any("nobody" in str(labels) for _, labels in got)


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_grpc_calls_over_the_limit_and_to_stopping_servers_are_counted_once(flavour):
    gate = Gate()
    transport, server, _ = _grpc_server(flavour, [*default_endpoints(), gate],
                                        max_concurrent_calls=1)
    chan = channel(server.addresses[0])
    refusals = Refusals("grpc")
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    unavailable = grpc.StatusCode.UNAVAILABLE
    try:
        held = chan.unary_unary("/bridge.v1.Bridge/Call").future(
            _call(envelope(method="hold")), timeout=20)
        assert gate.entered.wait(10)
        assert _refused(chan, _call(envelope())) == exhausted
        assert refusals.moved() == {"resource_exhausted": 1}
        assert _stream_errors(chan, _stream_request(envelope())) == [exhausted.value[0]]
        assert refusals.moved() == {"resource_exhausted": 1}
        gate.release.set()
        assert from_value(pb.CallResponse.FromString(held.result()).result) == "released"

        server.stop()  # the port stays open until wait(): new requests are refused
        assert _refused(chan, _call(envelope())) == unavailable
        assert refusals.moved() == {"unavailable": 1}
        assert _refused(chan, _cast(envelope()), "Cast") == unavailable
        assert refusals.moved() == {"unavailable": 1}
        assert _stream_errors(chan, _stream_request(envelope())) == [unavailable.value[0]]
        assert refusals.moved() == {"unavailable": 1}
    finally:
        gate.release.set()
        chan.close()
        server.stop()
        server.wait()
        transport.cleanup()



def _wait_moved(refusals: Refusals, expected: dict[str, int]) -> dict[str, int]:
    """What ``refusals`` moved by, once it reaches ``expected`` (at most 10 s)."""
    moved: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for reason, count in refusals.moved().items():
            moved[reason] = moved.get(reason, 0) + count
        if moved == expected:
            break
        time.sleep(0.02)
    return moved


@pytest.mark.broker
@pytest.mark.usefixtures("broker_available")
def test_amqp_bad_messages_are_counted_once_as_refusals(monkeypatch):
    import kombu
    from amqp_support import BROKER_URL, delete_queues, unique


    exchange, topic, reply_q = unique("bx"), unique("obs"), unique("reply")
    transport = bridge.get_transport(None, BROKER_URL)
    server = bridge.get_rpc_server(
        transport, bridge.Target(exchange=exchange, topic=topic, server="s"),
        default_endpoints())
    observed = metrics.ServerMetrics(server)
    server.add_observer(observed)
    server.start()
    refusals = Refusals("amqp")
    rpc = bridge.get_rpc_client(transport, bridge.Target(exchange=exchange, topic=topic),
                                timeout=10)
    try:
        with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//",
                              connect_timeout=5) as conn:
            raw = conn.channel()
            raw.queue_declare(reply_q, auto_delete=False)

            def publish(body: str) -> None:
                raw.basic_publish(raw.prepare_message(body.encode(),
                                                      content_type="application/json"),
                                  exchange=exchange, routing_key=topic)

            publish("not json {")
            publish(json.dumps({"oslo.version": "3.0", "oslo.message": json.dumps(
                {"method": "echo", "args": {}, "_msg_id": "m0", "_reply_q": reply_q})}))
            assert _wait_moved(refusals, {"invalid_argument": 2}) == {"invalid_argument": 2}

            from bridge.transport.amqp import listener as amqp_listener

            real_parse = amqp_listener.parse_request
            broken = {"left": 1}

            def parse_once_broken(msg, *args):
                if broken["left"]:
                    broken["left"] -= 1
                    raise RuntimeError("listener bug")
                return real_parse(msg, *args)

            monkeypatch.setattr(amqp_listener, "parse_request", parse_once_broken)
            rpc.cast({}, "ping")
            assert _wait_moved(refusals, {"internal": 1}) == {"internal": 1}
            assert rpc.call({}, "ping") == "pong"
            assert refusals.moved() == {}
            # A readable envelope with wrong fields reaches the dispatcher, which answers it
            # (MalformedMessage): a request with the outcome "malformed", not a refusal.
            publish(json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(
                {"method": "echo", "args": [1], "_msg_id": "m1", "_reply_q": reply_q})}))
            wait_for(lambda: "malformed" in observed.render().decode(), timeout=10)
            assert refusals.moved() == {}
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
        delete_queues([topic, f"{topic}.s", reply_q], [exchange])
    got = samples(observed.render())
    outcomes = {dict(labels)["outcome"]: value for (name, labels), value in got.items()
                if name == "bridge_requests_total"}
    assert outcomes == {"ok": 1, "malformed": 1}
