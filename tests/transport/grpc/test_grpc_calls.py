"""The gRPC wire through the Python client: calls, casts, routing, remote errors."""

from __future__ import annotations

import pytest

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value
from tests.grpc_helpers import AppError, Named, channel, envelope, make_endpoints, raw_call
from tests.waiting import wait_for


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
    ("builtin", None), ("app_error", None), ("app_error", [AppError.__module__]),
    ("expected", None),
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
