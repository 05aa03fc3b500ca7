"""Call, cast, fanout, server-direct, round robin, context, and where a message no server
serves goes: the same behaviour on every wire (tests/contract/conftest.py)."""

from __future__ import annotations

import queue
from dataclasses import dataclass

import pytest
from contract_endpoints import Echo

import bridge

#: How long a test waits for a message it expects; and for one it expects never to come.
ARRIVAL = 10.0
SILENCE = 0.3


@dataclass
class Served:
    """Two servers, ``s1`` and ``s2``, of one topic on the wire's transport."""

    topic: str
    events: queue.Queue
    servers: dict[str, bridge.MessageHandlingServer]


@pytest.fixture(scope="module")
def served(wire) -> Served:
    topic = f"{wire.exchange}-calls"
    events: queue.Queue = queue.Queue()
    servers = {name: wire.server(bridge.Target(topic=topic, server=name),
                                 [Echo(name, events)], shared=True)
               for name in ("s1", "s2")}
    return Served(topic, events, servers)


def drain(events: queue.Queue, count: int) -> list:
    """``count`` events, waiting up to ARRIVAL for them; then none more for SILENCE."""
    got = []
    for _ in range(count):
        try:
            got.append(events.get(timeout=ARRIVAL))
        except queue.Empty:
            break
    try:
        got.append(events.get(timeout=SILENCE))
    except queue.Empty:
        pass
    return got


def test_call_returns_the_result(wire, served):
    client = wire.client(bridge.Target(topic=served.topic))
    assert client.call({}, "echo", value={"a": [1, 2.5, "three", None, True]}) == {
        "a": [1, 2.5, "three", None, True]}
    assert client.call({}, "echo_many", x=1, y="two") == {"x": 1, "y": "two"}
    assert client.call({}, "echo", value=None) is None


def test_cast_has_its_effect(wire, served):
    token = f"cast-{wire.name}"
    wire.client(bridge.Target(topic=served.topic)).cast({}, "record", token=token)
    got = drain(served.events, 1)
    assert len(got) == 1 and got[0][1] == token, got


def test_fanout_reaches_every_server_of_the_topic_once(wire, served):
    token = f"fanout-{wire.name}"
    wire.client(bridge.Target(topic=served.topic, fanout=True)).cast({}, "record", token=token)
    got = drain(served.events, 2)
    assert sorted(got) == [("s1", token), ("s2", token)]


def test_call_with_fanout_is_refused_before_sending(wire, served):
    client = wire.client(bridge.Target(topic=served.topic, fanout=True))
    with pytest.raises(bridge.InvalidTarget):
        client.call({}, "whoami")


def test_server_direct_reaches_only_that_server(wire, served):
    for name in ("s1", "s2"):
        client = wire.client(bridge.Target(topic=served.topic, server=name))
        assert {client.call({}, "whoami") for _ in range(6)} == {name}
        client.cast({}, "record", token=f"direct-{name}")
        assert drain(served.events, 1) == [(name, f"direct-{name}")]


def test_round_robin_between_the_servers_of_a_topic(wire, served):
    client = wire.client(bridge.Target(topic=served.topic))
    answers = [client.call({}, "whoami") for _ in range(12)]
    assert set(answers) == {"s1", "s2"}, answers


def test_scope_of_round_robin_and_fanout(wire, topic):
    """Servers of one topic on two server transports (on gRPC: two addresses)."""
    events: queue.Queue = queue.Queue()
    near = wire.server(bridge.Target(topic=topic, server="near"), [Echo("near", events)])
    far = wire.server(bridge.Target(topic=topic, server="far"), [Echo("far", events)],
                      transport=wire.transport(new=True))
    try:
        client = wire.client(bridge.Target(topic=topic), via=near)
        answers = {client.call({}, "whoami") for _ in range(12)}
        client.prepare(fanout=True).cast({}, "record", token="all")
        broker = wire.differences["scope"] == "broker"
        reached = sorted(name for name, _ in drain(events, 2 if broker else 1))
        if broker:
            assert answers == {"near", "far"}
            assert reached == ["far", "near"]
        else:  # a gRPC client reaches the process at its address only
            assert answers == {"near"}
            assert reached == ["near"]
    finally:
        wire.release(far)
        wire.release(near)


