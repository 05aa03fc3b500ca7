"""The gRPC wire on real sockets: routing, the status table, the Python client, lifecycle."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value
from endpoints import default_endpoints
from tests.grpc_helpers import channel, envelope, failure_of, raw_call
from tests.waiting import wait_for


class AppError(Exception):
    """An application exception, rebuilt on the caller's side only when its module is allowed."""


class Failing:
    target = bridge.Target(namespace="failing")

    def app_error(self, ctxt, text="app"):
        raise AppError(text)

    @bridge.expected_exceptions(KeyError)
    def expected(self, ctxt, key="k"):
        raise KeyError(key)

    def builtin(self, ctxt):
        raise ValueError("bad value")

    def not_primitive(self, ctxt):
        return object()

    def huge(self, ctxt, size=0):
        return "x" * size


class Gate:
    """``wait`` returns only once the test opens the gate (or after 10 s)."""

    target = bridge.Target(namespace="gate")

    def __init__(self):
        self.event = threading.Event()

    def wait(self, ctxt):
        return "opened" if self.event.wait(10) else "gave up"


def make_endpoints():
    """Fresh endpoints (the counter keeps state) for each server."""
    return [*default_endpoints(), Failing()]


@pytest.fixture(params=["sync", "aio"])
def grpc_server(request):
    """Start servers on grpc://127.0.0.1:0: ``start(topic=..., server=..., url=...)``.

    Every test using it runs on both server flavours (grpc.server and grpc.aio).
    """
    started = []

    def start(topic="topic", server="server1", url="grpc://127.0.0.1:0", endpoints=None,
              conf=None):
        conf = dict(conf or {})
        conf["grpc"] = {**conf.get("grpc", {}), "server_flavour": request.param}
        transport = bridge.get_transport(conf, url)
        srv = bridge.get_rpc_server(transport, bridge.Target(topic=topic, server=server),
                                    endpoints or make_endpoints())
        srv.start()
        started.append((srv, transport))
        return srv

    yield start
    for srv, transport in started:
        srv.stop()
        srv.wait()
        transport.cleanup()


@pytest.fixture
def client_for():
    transports = []

    def make(srv, allowed=None, conf=None, **kwargs):
        transport = bridge.get_transport(conf, srv.addresses[0],
                                         allowed_remote_exmods=allowed)
        transports.append(transport)
        kwargs.setdefault("timeout", 10)
        return bridge.get_rpc_client(transport, bridge.Target(topic="topic"), **kwargs)

    yield make
    for transport in transports:
        transport.cleanup()


def test_port_zero_reports_the_bound_port(grpc_server):
    srv = grpc_server()
    (address,) = srv.addresses
    assert address.startswith("grpc://127.0.0.1:")
    assert int(address.rsplit(":", 1)[1]) > 0


def test_call_cast_and_values(grpc_server, client_for):
    srv = grpc_server()
    client = client_for(srv)
    assert client.call({}, "ping") == "pong"
    value = {"int": 1, "float": 1.0, "big": 2**64, "min": -(2**63), "max": 2**63 - 1,
             "nested": [[{"é": "☃"}], None, True], "empty": {}}
    result = client.call({}, "echo", value=value)
    assert result == value
    assert type(result["int"]) is int and type(result["float"]) is float
    assert client.prepare(namespace="counter").call({}, "increment", by=5) == 5
    client.prepare(namespace="counter").cast({}, "increment", by=2)
    wait_for(lambda: client.prepare(namespace="counter").call({}, "get") == 7, 10)
    assert client.prepare(namespace="counter").call({}, "get") == 7


def test_one_server_per_address_routes_by_target(grpc_server, client_for):
    first = grpc_server(topic="topic", server="a")
    port = first.addresses[0].rsplit(":", 1)[1]
    second = grpc_server(topic="other", server="b", url=f"grpc://127.0.0.1:{port}",
                         endpoints=[Named("b")])
    third = grpc_server(topic="topic", server="c", url=f"grpc://127.0.0.1:{port}",
                        endpoints=[Named("c")])
    assert first.addresses == second.addresses == third.addresses
    client = client_for(first)
    assert client.prepare(topic="other").call({}, "name") == "b"
    assert client.prepare(server="c").call({}, "name") == "c"
    assert client.prepare(server="a").call({}, "ping") == "pong"


