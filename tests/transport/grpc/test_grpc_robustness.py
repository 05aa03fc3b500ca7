"""Hostile and odd input on the gRPC wire: every request gets one clear answer, nothing hangs,
leaks a slot or kills a thread, and the server serves on. Inputs are generated (hypothesis)
and each test is bounded in count and time."""

from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import MAX_INTEGER_DIGITS, from_value
from tests.grpc_helpers import channel, envelope, make_endpoints, raw_call, status_error

F = pb.Failure
CALL = "/bridge.v1.Bridge/Call"
CAST = "/bridge.v1.Bridge/Cast"
STREAM = "/bridge.v1.Bridge/CallStream"
#: Hypothesis settings of these tests: few, quick examples against a live server.
FEW = settings(max_examples=25, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


class Live:
    """A server (one flavour) and a raw channel to it, shared by the tests of a module."""

    def __init__(self, flavour: str, limit: int) -> None:
        self.transport = bridge.get_transport(
            {"grpc": {"server_flavour": flavour, "max_concurrent_calls": limit}},
            "grpc://127.0.0.1:0")
        self.server = bridge.get_rpc_server(self.transport,
                                            bridge.Target(topic="topic", server="s"),
                                            make_endpoints())
        self.server.start()
        self.address = self.server.addresses[0]
        self.chan = channel(self.address)
        self.stream = self.chan.stream_stream(STREAM)

    def ping(self) -> None:
        """The server still answers a plain Call."""
        reply = raw_call(self.chan, pb.CallRequest(envelope=envelope()).SerializeToString())
        assert from_value(pb.CallResponse.FromString(reply).result) == "pong"

    def close(self) -> None:
        self.chan.close()
        self.server.stop()
        self.server.wait()
        self.transport.cleanup()


@pytest.fixture(scope="module", params=["sync", "aio"])
def live(request):
    server = Live(request.param, limit=4)
    yield server
    server.close()


def stream_answers(live: Live, requests: list[pb.StreamRequest],
                   timeout: float = 20) -> list[pb.StreamResponse]:
    """Send ``requests`` on one CallStream; the responses (exactly one per request)."""
    responses = live.stream(iter([r.SerializeToString() for r in requests]), timeout=timeout)
    return [pb.StreamResponse.FromString(data) for data in responses]


def _expect_invalid(live: Live, env: pb.Envelope, match: str) -> None:
    """Call, Cast and CallStream all refuse ``env`` with INVALID_ARGUMENT naming ``match``."""
    for method, request in ((CALL, pb.CallRequest(envelope=env)),
                            (CAST, pb.CastRequest(envelope=env))):
        code, failure, details = status_error(live.chan, None, method=method,
                                              request=request.SerializeToString())
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, details)
        assert failure is not None and failure.reason == F.REASON_INVALID_ARGUMENT
        assert match in details
    (answer,) = stream_answers(live, [pb.StreamRequest(id=7, envelope=env)])
    assert answer.id == 7 and answer.WhichOneof("outcome") == "error"
    assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answer.error.failure.reason == F.REASON_INVALID_ARGUMENT
    assert match in answer.error.message


# -- numbers out of range ------------------------------------------------------------------------

@FEW
@given(digits=st.integers(MAX_INTEGER_DIGITS + 1, 40_000), negative=st.booleans(),
       where=st.sampled_from(["args", "context", "nested"]))
def test_too_many_digits_are_invalid_argument_everywhere(live, digits, negative, where):
    text = ("-" if negative else "") + "7" * digits
    env = envelope(method="echo")
    if where == "args":
        env.args["value"].big_integer_value = text
    elif where == "context":
        env.context["user"].big_integer_value = text
    else:
        env.args["value"].list_value.values.add().map_value.fields["k"].big_integer_value = text
    _expect_invalid(live, env, f"over the limit of {MAX_INTEGER_DIGITS}")


def test_integers_up_to_the_limit_round_trip(live):
    client = bridge.get_rpc_client(bridge.get_transport(None, live.address),
                                   bridge.Target(topic="topic"), timeout=10)
    for value in (10**(MAX_INTEGER_DIGITS - 1), -(10**(MAX_INTEGER_DIGITS - 1)), 2**64):
        assert client.call({}, "echo", value=value) == value
    with pytest.raises(bridge.NotPrimitiveError, match=f"more than {MAX_INTEGER_DIGITS} digits"):
        client.call({}, "echo", value=10**MAX_INTEGER_DIGITS)


def test_refused_stream_calls_give_their_slot_back(live):
    """More bad requests than max_concurrent_calls on one stream, then good ones: every
    request is answered once, and the slots are all free again afterwards."""
    bad = envelope(method="echo")
    bad.args["value"].big_integer_value = "1" * (MAX_INTEGER_DIGITS + 1)
    requests = [pb.StreamRequest(id=n, envelope=bad) for n in range(1, 41)]
    requests += [pb.StreamRequest(id=n, envelope=envelope()) for n in range(41, 45)]
    answers = stream_answers(live, requests)
    assert sorted(a.id for a in answers) == list(range(1, 45))
    by_id = {a.id: a for a in answers}
    assert all(by_id[n].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
               for n in range(1, 41))
    assert all(from_value(by_id[n].result) == "pong" for n in range(41, 45))
    assert live.server.in_flight == 0
    live.ping()


@FEW
@given(timeout=st.one_of(
    st.sampled_from([1e300, math.inf, -math.inf, math.nan, 1e12, -1.0, -0.0, 5e-324,
                     1.7976931348623157e308, 1e9, 1e9 + 1]),
    st.floats(allow_nan=True, allow_infinity=True)))
def test_any_stream_timeout_is_answered_and_timeouts_still_fire(live, timeout):
    """Any ``timeout`` value gets its call answered (negative and NaN: INVALID_ARGUMENT),
    and a later short timeout still fires (the timer thread lives on)."""
    answers = stream_answers(live, [
        pb.StreamRequest(id=1, envelope=envelope(), timeout=timeout),
        pb.StreamRequest(id=2, envelope=envelope(method="sleep", seconds=2.0), timeout=0.05),
    ])
    by_id = {a.id: a for a in answers}
    assert sorted(by_id) == [1, 2]
    if math.isnan(timeout) or timeout < 0:
        assert by_id[1].error.failure.reason == F.REASON_INVALID_ARGUMENT
        assert "timeout" in by_id[1].error.message
    elif timeout < 5:  # a short timeout may end the call before it runs
        assert (by_id[1].WhichOneof("outcome") == "result"
                or by_id[1].error.failure.reason == F.REASON_DEADLINE_EXCEEDED)
    else:
        assert from_value(by_id[1].result) == "pong"
    assert by_id[2].error.failure.reason == F.REASON_DEADLINE_EXCEEDED
