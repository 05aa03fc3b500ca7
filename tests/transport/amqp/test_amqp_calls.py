"""The client's calls in flight (timeouts, call monitor, replies), on a manual clock."""

from __future__ import annotations

import json
from concurrent.futures import Future

import pytest

import bridge
from bridge.exceptions import serialize_failure
from bridge.timer import ManualClock, Timer
from bridge.transport.amqp.calls import Call, Calls


@pytest.fixture
def clock_and_calls():
    clock = ManualClock()
    timer = Timer("test-amqp-calls", clock)
    calls = Calls(timer, [], lambda: None)
    yield clock, calls
    timer.close()


def _call(calls: Calls, msg_id: str, timeout: float | None, monitor: float | None) -> Future:
    future: Future = Future()
    calls.add(Call(future, msg_id, monitor), timeout)
    return future


def test_a_call_times_out_when_the_clock_passes_its_timeout(clock_and_calls):
    clock, calls = clock_and_calls
    future = _call(calls, "m1", 30, None)
    clock.advance(29)
    assert not future.done()
    clock.advance(2)
    with pytest.raises(bridge.MessagingTimeout, match="reply to message ID m1"):
        future.result(timeout=5)
    assert len(calls) == 0


def test_heartbeats_move_the_call_monitor_deadline_on(clock_and_calls):
    clock, calls = clock_and_calls
    future = _call(calls, "m2", 100, 4)
    for _ in range(5):  # 15 s in all, a heartbeat every 3 s
        clock.advance(3)
        calls.on_reply({"_msg_id": "m2", "result": None, "failure": None, "ending": False})
    assert not future.done()
    clock.advance(5)
    with pytest.raises(bridge.MessagingTimeout, match="call monitor"):
        future.result(timeout=5)


def test_a_reply_ends_the_call_and_its_timers(clock_and_calls):
    clock, calls = clock_and_calls
    future = _call(calls, "m3", 10, 4)
    calls.on_reply({"_msg_id": "m3", "result": 7, "failure": None, "ending": False})
    calls.on_reply({"_msg_id": "m3", "result": None, "failure": None, "ending": True})
    assert future.result(timeout=0) == 7  # the old two-message reply
    failed = _call(calls, "m4", 10, None)
    failure = json.dumps(serialize_failure(ValueError("bad value")))
    calls.on_reply({"_msg_id": "m4", "result": None, "failure": failure, "ending": True})
    with pytest.raises(ValueError, match="bad value"):
        failed.result(timeout=0)
    clock.advance(60)
    assert len(calls) == 0


def test_a_cancelled_call_leaves_nothing_behind(clock_and_calls):
    clock, calls = clock_and_calls
    future = _call(calls, "m5", 10, None)
    assert future.cancel()
    assert len(calls) == 0
    calls.on_reply({"_msg_id": "m5", "result": 1, "failure": None, "ending": True})