class Named:
    def __init__(self, name):
        self.name_value = name
        self.casts = []
        self.seen = threading.Event()

    def name(self, ctxt):
        return self.name_value

    def note(self, ctxt, value=None):
        self.casts.append(value)
        self.seen.set()


def test_fanout_cast_reaches_every_local_listener(grpc_server, client_for):
    one, two = Named("one"), Named("two")
    first = grpc_server(topic="fan", server="one", endpoints=[one])
    port = first.addresses[0].rsplit(":", 1)[1]
    grpc_server(topic="fan", server="two", url=f"grpc://127.0.0.1:{port}", endpoints=[two])
    client = client_for(first)
    client.prepare(topic="fan", fanout=True).cast({}, "note", value=[1])
    assert one.seen.wait(10) and two.seen.wait(10)
    assert one.casts == [[1]] and two.casts == [[1]]


def test_context_carries_client_timeout(grpc_server, client_for):
    srv = grpc_server()
    ctxt = client_for(srv, timeout=7).call({"user": "u1"}, "echo_context")
    assert ctxt["user"] == "u1"
    assert 0 < ctxt["client_timeout"] <= 7.1
    chan = channel(srv.addresses[0])
    reply = raw_call(chan, pb.CallRequest(envelope=envelope(method="echo_context"))
                     .SerializeToString(), timeout=None)
    assert from_value(pb.CallResponse.FromString(reply).result) == {"client_timeout": None}
    chan.close()


def _reraised(client, method, **kwargs):
    with pytest.raises(Exception) as info:
        client.prepare(namespace="failing").call({}, method, **kwargs)
    return info.value


@pytest.mark.parametrize("method,allowed", [
    ("builtin", None), ("app_error", None), ("app_error", [__name__]), ("expected", None),
])
def test_python_client_reraises_like_memory(grpc_server, client_for, method, allowed):
    srv = grpc_server(conf={"grpc": {"include_traceback": True}})
    over_grpc = _reraised(client_for(srv, allowed=allowed), method)
    memory = bridge.get_transport(None, "memory://grpc-compare",
                                  allowed_remote_exmods=allowed)
    mem_srv = bridge.get_rpc_server(memory, bridge.Target(topic="topic", server="s"),
                                    make_endpoints())
    mem_srv.start()
    try:
        over_memory = _reraised(bridge.get_rpc_client(memory, bridge.Target(topic="topic"),
                                                      timeout=10), method)
    finally:
        mem_srv.stop()
        mem_srv.wait()
        memory.cleanup()
    assert type(over_grpc).__name__ == type(over_memory).__name__
    assert type(over_grpc).__mro__[1:] == type(over_memory).__mro__[1:]
    assert len(over_grpc.args) == len(over_memory.args)
    for got, want in zip(over_grpc.args, over_memory.args, strict=True):
        # The same text and the same traceback frames (addresses aside).
        assert str(got).splitlines()[0] == str(want).splitlines()[0]
    assert "Traceback" in str(over_grpc) and "Traceback" in str(over_memory)
    expected_type = {"builtin": ValueError, "expected": KeyError}.get(
        method, AppError if allowed else bridge.RemoteError)
    assert isinstance(over_grpc, expected_type)


def test_dispatch_errors_reach_the_python_client(grpc_server, client_for):
    srv = grpc_server()
    client = client_for(srv, allowed=["oslo_messaging.rpc.dispatcher"])
    with pytest.raises(bridge.NoSuchMethod):
        client.call({}, "no_such_method")
    with pytest.raises(bridge.UnsupportedVersion):
        client.prepare(version="9.0").call({}, "ping")
    with pytest.raises(bridge.RemoteError):
        client_for(srv).call({}, "no_such_method")


def test_deadline_gives_messaging_timeout(grpc_server, client_for):
    srv = grpc_server()
    with pytest.raises(bridge.MessagingTimeout):
        client_for(srv, timeout=0.3).call({}, "sleep", seconds=1)


