"""Metrics (the server's observer seam, prometheus) and log lines that carry the request id."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import bridge
from bridge import metrics
from bridge.logs import RequestIdObserver, configure_logging
from endpoints import default_endpoints

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
    before = metrics.reconnect_counts().get("amqp", 0)
    metrics.record_reconnect("amqp")
    metrics.record_reconnect("amqp")
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
    from bridge.logs import request_id_of

    assert request_id_of(ctxt) == expected
