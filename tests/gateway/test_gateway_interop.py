"""The gateway with real peers: gRPC clients reach a real oslo.messaging server on RabbitMQ.

The basic forwarding tests run on both brokers (RabbitMQ 4.3 with kolla-style options on
every peer: oslo.messaging with its defaults cannot use 4.3, which refuses its queues).
"""

from __future__ import annotations

import queue
import threading
import time

import brokers
import pytest
from amqp_support import (
    BROKER_URL,
    FAST_RECONNECT,
    Peer,
    broker_url,
    delete_queues,
    peer_options,
    rabbitmqctl,
    unique,
)
from node_support import run_node

import bridge
from bridge.gateway import Forwarder, Route, gateway_server
from endpoints import default_endpoints
from tests.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker_available")]


class Front:
    """A bridge process: local endpoints on gRPC, and a gateway to ``upstream_url``."""

    def __init__(self, upstream_url: str, routes: list[Route], max_in_flight: int = 64):
        self.transport = bridge.get_transport(None, "grpc://127.0.0.1:0",
                                              allowed_remote_exmods=[])
        self.local = bridge.get_rpc_server(self.transport,
                                           bridge.Target(topic="local", server="front"),
                                           default_endpoints())
        self.local.start()
        self.address = self.local.addresses[0]
        self.forwarder = Forwarder(routes, max_in_flight=max_in_flight)
        self.gateway = gateway_server([], bridge.Target(topic="gateway", server="front"),
                                     self.forwarder)
        self.gateway.start()
        self.gateway.serve_unrouted(self.transport)

    def client(self, exchange: str, topic: str, **kwargs):
        return bridge.get_rpc_client(self.transport, bridge.Target(
            exchange=exchange, topic=topic, version="1.5"), **kwargs)

    def close(self):
        self.gateway.stop()
        self.gateway.wait()
        self.forwarder.close()
        self.local.stop()
        self.local.wait()
        self.transport.cleanup()


@pytest.fixture
def gw_broker(request):
    """The broker the legacy server and the gateway use: 3.10 unless a test parametrizes
    it (``indirect``) with "rabbitmq-4.3"."""
    name = getattr(request, "param", "rabbitmq-3.10")
    if name == "rabbitmq-4.3":
        request.getfixturevalue("broker43_available")
    return brokers.BROKERS[name]


BOTH_BROKERS = pytest.mark.parametrize("gw_broker", [
    "rabbitmq-3.10", pytest.param("rabbitmq-4.3", marks=pytest.mark.broker43)], indirect=True)


@pytest.fixture
def legacy(gw_broker):
    """A real oslo.messaging RPC server serving a topic of its own."""
    events: queue.Queue = queue.Queue()
    oslo = Peer("oslo", broker_url(gw_broker, peer_options(gw_broker, "oslo")))
    exchange, topic = unique("gw_exchange"), unique("compute")
    oslo.server(exchange, topic, "compute-1", events)
    yield {"exchange": exchange, "topic": topic, "events": events, "peer": oslo}
    oslo.close()
    if gw_broker.name == "rabbitmq-4.3":  # durable queues outlive their servers
        delete_queues([topic, f"{topic}.compute-1", f"{topic}_fanout"],
                      [exchange, f"{topic}_fanout"], broker=gw_broker)


@pytest.fixture
def front(legacy, gw_broker):
    url = broker_url(gw_broker, peer_options(gw_broker, "bridge"))
    front = Front(url, [Route(topic=legacy["topic"], url=url)])
    yield front
    # The legacy server first: it answers calls whose callers gave up while the
    # gateway's reply queue still exists (oslo.messaging retries a missing one for 60 s).
    legacy["peer"].close()
    front.close()


@BOTH_BROKERS
def test_python_grpc_client_through_the_gateway(legacy, front):
    client = front.client(legacy["exchange"], legacy["topic"], timeout=10)
    value = {"n": 2**62, "x": 0.5, "items": ["a", {"deep": None}], "text": "ünï"}
    assert client.call({"request_id": "req-1"}, "echo", value=value) == value
    assert client.call({"request_id": "req-1", "user": "u"}, "context") == {
        "request_id": "req-1", "user": "u", "client_timeout": None}
    assert client.prepare(namespace="ns", version="2.1").call({}, "which") == "ns-2.3"
    assert client.prepare(namespace="ns", version="1.0").call({}, "which") == "ns-1.1"
    assert client.prepare(server="compute-1").call({}, "whoami") == "compute-1"
    with pytest.raises(ValueError, match="bad value"):
        client.call({}, "fail")
    with pytest.raises(KeyError):
        client.call({}, "expected")
    # As over AMQP: dispatcher errors are RemoteError unless their module is allowed.
    with pytest.raises(bridge.RemoteError) as info:
        client.call({}, "no_such_method")
    assert info.value.exc_type == "NoSuchMethod"
    with pytest.raises(bridge.RemoteError) as info:
        client.prepare(version="9.0").call({}, "echo", value=1)
    assert info.value.exc_type == "UnsupportedVersion"
    with pytest.raises(bridge.MessagingTimeout):
        client.prepare(timeout=1).call({}, "sleep", seconds=3)