def test_unknown_target_and_unreachable_server(grpc_server, client_for):
    srv = grpc_server()
    client = client_for(srv)
    with pytest.raises(bridge.MessageDeliveryFailure, match="NOT_FOUND"):
        client.prepare(topic="nobody").call({}, "ping")
    with pytest.raises(bridge.MessageUndeliverable):
        client.prepare(topic="nobody", transport_options=bridge.TransportOptions(True)).cast(
            {}, "ping")
    dead = bridge.get_transport(None, "grpc://127.0.0.1:1")
    try:
        with pytest.raises(bridge.MessageDeliveryFailure, match="unavailable"):
            bridge.get_rpc_client(dead, bridge.Target(topic="t"), timeout=5,
                                  retry=1).call({}, "ping")
    finally:
        dead.cleanup()


# -- the status table (raw gRPC, structured detail) -------------------------------------------

def _status(chan, env, method="/bridge.v1.Bridge/Call", timeout=10, request=None):
    data = request if request is not None else pb.CallRequest(envelope=env).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        raw_call(chan, data, timeout=timeout, method=method)
    return info.value.code(), failure_of(info.value), info.value.details()


F = pb.Failure


@pytest.mark.parametrize("env,code,reason,class_name", [
    (envelope(method="no_such"), "UNIMPLEMENTED", F.REASON_NO_SUCH_METHOD, "NoSuchMethod"),
    (envelope(version="7.0"), "UNIMPLEMENTED", F.REASON_UNSUPPORTED_VERSION,
     "UnsupportedVersion"),
    (envelope(namespace="unknown"), "UNIMPLEMENTED", F.REASON_UNSUPPORTED_VERSION,
     "UnsupportedVersion"),
    (envelope(version="x.y"), "INVALID_ARGUMENT", F.REASON_INVALID_ARGUMENT, "MalformedMessage"),
    (envelope(topic=""), "INVALID_ARGUMENT", F.REASON_INVALID_ARGUMENT, ""),
    (envelope(method=""), "INVALID_ARGUMENT", F.REASON_INVALID_ARGUMENT, ""),
    (envelope(fanout=True), "INVALID_ARGUMENT", F.REASON_INVALID_ARGUMENT, ""),
    (envelope(namespace="failing", method="not_primitive"), "INVALID_ARGUMENT",
     F.REASON_INVALID_ARGUMENT, "NotPrimitiveError"),
    (envelope(topic="nobody"), "NOT_FOUND", F.REASON_TARGET_NOT_FOUND, ""),
    (envelope(server="nobody"), "NOT_FOUND", F.REASON_TARGET_NOT_FOUND, ""),
    (envelope(exchange="elsewhere"), "NOT_FOUND", F.REASON_TARGET_NOT_FOUND, ""),
    (envelope(namespace="failing", method="builtin"), "UNKNOWN", F.REASON_ENDPOINT_ERROR,
     "ValueError"),
    (envelope(namespace="failing", method="app_error"), "UNKNOWN", F.REASON_ENDPOINT_ERROR,
     "AppError"),
    (envelope(namespace="failing", method="expected"), "FAILED_PRECONDITION",
     F.REASON_EXPECTED_ERROR, "KeyError"),
])
def test_status_table(grpc_server, env, code, reason, class_name):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    got_code, failure, details = _status(chan, env)
    chan.close()
    assert got_code.name == code
    assert failure is not None and failure.reason == reason
    assert failure.class_name == class_name
    assert failure.message and failure.message in details
    assert list(failure.traceback) == []  # not configured


def test_failure_detail_fields(grpc_server):
    srv = grpc_server(conf={"grpc": {"include_traceback": True}})
    chan = channel(srv.addresses[0])
    _, failure, _ = _status(chan, envelope(namespace="failing", method="app_error", text="t1"))
    assert (failure.module, failure.class_name, failure.message) == (__name__, "AppError", "t1")
    assert [from_value(v) for v in failure.args] == ["t1"]
    assert any("raise AppError" in line for line in failure.traceback)
    chan.close()


