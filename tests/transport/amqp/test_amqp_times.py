"""Time values on the AMQP wire (``_timeout``, ``expiration``): any value a message carries
is either used or refused with a clear error, and every call is answered."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from amqp_support import echo_server, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge
from bridge.transport.amqp.envelope import (
    MAX_SECONDS,
    BadMessage,
    check_seconds,
    expiration_seconds,
)

#: What a hand-made (or hostile) client may put in ``_timeout``.
ANY_TIMEOUT = st.one_of(
    st.none(), st.floats(), st.integers(-10**600, 10**600), st.booleans(),
    st.sampled_from([0, 1, 2, 2.5, MAX_SECONDS, MAX_SECONDS + 1, 1e300, -0.0, 1e-300]),
    st.text(max_size=4), st.lists(st.integers(), max_size=2))


def timeout_is_valid(value) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (isinstance(value, int) or math.isfinite(value)) and 0 <= value <= MAX_SECONDS


@settings(max_examples=500, deadline=None)
@given(ANY_TIMEOUT)
def test_a_timeout_is_a_bounded_number_or_refused(value):
    try:
        checked = check_seconds(value, "_timeout")
    except BadMessage as exc:
        assert not timeout_is_valid(value) and "_timeout" in str(exc)
    else:
        assert timeout_is_valid(value) and checked == value


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(-10, 10**20).map(str), st.binary(max_size=8),
                 st.none()))
def test_an_expiration_is_whole_milliseconds_or_refused(value):
    try:
        seconds = expiration_seconds(value)
    except BadMessage as exc:
        assert "expiration" in str(exc)
    else:
        assert seconds is None or 0 <= seconds <= MAX_SECONDS


@pytest.mark.parametrize("kwargs", [{"timeout": math.nan}, {"timeout": -1},
                                    {"timeout": 10, "call_monitor_timeout": math.inf},
                                    {"timeout": 10, "call_monitor_timeout": math.nan},
                                    {"timeout": 10, "call_monitor_timeout": 1e300}])
def test_a_client_refuses_a_time_it_cannot_send(kwargs):
    transport = bridge.get_transport(None, "rabbit://guest:guest@127.0.0.1:1/")
    try:
        with pytest.raises(ValueError, match="timeout"):
            transport.driver.send(bridge.Target(topic="t"), {}, {"method": "m", "args": {}},
                                  wait_for_reply=True, **kwargs)
        assert transport.driver.client.connection is None  # nothing was started
    finally:
        transport.cleanup()


@pytest.fixture(scope="module")
def served(request):
    request.getfixturevalue("broker_available")
    with echo_server("times") as (exchange, topic, server, _transport, wire):
        yield exchange, topic, server, wire


@pytest.mark.broker
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ANY_TIMEOUT, st.none() | st.integers(60_000, MAX_SECONDS * 1000)),
                min_size=1, max_size=20))
def test_every_call_is_answered_whatever_its_times(served, values):
    exchange, topic, server, wire = served
    expected = {}
    for index, (timeout, expiration) in enumerate(values):
        msg_id = uuid.uuid4().hex
        inner = {"method": "echo", "args": {"value": index}, "_msg_id": msg_id,
                 "_reply_q": wire.reply_q, "_timeout": timeout, "_unique_id": uuid.uuid4().hex}
        properties = {} if expiration is None else {"expiration": str(expiration)}
        wire.publish(exchange, topic, json.dumps(
            {"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode(), **properties)
        expected[msg_id] = (index, timeout)
    assert wire.wait_replies(list(expected)), "some calls were never answered"
    for msg_id, (index, timeout) in expected.items():
        [reply] = wire.replies.pop(msg_id)  # exactly one
        if timeout_is_valid(timeout):
            assert reply["failure"] is None and reply["result"] == index
        else:
            failure = json.loads(reply["failure"])
            assert failure["class"] == "MalformedMessage" and "_timeout" in failure["message"]
    assert wait_for(lambda: server.in_flight == 0, 10)