@BOTH_BROKERS
def test_casts_and_fanout_are_forwarded(legacy, front):
    client = front.client(legacy["exchange"], legacy["topic"], timeout=10)
    client.cast({}, "record", token="cast-1")
    client.prepare(fanout=True).cast({}, "record", token="fanout-1")
    got = {legacy["events"].get(timeout=10) for _ in range(2)}
    assert got == {("compute-1", "cast-1"), ("compute-1", "fanout-1")}


def test_long_call_kept_alive_by_call_monitor(legacy):
    route = Route(topic=legacy["topic"], url=BROKER_URL, call_monitor_timeout=2)
    front = Front(BROKER_URL, [route])
    try:
        client = front.client(legacy["exchange"], legacy["topic"], timeout=30)
        assert client.call({}, "sleep", seconds=3) == 3
    finally:
        front.close()


def test_concurrent_calls_share_one_connection_and_the_limit_holds(legacy):
    front = Front(BROKER_URL, [Route(topic=legacy["topic"], url=BROKER_URL)], max_in_flight=4)
    try:
        client = front.client(legacy["exchange"], legacy["topic"], timeout=20)
        outcomes: list = []
        lock = threading.Lock()

        def one(i: int) -> None:
            try:
                result = client.call({}, "sleep", seconds=0.5)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertions
                result = exc
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        served = [o for o in outcomes if o == 0.5]
        refused = [o for o in outcomes if isinstance(o, bridge.MessageDeliveryFailure)]
        assert len(served) + len(refused) == 12
        assert 1 <= len(served) and refused, outcomes
        assert all("RESOURCE_EXHAUSTED" in str(o) for o in refused)
        upstream = front.forwarder.transport_for(front.forwarder.routes[0])
        assert len(upstream.driver.client.calls) == 0  # no state left behind
    finally:
        front.close()


def test_node_client_through_the_gateway(legacy, front):
    address = front.address.split("://", 1)[1]
    done = run_node("gateway.js", address, legacy["exchange"], legacy["topic"])
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == [w for check in (
        "gateway-call", "gateway-context", "gateway-typed-error", "gateway-unimplemented",
        "gateway-deadline", "gateway-not-found") for w in ("ok", check)]


def test_broker_dropping_connections_gives_clear_errors_then_service(broker_available):
    vhost = unique("bridge-gateway")
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}?{FAST_RECONNECT}"
    events: queue.Queue = queue.Queue()
    oslo = Peer("oslo", url)
    exchange, topic = "openstack", unique("compute")
    front = None
    try:
        oslo.server(exchange, topic, "compute-1", events)
        front = Front(url, [Route(topic=topic, url=url)])
        client = front.client(exchange, topic, timeout=5)
        assert client.call({}, "echo", value="before") == "before"
        outcomes: list = []
        deadline = time.monotonic() + 40
        rabbitmqctl("close_all_connections", "-p", vhost, "gateway fault test")
        recovered = 0
        for _ in range(200):  # bounded in count and in time
            if time.monotonic() > deadline or recovered >= 3:
                break
            try:
                outcomes.append(client.call({}, "echo", value="after"))
                recovered += 1
            except (bridge.MessagingTimeout, bridge.MessageDeliveryFailure,
                    bridge.MessagingException) as exc:
                outcomes.append(exc)
                recovered = 0
        assert recovered >= 3, outcomes
        for outcome in outcomes:
            assert outcome == "after" or str(outcome), outcome  # failures say what happened
    finally:
        if front is not None:
            front.close()
        oslo.close()
        rabbitmqctl("delete_vhost", vhost)


class Backend:
    """A gRPC-only service."""

    target = bridge.Target(version="1.5")

    def add(self, ctxt, a, b):
        return {"sum": a + b, "user": ctxt.get("user")}

    def fail(self, ctxt):
        raise KeyError("no such key")


