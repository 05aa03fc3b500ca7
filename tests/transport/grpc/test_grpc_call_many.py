"""RPCClient.call_many over gRPC's CallStream, on both server flavours."""

from __future__ import annotations

import asyncio
import threading

import pytest

import bridge
from tests.grpc_helpers import Gate, make_endpoints


class Gated:
    """``wait`` answers once the test opens the gate (or after 10 s); ``echo`` at once."""

    def __init__(self):
        self.event = threading.Event()

    def wait(self, ctxt):
        return "opened" if self.event.wait(10) else "gave up"

    def echo(self, ctxt, value=None):
        return value


def test_outcomes_come_as_answered_with_their_indexes(grpc_server, client_for):
    gated = Gated()
    client = client_for(grpc_server(endpoints=[gated]))
    assert client.transport.implements.call_stream
    answers = client.call_many({}, [("wait", {}), ("echo", {"value": 1}),
                                    ("echo", {"value": [2, "two"]})])
    assert sorted([next(answers), next(answers)]) == [(1, 1), (2, [2, "two"])]
    gated.event.set()
    assert list(answers) == [(0, "opened")]


def test_a_failure_stops_no_other_call(grpc_server, client_for):
    srv = grpc_server()
    client = client_for(srv, allowed=["oslo_messaging.rpc.dispatcher"])
    outcomes = dict(client.call_many({}, [("fail", {"message": "boom"}), ("echo", {"value": 5}),
                                          ("no_such", {}), ("echo", {"value": 6})]))
    assert isinstance(outcomes[0], ValueError) and "boom" in str(outcomes[0])
    with pytest.raises(bridge.NoSuchMethod) as unary:  # the class a unary call raises
        client.call({}, "no_such")
    assert isinstance(outcomes[2], bridge.NoSuchMethod) and unary.value.args == outcomes[2].args
    assert (outcomes[1], outcomes[3]) == (5, 6)


def test_the_timeout_is_per_call(grpc_server, client_for):
    gate = Gate()
    srv = grpc_server(endpoints=[*make_endpoints(), gate])
    client = client_for(srv).prepare(namespace="gate")
    try:
        outcomes = list(client.call_many({}, [("wait", {}), ("wait", {})], timeout=0.2))
    finally:
        gate.event.set()
    assert sorted(index for index, _ in outcomes) == [0, 1]
    assert all(isinstance(outcome, bridge.MessagingTimeout) for _, outcome in outcomes)


def test_the_asyncio_variant(grpc_server, client_for):
    srv = grpc_server()
    client = client_for(srv)

    async def collect():
        return [item async for item in client.call_many_async(
            {}, [("echo", {"value": index}) for index in range(20)] + [("fail", {})])]

    outcomes = dict(asyncio.run(collect()))
    assert [outcomes[index] for index in range(20)] == list(range(20))
    assert isinstance(outcomes[20], ValueError)


def test_nothing_to_call(grpc_server, client_for):
    client = client_for(grpc_server())
    assert list(client.call_many({}, [])) == []
