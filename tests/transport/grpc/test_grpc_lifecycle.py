"""A gRPC server's lifecycle: health, stop, restart, reflection, keepalive, options."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value
from tests.grpc_helpers import (
    channel,
    envelope,
    health,
    make_endpoints,
    status_error,
    wait_in_flight,
)

F = pb.Failure


def test_stop_unavailable_not_serving_and_in_flight_answered(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    assert health(chan) == health_pb2.HealthCheckResponse.SERVING
    assert health(chan, "bridge.v1.Bridge") == health_pb2.HealthCheckResponse.SERVING
    slow = chan.unary_unary("/bridge.v1.Bridge/Call").future(
        pb.CallRequest(envelope=envelope(method="sleep", seconds=1)).SerializeToString(),
        timeout=10)
    wait_in_flight(srv)
    srv.stop()
    code, failure, _ = status_error(chan, envelope())
    assert code == grpc.StatusCode.UNAVAILABLE and failure.reason == F.REASON_UNAVAILABLE
    assert health(chan) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(chan, "bridge.v1.Bridge") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert from_value(pb.CallResponse.FromString(slow.result()).result) == 1.0
    srv.wait()
    with pytest.raises(grpc.RpcError) as info:  # the last listener released the port
        health(chan)
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
