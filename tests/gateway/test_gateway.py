"""The gateway forwards by routes between two transports (two memory brokers here)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import bridge
from bridge.exceptions import serialize_failure
from bridge.gateway import Forwarder, Route, gateway_server, routes_from_config
from tests.waiting import wait_for


class Legacy:
    target = bridge.Target(namespace="compute", version="2.1")

    def __init__(self):
        self.casts: list = []
        self.cast_seen = threading.Event()
        self.contexts: list = []

    def boot(self, ctxt, name, flavor):
        self.contexts.append(ctxt)
        return {"name": name, "flavor": flavor, "big": 2**70}

    def fail(self, ctxt):
        from tests.remote_errors import AppError

        raise AppError(404, detail="no such instance", instance="i-1")

    def slow(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds

    def note(self, ctxt, value):
        self.casts.append(value)
        self.cast_seen.set()


@pytest.fixture
def sides():
    legacy_url = f"memory://legacy-{uuid.uuid4().hex}"
    front_url = f"memory://front-{uuid.uuid4().hex}"
    legacy_transport = bridge.get_transport(None, legacy_url)
    front_transport = bridge.get_transport(None, front_url)
    endpoint = Legacy()
    legacy = bridge.get_rpc_server(legacy_transport,
                                   bridge.Target(topic="compute", server="host1"), [endpoint])
    legacy.start()
    started = []

    def gateway(routes=None, max_in_flight=16):
        forwarder = Forwarder(routes or [Route(topic="compute", url=legacy_url)],
                              max_in_flight=max_in_flight)
        server = gateway_server(front_transport, bridge.Target(topic="compute", server="gw"),
                               forwarder)
        server.start()
        started.append((server, forwarder))
        return server

    yield {"endpoint": endpoint, "front": front_transport, "legacy": legacy_transport,
           "gateway": gateway}
    for server, forwarder in started:
        server.stop()
        server.wait()
        forwarder.close()
    legacy.stop()
    legacy.wait()
    legacy_transport.cleanup()
    front_transport.cleanup()


def client(transport, **kwargs):
    return bridge.get_rpc_client(transport, bridge.Target(topic="compute", namespace="compute",
                                                          version="2.0"), timeout=5, **kwargs)


def test_call_is_forwarded_with_everything_intact(sides):
    sides["gateway"]()
    ctxt = {"request_id": "req-1", "user": "u1", "roles": ["admin"]}
    result = client(sides["front"]).call(ctxt, "boot", name="vm1", flavor={"ram": 512})
    assert result == {"name": "vm1", "flavor": {"ram": 512}, "big": 2**70}
    direct = client(sides["legacy"]).call(ctxt, "boot", name="vm1", flavor={"ram": 512})
    assert direct == result
    forwarded_ctxt, direct_ctxt = sides["endpoint"].contexts
    assert forwarded_ctxt == direct_ctxt == dict(ctxt, client_timeout=None)


def test_failure_is_relayed_exactly(sides):
    sides["gateway"]()
    with pytest.raises(bridge.RemoteError) as forwarded:
        client(sides["front"]).call({}, "fail")
    with pytest.raises(bridge.RemoteError) as direct:
        client(sides["legacy"]).call({}, "fail")
    via_gateway, straight = serialize_failure(forwarded.value), serialize_failure(direct.value)
    for key in ("class", "module", "message", "args", "kwargs"):
        assert via_gateway[key] == straight[key], key
    assert via_gateway["module"] == "tests.remote_errors"
    assert via_gateway["kwargs"] == {"instance": "i-1"}


def test_dispatch_errors_come_from_the_upstream(sides):
    sides["gateway"]()
    with pytest.raises(bridge.RemoteError, match="NoSuchMethod"):
        client(sides["front"]).call({}, "no_such_method")
    with pytest.raises(bridge.RemoteError, match="UnsupportedVersion"):
        client(sides["front"]).prepare(version="3.0").call({}, "boot", name="x", flavor=1)


def test_the_callers_timeout_bounds_the_upstream_call(sides):
    sides["gateway"]()
    with pytest.raises(bridge.MessagingTimeout):
        client(sides["front"], ).prepare(timeout=0.5).call({}, "slow", seconds=1.5)


def test_casts_and_server_direct_calls_are_forwarded(sides):
    sides["gateway"]()
    client(sides["front"]).cast({}, "note", value="hello")
    assert sides["endpoint"].cast_seen.wait(5)
    assert sides["endpoint"].casts == ["hello"]
    # Addressed to the gateway itself: served by any upstream server of the topic.
    assert client(sides["front"]).prepare(server="gw").call({}, "slow", seconds=0) == 0


def test_unrouted_namespace_is_no_route(sides):
    sides["gateway"]([Route(topic="compute", url=str(sides["legacy"].url.original),
                            namespace="other")])
    with pytest.raises(bridge.RemoteError) as info:
        client(sides["front"]).call({}, "boot", name="x", flavor=1)
    assert info.value.exc_type == "NoRoute"


def test_concurrency_limit_refuses_the_excess(sides):
    server = sides["gateway"](max_in_flight=1)
    slow = threading.Thread(target=client(sides["front"]).call, args=({}, "slow"),
                            kwargs={"seconds": 1.0})
    slow.start()
    wait_for(lambda: server.in_flight == 1, 5)  # the first call occupies the only slot
    with pytest.raises(bridge.RemoteError) as info:
        client(sides["front"]).call({}, "slow", seconds=0)
    assert info.value.exc_type == "TooManyRequests"
    slow.join(5)
    assert client(sides["front"]).call({}, "slow", seconds=0) == 0  # the slot came back


def test_stop_and_wait_answer_forwarded_calls_in_flight(sides):
    server = sides["gateway"]()
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "result", client(sides["front"]).call({}, "slow", seconds=0.8)))
    thread.start()
    wait_for(lambda: server.in_flight, 2)
    server.stop()
    server.wait()
    thread.join(5)
    assert box == {"result": 0.8}


def test_routes_from_config():
    routes = routes_from_config([{"topic": "compute", "url": "rabbit://h/",
                                  "namespace": None}, {"topic": "*", "url": "grpc://h:1"}])
    assert routes[0].matches(bridge.Target(topic="compute"), None)
    assert not routes[0].matches(bridge.Target(topic="compute"), "ns")
    assert routes[1].matches(bridge.Target(topic="anything", exchange="x"), "ns")
    with pytest.raises(ValueError, match="unknown route keys"):
        routes_from_config([{"topic": "t", "url": "u", "colour": "red"}])
    with pytest.raises(ValueError, match="needs a topic"):
        routes_from_config([{"url": "u"}])


def test_a_bad_route_url_fails_at_start(transport):
    server = gateway_server(transport, bridge.Target(topic="t", server="gw"),
                           Forwarder([Route(topic="t", url="nosuch://x")]))
    with pytest.raises(bridge.DriverLoadFailure):
        server.start()


def test_route_settings_from_words_and_tables():
    from bridge.app.settings import SettingsError, resolve

    settings = resolve({"routes": ["compute=rabbit://h:5672/", "images=grpc://b:1"]}, {})
    assert settings.routes == [{"topic": "compute", "url": "rabbit://h:5672/"},
                               {"topic": "images", "url": "grpc://b:1"}]
    assert resolve({}, {"BRIDGE_ROUTES": "a=grpc://x:1 b=grpc://y:2"}).routes[1]["topic"] == "b"
    with pytest.raises(SettingsError, match="TOPIC=URL"):
        resolve({"routes": ["compute"]}, {})
    with pytest.raises(SettingsError, match="unknown route keys"):
        resolve({"routes": [{"topic": "t", "url": "grpc://x:1", "colour": "red"}]}, {})


def test_forwarded_requests_are_counted_by_route_method_and_outcome(sides):
    from bridge.app import metrics

    gateway = sides["gateway"]()
    observed = metrics.ServerMetrics(gateway)
    observed.observe_gateway(gateway)
    front = client(sides["front"])
    front.call({}, "boot", name="vm1", flavor=1)
    with pytest.raises(bridge.RemoteError):
        front.call({}, "fail")
    with pytest.raises(bridge.RemoteError, match="NoSuchMethod"):
        front.call({}, "made_up_name")
    with pytest.raises(bridge.MessagingTimeout):
        front.prepare(timeout=0.3).call({}, "slow", seconds=1.0)

    def forwarded(method, outcome):
        return observed.registry.get_sample_value("bridge_forwarded_total", {
            "wire": "memory", "route": "compute", "method": method, "outcome": outcome})

    assert forwarded("boot", "ok") == 1
    assert forwarded("fail", "error") == 1
    # A name no upstream serves, or a call that never came back, is not a label.
    assert forwarded("made_up_name", "no_such_method") is None
    assert forwarded("(unknown)", "no_such_method") == 1
    # The gateway answers the timeout on its own clock.
    wait_for(lambda: forwarded("(unknown)", "timeout") is not None, 5)
    assert forwarded("(unknown)", "timeout") == 1
    assert observed.registry.get_sample_value("bridge_forwarded_duration_seconds_count", {
        "wire": "memory", "route": "compute", "method": "boot"}) == 1
    assert observed.registry.get_sample_value("bridge_forwarded_in_flight") == 0
    # Not served locally: nothing in the local series.
    assert "bridge_requests_total{" not in observed.render().decode()
