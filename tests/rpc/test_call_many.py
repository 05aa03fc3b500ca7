"""RPCClient.call_many on a wire without a call stream: the driver's concurrent default."""

from __future__ import annotations

import asyncio
import threading

import bridge


class Gated:
    """``wait`` answers once the test opens the gate (or after 10 s); the others at once."""

    def __init__(self):
        self.event = threading.Event()

    def wait(self, ctxt):
        return "opened" if self.event.wait(10) else "gave up"

    def echo(self, ctxt, value=None):
        return value

    def fail(self, ctxt):
        raise ValueError("bad value")


def test_call_many_on_memory(transport, serve):
    gated = Gated()
    serve([gated], executor="threading")
    client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10)
    assert not transport.implements.call_stream
    answers = client.call_many({}, [("wait", {}), ("echo", {"value": 1}), ("fail", {})])
    first = dict([next(answers), next(answers)])
    assert first[1] == 1 and isinstance(first[2], ValueError)
    gated.event.set()
    assert list(answers) == [(0, "opened")]
    gated.event.clear()
    try:
        timed_out = list(client.call_many({}, [("wait", {})], timeout=0.1))
    finally:
        gated.event.set()
    assert isinstance(timed_out[0][1], bridge.MessagingTimeout)

    async def collect():
        return [item async for item in client.call_many_async({}, [("echo", {"value": 2})])]

    assert asyncio.run(collect()) == [(0, 2)]