def test_malformed_bytes_and_values(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    code, failure, _ = _status(chan, None, request=b"\xff\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == F.REASON_INVALID_ARGUMENT
    env = envelope(method="echo")
    env.args["value"].big_integer_value = "12x"
    code, failure, details = _status(chan, env)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "argument['value']" in details
    code, failure, _ = _status(chan, None, method="/bridge.v1.Bridge/Cast",
                               request=b"\x0a\x05garbage")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # The server still serves after bad input.
    reply = raw_call(chan, pb.CallRequest(envelope=envelope()).SerializeToString())
    assert from_value(pb.CallResponse.FromString(reply).result) == "pong"
    chan.close()


def test_deadline_exceeded_status(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    code, _, _ = _status(chan, envelope(method="sleep", seconds=1), timeout=0.2)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    chan.close()


def test_message_size_limit_named(grpc_server, client_for):
    srv = grpc_server(conf={"grpc": {"max_receive_message_length": 100_000}})
    chan = channel(srv.addresses[0])
    code, _, details = _status(chan, envelope(method="echo", value="x" * 200_000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100000" in details
    # The same over the Python client, and for a reply over the server's send limit.
    client = client_for(srv)
    with pytest.raises(bridge.MessageDeliveryFailure, match="100000"):
        client.call({}, "echo", value="x" * 200_000)
    code, failure, details = _status(chan, envelope(namespace="failing", method="huge",
                                                    size=5 * 1024 * 1024))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.limit_name == "max_send_message_length"
    assert "max_send_message_length" in details
    chan.close()


def _wait_in_flight(srv) -> None:
    """Wait (at most 10 s) until the server runs a call."""
    wait_for(lambda: srv.in_flight, 10, interval=0.01)
    assert srv.in_flight


def test_concurrency_limit(grpc_server):
    gate = Gate()
    srv = grpc_server(conf={"grpc": {"max_concurrent_calls": 1}},
                      endpoints=[*make_endpoints(), gate])
    chan = channel(srv.addresses[0])
    slow = chan.unary_unary("/bridge.v1.Bridge/Call").future(
        pb.CallRequest(envelope=envelope(method="wait", namespace="gate")).SerializeToString(),
        timeout=20)
    _wait_in_flight(srv)
    code, failure, details = _status(chan, envelope())
    gate.event.set()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.limit_name == "max_concurrent_calls" and failure.limit_value == 1
    assert "max_concurrent_calls" in details
    assert from_value(pb.CallResponse.FromString(slow.result()).result) == "opened"
    chan.close()


def _health(chan, service=""):
    stub = health_pb2_grpc.HealthStub(chan)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_stop_unavailable_not_serving_and_in_flight_answered(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    assert _health(chan) == health_pb2.HealthCheckResponse.SERVING
    assert _health(chan, "bridge.v1.Bridge") == health_pb2.HealthCheckResponse.SERVING
    slow = chan.unary_unary("/bridge.v1.Bridge/Call").future(
        pb.CallRequest(envelope=envelope(method="sleep", seconds=1)).SerializeToString(),
        timeout=10)
    _wait_in_flight(srv)
    srv.stop()
    code, failure, _ = _status(chan, envelope())
    assert code == grpc.StatusCode.UNAVAILABLE and failure.reason == F.REASON_UNAVAILABLE
    assert _health(chan) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _health(chan, "bridge.v1.Bridge") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert from_value(pb.CallResponse.FromString(slow.result()).result) == 1.0
    srv.wait()
    with pytest.raises(grpc.RpcError) as info:  # the last listener released the port
        _health(chan)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    chan.close()


def test_restart_after_stop(grpc_server, client_for):
    srv = grpc_server(url="grpc://127.0.0.1:0")
    client = client_for(srv)
    srv.stop()
    srv.wait()
    srv.start()
    client = client_for(srv)
    assert client.call({}, "ping") == "pong"


def test_reflection_lists_services(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    stub = reflection_pb2_grpc.ServerReflectionStub(chan)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5)
    names = {item.name for response in responses
             for item in response.list_services_response.service}
    assert {"bridge.v1.Bridge", "grpc.health.v1.Health"} <= names
    chan.close()


def test_call_stream_timeouts_share_one_thread(grpc_server):
    """Per-call timeouts on a stream cost no thread each: 100 held calls with a
    timeout add far fewer threads than 100 (the pool's workers, one timer thread)."""
    gate = Gate()
    srv = grpc_server(endpoints=[*make_endpoints(), gate])
    chan = channel(srv.addresses[0])
    stream = chan.stream_stream("/bridge.v1.Bridge/CallStream")
    before = threading.active_count()
    requests = [pb.StreamRequest(id=n, envelope=envelope(method="wait", namespace="gate"),
                                 timeout=30).SerializeToString() for n in range(1, 101)]
    responses = stream(iter(requests), timeout=30)
    wait_for(lambda: srv.in_flight >= 100, 10)
    assert srv.in_flight == 100
    during = threading.active_count()
    gate.event.set()
    replies = [pb.StreamResponse.FromString(data) for data in responses]
    assert sorted(r.id for r in replies) == list(range(1, 101))
    assert all(from_value(r.result) == "opened" for r in replies)
    # 64 pool workers at most (the default pool size), a few gRPC and timer threads.
    assert during - before < 64 + 16, (before, during)


def test_call_stream_completion_order_and_errors(grpc_server):
    gate = Gate()
    srv = grpc_server(endpoints=[*make_endpoints(), gate])
    chan = channel(srv.addresses[0])
    stream = chan.stream_stream("/bridge.v1.Bridge/CallStream")
    requests = [
        pb.StreamRequest(id=1, envelope=envelope(method="wait", namespace="gate")),
        pb.StreamRequest(id=2, envelope=envelope(method="echo", value=[1, 2.0])),
        pb.StreamRequest(id=3, envelope=envelope(method="no_such")),
        pb.StreamRequest(id=4, envelope=envelope(method="sleep", seconds=1), timeout=0.2),
    ]
    responses = stream(iter([r.SerializeToString() for r in requests]), timeout=20)
    # Call 1 cannot finish before the gate opens: the other three come first.
    first = [pb.StreamResponse.FromString(next(responses)) for _ in range(3)]
    assert sorted(r.id for r in first) == [2, 3, 4]
    gate.event.set()
    rest = [pb.StreamResponse.FromString(data) for data in responses]
    assert [r.id for r in rest] == [1]
    by_id = {reply.id: reply for reply in first + rest}
    assert from_value(by_id[1].result) == "opened"
    assert from_value(by_id[2].result) == [1, 2.0]
    assert by_id[3].error.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert by_id[3].error.failure.class_name == "NoSuchMethod"
    assert by_id[4].error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert by_id[4].error.failure.reason == F.REASON_DEADLINE_EXCEEDED
    chan.close()


@pytest.mark.parametrize("url,match", [
    ("grpc://127.0.0.1:0?no_such_option=1", "no_such_option"),
    ("grpc://127.0.0.1:0?max_receive_message_length=lots", "max_receive_message_length"),
    ("grpc://127.0.0.1:0?tls_ca_file=/x", "grpcs://"),
    ("grpcs://127.0.0.1:0?tls_client_auth=true", "tls_ca_file"),
])
def test_bad_options_are_clear_errors(url, match):
    with pytest.raises(bridge.InvalidTransportURL, match=match):
        bridge.get_transport(None, url)


def test_unknown_conf_option_is_a_clear_error():
    with pytest.raises(bridge.InvalidTransportURL, match="bogus"):
        bridge.get_transport({"grpc": {"bogus": 1}}, "grpc://127.0.0.1:0")


def test_port_in_use_is_a_listen_error(grpc_server):
    srv = grpc_server()
    transport = bridge.get_transport(None, srv.addresses[0])
    other = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), make_endpoints())
    other.start()  # same process, same address: shares the server
    assert other.addresses == srv.addresses
    other.stop()
    other.wait()
    transport.cleanup()


def _pinging_channel_states(address: str, seconds: float) -> list:
    """Connectivity states of an idle channel pinging as often as grpcio lets it (1 s)."""
    states = []
    chan = grpc.insecure_channel(address, options=[
        ("grpc.keepalive_time_ms", 100), ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)])
    chan.subscribe(states.append, try_to_connect=True)
    try:
        grpc.channel_ready_future(chan).result(timeout=10)
        time.sleep(seconds)
        return list(states)
    finally:
        chan.close()


def test_keepalive_pings_are_tolerated(grpc_server):
    srv = grpc_server()  # the defaults
    states = _pinging_channel_states(srv.addresses[0].split("://", 1)[1], 3.5)
    ready = states.index(grpc.ChannelConnectivity.READY)
    assert states[ready:] == [grpc.ChannelConnectivity.READY], states


def test_keepalive_check_fails_against_a_strict_server():
    """The check above can fail: a grpcio server with default ping policy drops the pinger."""
    from concurrent.futures import ThreadPoolExecutor

    strict = grpc.server(ThreadPoolExecutor(2))
    port = strict.add_insecure_port("127.0.0.1:0")
    strict.start()
    try:
        states = _pinging_channel_states(f"127.0.0.1:{port}", 3.5)
    finally:
        strict.stop(0)
    ready = states.index(grpc.ChannelConnectivity.READY)
    assert states[ready:] != [grpc.ChannelConnectivity.READY], states


def test_fallback_hook_serves_unrouted_targets(grpc_server, client_for):
    srv = grpc_server()
    seen = []

    def fallback(target):
        if target.topic != "elsewhere":
            return None
        seen.append(target)
        return lambda incoming: incoming.reply(result={"forwarded": incoming.message["method"]})

    srv.transports[0].serve_unrouted(fallback)
    client = client_for(srv)
    assert client.prepare(topic="elsewhere", server="x").call({}, "hello") == {
        "forwarded": "hello"}
    assert (seen[0].topic, seen[0].server) == ("elsewhere", "x")
    with pytest.raises(bridge.MessageDeliveryFailure, match="NOT_FOUND"):
        client.prepare(topic="nowhere").call({}, "hello")


# -- URLs with several hosts ------------------------------------------------------------------

def _free_port(*hosts: str) -> int:
    """A port that is free on every one of ``hosts`` right now."""
    import socket

    for _ in range(50):
        probe = socket.socket()
        probe.bind((hosts[0], 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            for host in hosts[1:]:
                other = socket.socket()
                other.bind((host, port))
                other.close()
        except OSError:
            continue
        return port
    raise AssertionError("no port free on every host")


def test_client_fails_over_to_the_next_host(grpc_server):
    srv = grpc_server()
    live = srv.addresses[0].split("://", 1)[1]
    closed = _free_port("127.0.0.1")
    transport = bridge.get_transport(None, f"grpc://127.0.0.1:{closed},{live}")
    try:
        # retry=0: the call succeeds only if the channel itself moves on to the second host.
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10,
                                       retry=0)
        assert client.call({}, "ping") == "pong"
        client.cast({}, "ping")
    finally:
        transport.cleanup()
    first_only = bridge.get_transport(None, f"grpc://127.0.0.1:{closed}")
    try:
        with pytest.raises(bridge.MessageDeliveryFailure, match="unavailable"):
            bridge.get_rpc_client(first_only, bridge.Target(topic="topic"), timeout=10,
                                  retry=0).call({}, "ping")
    finally:
        first_only.cleanup()


def test_client_moves_to_the_next_host_when_its_server_goes(grpc_server):
    first = grpc_server(url="grpc://127.0.0.1:0", server="a", endpoints=[Named("a")])
    second = grpc_server(url="grpc://127.0.0.2:0", server="b", endpoints=[Named("b")])
    hosts = [srv.addresses[0].split("://", 1)[1] for srv in (first, second)]
    transport = bridge.get_transport(None, "grpc://" + ",".join(hosts))
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10)
        assert [client.call({}, "name") for _ in range(3)] == ["a"] * 3  # pick_first
        first.stop()
        first.wait()  # its port closes
        assert [client.call({}, "name") for _ in range(3)] == ["b"] * 3
    finally:
        transport.cleanup()


@pytest.mark.parametrize("ports", ["zero", "same", "explicit"])
def test_server_listens_on_every_host(grpc_server, ports):
    if ports == "zero":
        url = "grpc://127.0.0.1:0,127.0.0.2:0"
    elif ports == "same":
        port = _free_port("127.0.0.1", "127.0.0.2")
        url = f"grpc://127.0.0.1:{port},127.0.0.2:{port}"
    else:
        url = f"grpc://127.0.0.1:{_free_port('127.0.0.1')},127.0.0.2:{_free_port('127.0.0.2')}"
    srv = grpc_server(url=url)
    (address,) = srv.addresses
    first, second = address.removeprefix("grpc://").split(",")
    assert first.startswith("127.0.0.1:") and second.startswith("127.0.0.2:")
    assert all(int(item.rsplit(":", 1)[1]) > 0 for item in (first, second))
    if ports == "zero":
        assert first.rsplit(":", 1)[1] != second.rsplit(":", 1)[1]
    else:
        assert address == url
    for host in (first, second):
        chan = grpc.insecure_channel(host)
        reply = raw_call(chan, pb.CallRequest(envelope=envelope()).SerializeToString())
        assert from_value(pb.CallResponse.FromString(reply).result) == "pong"
        assert _health(chan) == health_pb2.HealthCheckResponse.SERVING
        chan.close()
    # The reported address is a URL a client can use, and another listener shares it.
    transport = bridge.get_transport(None, address)
    other = bridge.get_rpc_server(transport, bridge.Target(topic="t2", server="s"),
                                  make_endpoints())
    other.start()
    try:
        assert other.addresses == [address]
        assert bridge.get_rpc_client(transport, bridge.Target(topic="t2"),
                                     timeout=10).call({}, "ping") == "pong"
    finally:
        other.stop()
        other.wait()
        transport.cleanup()
    srv.stop()
    srv.wait()
    for host in (first, second):  # both ports are released with the last listener
        chan = grpc.insecure_channel(host)
        with pytest.raises(grpc.RpcError) as info:
            _health(chan)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        chan.close()


def test_several_hosts_refused_where_they_make_no_sense(grpc_server):
    with pytest.raises(bridge.InvalidTransportURL, match="listed twice"):
        bridge.get_transport(None, "grpc://127.0.0.1:5000,127.0.0.1:5000")
    srv = grpc_server()
    # Part of the addresses of a running server: neither shared nor silently split.
    transport = bridge.get_transport(None, f"{srv.addresses[0]},127.0.0.2:0")
    other = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                  make_endpoints())
    try:
        with pytest.raises(bridge.ServerListenError, match="same hosts"):
            other.start()
    finally:
        transport.cleanup()
    # A second host whose port is taken: nothing is left listening on the first.
    import socket

    free = _free_port("127.0.0.2")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        transport = bridge.get_transport(
            None, f"grpc://127.0.0.2:{free},127.0.0.1:{busy.getsockname()[1]}")
        other = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                      make_endpoints())
        try:
            with pytest.raises(bridge.ServerListenError, match="cannot listen on 127.0.0.1"):
                other.start()
        finally:
            transport.cleanup()
    assert _bindable("127.0.0.2", free)


def test_a_client_whose_hosts_all_fail_to_resolve(monkeypatch):
    import socket

    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    transport = bridge.get_transport(None, "grpc://calc-1:1,calc-2:2")
    try:
        with pytest.raises(bridge.MessageDeliveryFailure, match="calc-2"):
            bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=5).call(
                {}, "ping")
    finally:
        transport.cleanup()


