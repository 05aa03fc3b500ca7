"""The status table of the gRPC wire: raw requests, codes and Failure details."""

from __future__ import annotations

import grpc
import pytest

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value
from tests.grpc_helpers import (
    AppError,
    Gate,
    channel,
    envelope,
    make_endpoints,
    raw_call,
    status_error,
    wait_in_flight,
)

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
    got_code, failure, details = status_error(chan, env)
    chan.close()
    assert got_code.name == code
    assert failure is not None and failure.reason == reason
    assert failure.class_name == class_name
    assert failure.message and failure.message in details
    assert list(failure.traceback) == []  # not configured


def test_failure_detail_fields(grpc_server):
    srv = grpc_server(conf={"grpc": {"include_traceback": True}})
    chan = channel(srv.addresses[0])
    _, failure, _ = status_error(chan, envelope(namespace="failing", method="app_error", text="t1"))
    assert (failure.module, failure.class_name, failure.message) == (
        AppError.__module__, "AppError", "t1")
    assert [from_value(v) for v in failure.args] == ["t1"]
    assert any("raise AppError" in line for line in failure.traceback)
    chan.close()


def test_malformed_bytes_and_values(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    code, failure, _ = status_error(chan, None, request=b"\xff\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == F.REASON_INVALID_ARGUMENT
    env = envelope(method="echo")
    env.args["value"].big_integer_value = "12x"
    code, failure, details = status_error(chan, env)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "argument['value']" in details
    code, failure, _ = status_error(chan, None, method="/bridge.v1.Bridge/Cast",
                               request=b"\x0a\x05garbage")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # The server still serves after bad input.
    reply = raw_call(chan, pb.CallRequest(envelope=envelope()).SerializeToString())
    assert from_value(pb.CallResponse.FromString(reply).result) == "pong"
    chan.close()


def test_deadline_exceeded_status(grpc_server):
    srv = grpc_server()
    chan = channel(srv.addresses[0])
    code, _, _ = status_error(chan, envelope(method="sleep", seconds=1), timeout=0.2)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    chan.close()


def test_message_size_limit_named(grpc_server, client_for):
    srv = grpc_server(conf={"grpc": {"max_receive_message_length": 100_000}})
    chan = channel(srv.addresses[0])
    code, _, details = status_error(chan, envelope(method="echo", value="x" * 200_000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100000" in details
    # The same over the Python client, and for a reply over the server's send limit.
    client = client_for(srv)
    with pytest.raises(bridge.MessageDeliveryFailure, match="100000"):
        client.call({}, "echo", value="x" * 200_000)
    code, failure, details = status_error(chan, envelope(namespace="failing", method="huge",
                                                    size=5 * 1024 * 1024))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.limit_name == "max_send_message_length"
    assert "max_send_message_length" in details
    chan.close()



def test_concurrency_limit(grpc_server):
    gate = Gate()
    srv = grpc_server(conf={"grpc": {"max_concurrent_calls": 1}},
                      endpoints=[*make_endpoints(), gate])
    chan = channel(srv.addresses[0])
    slow = chan.unary_unary("/bridge.v1.Bridge/Call").future(
        pb.CallRequest(envelope=envelope(method="wait", namespace="gate")).SerializeToString(),
        timeout=20)
    wait_in_flight(srv)
    code, failure, details = status_error(chan, envelope())
    gate.event.set()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.limit_name == "max_concurrent_calls" and failure.limit_value == 1
    assert "max_concurrent_calls" in details
    assert from_value(pb.CallResponse.FromString(slow.result()).result) == "opened"
    chan.close()