def test_context_round_trip(wire, served):
    ctxt = {"user": "ünïcode-user", "roles": ["admin", "member"], "request_id": "req-1",
            "nested": {"a": [1, {"b": None}]}, "n": 2**40, "f": 0.5}
    got = wire.client(bridge.Target(topic=served.topic)).call(ctxt, "context")
    seen = {key: value for key, value in got.items() if key != "client_timeout"}
    assert seen == ctxt
    assert "client_timeout" in got


def test_client_timeout_in_the_context(wire, served):
    """The key every wire adds on receipt: what it means differs (conftest DIFFERENCES)."""
    client = wire.client(bridge.Target(topic=served.topic), timeout=8)
    plain = client.call({}, "context")["client_timeout"]
    monitored = client.prepare(call_monitor_timeout=5).call({}, "context")["client_timeout"]
    if wire.differences["client_timeout"] == "call_monitor":
        assert plain is None
        assert monitored == 5
    else:  # seconds left before the deadline
        assert 0 < plain <= 8.5
        assert 0 < monitored <= 8.5


def test_exchange_scopes_topics(wire, served):
    client = wire.client(bridge.Target(topic=served.topic, exchange=f"{wire.exchange}-other"),
                         timeout=0.5)
    expected = (bridge.MessagingTimeout if wire.differences["unrouted"] == "timeout"
                else bridge.MessageDeliveryFailure)
    with pytest.raises(expected):
        client.call({}, "whoami")


@pytest.mark.parametrize("where", ["topic", "server"])
def test_call_nobody_serves(wire, served, where):
    """A call to a topic with no server, or to a server name nobody has."""
    target = (bridge.Target(topic=f"{served.topic}-nobody") if where == "topic"
              else bridge.Target(topic=served.topic, server="nobody"))
    client = wire.client(target, timeout=0.5)
    if wire.differences["unrouted"] == "timeout":
        with pytest.raises(bridge.MessagingTimeout):
            client.call({}, "whoami")
    else:  # refused at once (NOT_FOUND)
        with pytest.raises(bridge.MessageDeliveryFailure, match="NOT_FOUND"):
            client.call({}, "whoami")


def test_call_nobody_serves_at_least_once_is_undeliverable(wire, served):
    topic = f"{served.topic}-nobody"
    client = wire.client(bridge.Target(topic=topic), timeout=5,
                         transport_options=bridge.TransportOptions(at_least_once=True))
    with pytest.raises(bridge.MessageUndeliverable) as info:
        client.call({}, "whoami")
    assert info.value.routing_key == topic


@pytest.mark.parametrize("fanout", [False, True], ids=["cast", "fanout"])
def test_cast_nobody_serves(wire, served, fanout):
    client = wire.client(bridge.Target(topic=f"{served.topic}-nobody", fanout=fanout))
    if wire.differences["unrouted_cast"] == "dropped":
        assert client.cast({}, "record", token="lost") is None
    else:
        with pytest.raises(bridge.MessageDeliveryFailure, match="NOT_FOUND"):
            client.cast({}, "record", token="lost")
    # Nothing reached the servers of the topic that is served.
    assert drain(served.events, 0) == []


def test_undeliverable_names_the_exchange(wire, served):
    client = wire.client(bridge.Target(topic=f"{served.topic}-nobody"), timeout=5,
                         transport_options=bridge.TransportOptions(at_least_once=True))
    with pytest.raises(bridge.MessageUndeliverable) as info:
        client.call({}, "whoami")
    assert info.value.exchange == wire.exchange