def test_amqp_caller_reaches_a_grpc_only_backend(broker_available):
    grpc_transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    backend = bridge.get_rpc_server(grpc_transport, bridge.Target(topic="backend",
                                                                  server="b1"), [Backend()])
    backend.start()
    amqp_transport = bridge.get_transport(None, BROKER_URL)
    exchange, topic = unique("gw_exchange"), unique("backend")
    forwarder = Forwarder([Route(topic=topic, url=backend.addresses[0],
                                 upstream_topic="backend")])
    # The gateway listens on AMQP under the caller's topic and forwards to the backend's.
    gateway = gateway_server(amqp_transport, bridge.Target(exchange=exchange, topic=topic,
                                                          server="gw"), forwarder)
    gateway.start()
    oslo = Peer("oslo")
    try:
        client = oslo.client(exchange, topic, timeout=10).prepare(version="1.2")
        assert client.call({"user": "oslo"}, "add", a=2, b=3) == {"sum": 5, "user": "oslo"}
        with pytest.raises(KeyError):
            client.call({}, "fail")
        import oslo_messaging

        with pytest.raises(oslo_messaging.RemoteError) as info:
            client.call({}, "no_such_method")
        assert info.value.exc_type == "NoSuchMethod"
    finally:
        oslo.close()
        gateway.stop()
        gateway.wait()
        forwarder.close()
        amqp_transport.cleanup()
        backend.stop()
        backend.wait()
        grpc_transport.cleanup()


def test_bridge_serve_routes_both_ways(legacy, tmp_path):
    """`bridge serve` with a [[routes]] table to AMQP and --route to a gRPC backend."""
    import json
    import signal

    from serving import ServeProcess, cli, scrape

    backend_transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    backend = bridge.get_rpc_server(backend_transport,
                                    bridge.Target(topic="backend", server="b1"), [Backend()])
    backend.start()
    images = unique("images")
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[routes]]\ntopic = "{legacy["topic"]}"\nurl = "{BROKER_URL}"\n'
                      f"call_monitor_timeout = 10\n\n"
                      f'[[routes]]\ntopic = "{images}"\nurl = "{backend.addresses[0]}"\n'
                      f'upstream_topic = "backend"\n')
    proc = ServeProcess(["--config", str(config), "--grpc-url", "grpc://127.0.0.1:0",
                         "--amqp-url", BROKER_URL, "--server", "gw1", "--metrics-port", "0"])
    try:
        proc.wait_ready()
        front = proc.address("grpc")
        done = cli("call", front, legacy["topic"], "echo", "--exchange", legacy["exchange"],
                   "--version", "1.2", 'value={"a": [1, 2.5]}')
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"a": [1, 2.5]}
        failed = cli("call", front, legacy["topic"], "fail", "--exchange", legacy["exchange"])
        assert failed.returncode == 1 and "ValueError: bad value" in failed.stderr
        # An oslo.messaging caller on AMQP reaches the gRPC-only backend.
        oslo_client = legacy["peer"].client("openstack", images, timeout=10)
        assert oslo_client.prepare(version="1.0").call({"user": "o"}, "add", a=1, b=2) == {
            "sum": 3, "user": "o"}
        # Forwarded requests are counted by the route that took them, both ways.
        metrics = scrape(proc.line_starting("bridge: metrics on "))

        def forwarded(wire, route, method, outcome):
            return metrics.get(("bridge_forwarded_total", (
                ("method", method), ("outcome", outcome), ("route", route), ("wire", wire))))

        assert forwarded("grpc", legacy["topic"], "echo", "ok") == 1
        assert forwarded("grpc", legacy["topic"], "fail", "error") == 1
        assert forwarded("amqp", images, "add", "ok") == 1
        assert metrics[("bridge_forwarded_in_flight", ())] == 0
    finally:
        proc.signal(signal.SIGTERM)
        code = proc.wait()
        proc.close()
        backend.stop()
        backend.wait()
        backend_transport.cleanup()
    assert code == 0


def test_a_caller_that_cancels_leaves_nothing_behind(legacy, front):
    from grpc_helpers import channel, envelope

    from bridge._proto.bridge.v1 import bridge_pb2 as pb

    request = pb.CallRequest(envelope=envelope(
        topic=legacy["topic"], exchange=legacy["exchange"], method="slow", version="1.5",
        seconds=5)).SerializeToString()
    chan = channel(front.address)
    try:
        call = chan.unary_unary("/bridge.v1.Bridge/Call").future(request, timeout=30)
        assert legacy["events"].get(timeout=10) == ("compute-1", "started")
        upstream = front.forwarder.transport_for(front.forwarder.routes[0]).driver
        assert len(upstream.client.calls) == 1 and front.gateway.in_flight == 1
        call.cancel()
        # Bounded (1.5 s, well before the 5 s call ends).
        wait_for(lambda: not len(upstream.client.calls) and front.gateway.in_flight == 0, 1.5)
        # Long before the call's 30 s deadline, no pending reply, timer or slot is left.
        assert len(upstream.client.calls) == 0 and front.gateway.in_flight == 0
        assert front.forwarder._slots._value == front.forwarder.max_in_flight
    finally:
        chan.close()