def _bindable(host: str, port: int) -> bool:
    import socket

    probe = socket.socket()
    try:
        probe.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_channel_target(monkeypatch):
    import socket

    from bridge.transport.grpc import channel_target

    assert channel_target([("0.0.0.0", 5)]) == "127.0.0.1:5"
    assert channel_target([("::", 5)]) == "[::1]:5"
    assert channel_target([("calc-host", 5)]) == "calc-host:5"  # gRPC's DNS resolver
    table = {
        "v4": [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 5))],
        "both": [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", 6, 0, 0)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.2", 6))],
    }

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [(f, t, p, c, (a[0], port, *a[2:])) for f, t, p, c, a in table[host]]
        if host in ("127.0.0.1", "127.0.0.2"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert channel_target([("0.0.0.0", 1), ("v4", 2), ("127.0.0.2", 3)]) == (
        "ipv4:127.0.0.1:1,10.0.0.1:2,127.0.0.2:3")
    assert channel_target([("v4", 1), ("nowhere", 2), ("v4", 1)]) == "ipv4:10.0.0.1:1"
    assert channel_target([("v4", 1), ("both", 2)]) == (
        "ipv6:[::ffff:10.0.0.1]:1,[fd00::2]:2,[::ffff:10.0.0.2]:2")
    with pytest.raises(OSError, match="nowhere"):
        channel_target([("nowhere", 1), ("nowhere", 2)])
