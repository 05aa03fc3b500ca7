"""The decode budget: large requests decoded at once on one server stay within it."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.decoding import SMALL, DecodeBudget, detached

BUDGET = 1_000_000


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3 * BUDGET), min_size=1, max_size=12))
def test_large_requests_decoded_at_once_stay_within_the_budget(sizes):
    """Any mix of sizes from many threads: the large ones in the budget at once never sum
    past it, except one request larger than the whole budget, which decodes alone; every
    request gets through."""
    budget = DecodeBudget(BUDGET)
    lock = threading.Lock()
    inside: list[int] = []
    worst: list[str] = []
    done: list[int] = []

    def decode(size: int) -> None:
        with budget.decoding(size):
            with lock:
                inside.append(size)
                large = [n for n in inside if n > SMALL]
                if sum(large) > BUDGET and len(large) > 1:
                    worst.append(f"{large} at once")
            threading.Event().wait(0.002)
            with lock:
                inside.remove(size)
                done.append(size)

    threads = [threading.Thread(target=decode, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert not worst, worst
    assert sorted(done) == sorted(sizes)


def test_a_failed_decode_gives_its_bytes_back():
    budget = DecodeBudget(BUDGET)
    try:
        with budget.decoding(BUDGET):
            raise ValueError("undecodable")
    except ValueError:
        pass
    entered = threading.Event()

    def other() -> None:
        with budget.decoding(BUDGET):
            entered.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(5)
    thread.join(5)


def test_a_large_requests_target_is_detached_from_it():
    """A part of a parsed request keeps the whole request alive: a large one's is copied."""
    request = pb.CallRequest(envelope=pb.Envelope(target=pb.Target(topic="t", server="s")))
    small = detached(request.envelope.target, SMALL)
    large = detached(request.envelope.target, SMALL + 1)
    assert small is request.envelope.target
    assert large == request.envelope.target and large is not request.envelope.target
    request.envelope.target.topic = "changed"
    assert large.topic == "t"
