"""Malformed requests against the real broker: every request that names a reply queue
gets exactly one reply, nothing stays in flight, and the server goes on serving."""

from __future__ import annotations

import json
import uuid

import pytest
from amqp_fuzz import NO_VALUE, inner_call, mutate, same
from amqp_support import BROKER_URL, RawWire, echo_server, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge

pytestmark = [pytest.mark.broker]


@pytest.fixture(scope="module")
def served(request):
    request.getfixturevalue("broker_available")
    with echo_server("malformed", f"{BROKER_URL}?max_body_size=65536") as (
            exchange, topic, server, transport, wire):
        yield exchange, topic, server, wire
        client = bridge.get_rpc_client(
            transport, bridge.Target(exchange=exchange, topic=topic), timeout=10)
        assert client.call({}, "echo", value="still serving") == "still serving"


def _settle(wire: RawWire, server, exchange: str, topic: str) -> None:
    """Wait until every reply the server will send has arrived: nothing in flight, then a
    last call answered on the same connection as every refusal and reply before it."""
    assert wait_for(lambda: server.in_flight == 0, 20), "requests stayed in flight"
    last = f"last-{uuid.uuid4().hex}"
    wire.publish(exchange, topic, wire.envelope(inner_call(last, wire.reply_q, "last")))
    assert wire.wait_replies([last])
    wire.replies.pop(last)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rnd=st.randoms(use_true_random=False), count=st.integers(1, 25))
def test_every_request_that_names_a_reply_queue_is_answered_once(served, rnd, count):
    exchange, topic, server, wire = served
    used: list[str] = []
    cases = [mutate(rnd, wire.reply_q, index, used, bomb_rate=0.05, bomb_size=1 << 20)
             for index in range(count)]
    for case in cases:
        wire.publish(exchange, topic, case.body, content_type=case.content_type,
                     headers=case.headers, **case.properties)
    due = [case.msg_id for case in cases if case.reply is True]
    assert wire.wait_replies(due), [c.mutation for c in cases if c.msg_id not in wire.replies]
    _settle(wire, server, exchange, topic)
    for case in cases:
        replies = wire.replies.pop(case.msg_id, [])
        expected = {True: [1], False: [0], None: [0, 1]}[case.reply]
        assert len(replies) in expected, (case.mutation, replies)
        if not replies:
            continue
        reply = replies[0]
        if case.value is not NO_VALUE:
            assert reply["failure"] is None and same(reply["result"], case.value), \
                (case.mutation, reply)
        elif reply["failure"] is not None:
            failure = json.loads(reply["failure"])
            assert failure["class"] and failure["message"], (case.mutation, failure)
    # A flipped bit may have changed a _msg_id: that caller gets its one reply under it.
    flipped = sum(case.mutation == "bit_flips" for case in cases)
    assert sum(map(len, wire.replies.values())) <= flipped, wire.replies
    wire.replies.clear()
    assert not wire.unreadable


def test_a_large_compressed_request_is_answered(served):
    """Over max_body_size once decompressed: refused with the plain body's error, when the
    reply address comes within the first max_body_size bytes."""
    import zlib

    exchange, topic, server, wire = served
    inner = {"_msg_id": "big", "_reply_q": wire.reply_q, "method": "echo",
             "args": {"value": "0" * 200_000}}
    wire.publish(exchange, topic, zlib.compress(wire.envelope(inner)),
                 headers={"compression": "application/x-gzip"})
    wire.publish(exchange, topic, wire.envelope(dict(inner, _msg_id="big-plain")))
    assert wire.wait_replies(["big", "big-plain"])
    messages = {json.loads(wire.replies.pop(name)[0]["failure"])["message"]
                for name in ("big", "big-plain")}
    assert messages == {"rejected: the message body is larger than max_body_size "
                        "(65536 bytes)"}
