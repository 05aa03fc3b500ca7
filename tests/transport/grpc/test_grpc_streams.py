"""CallStream: many calls on one stream, each answered once, with per-call timeouts."""

from __future__ import annotations

import threading

import grpc
import pytest

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.timer import ManualClock
from bridge.transport.grpc.values import from_value
from tests.grpc_helpers import Gate, channel, envelope, make_endpoints
from tests.waiting import wait_for

F = pb.Failure


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


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_call_stream_timeout_follows_the_server_clock(flavour):
    """A request's timeout is measured on the server's clock: advancing a ManualClock past
    it ends the call with DEADLINE_EXCEEDED, while a call without a timeout goes on."""
    clock = ManualClock()
    gate = Gate()
    transport = bridge.get_transport({"grpc": {"server_flavour": flavour}},
                                     "grpc://127.0.0.1:0")
    transport.driver.clock = clock
    srv = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                [*make_endpoints(), gate])
    srv.start()
    chan = channel(srv.addresses[0])
    try:
        stream = chan.stream_stream("/bridge.v1.Bridge/CallStream")
        requests = [pb.StreamRequest(id=1, envelope=envelope(method="wait", namespace="gate"),
                                     timeout=600),
                    pb.StreamRequest(id=2, envelope=envelope(method="wait", namespace="gate"))]
        responses = stream(iter([r.SerializeToString() for r in requests]), timeout=30)
        wait_for(lambda: srv.in_flight == 2, 10)
        clock.advance(599)  # not yet
        clock.advance(2)
        first = pb.StreamResponse.FromString(next(responses))
        assert first.id == 1
        assert first.error.failure.reason == F.REASON_DEADLINE_EXCEEDED
        gate.event.set()
        rest = [pb.StreamResponse.FromString(data) for data in responses]
        assert [(r.id, from_value(r.result)) for r in rest] == [(2, "opened")]
    finally:
        gate.event.set()
        chan.close()
        srv.stop()
        srv.wait()
        transport.cleanup()
