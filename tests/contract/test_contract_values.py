"""Values across every wire: edge cases, generated trees, nesting near the documented limit,
and the serializer hooks on both sides (tests/contract/conftest.py)."""

from __future__ import annotations

import datetime
import math

import pytest
from contract_endpoints import (
    APP_MODULE,
    Echo,
    RequestContext,
    Thing,
    ThingEndpoint,
    ThingSerializer,
    nested,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge
from bridge.values import MAX_DEPTH


@pytest.fixture(scope="module")
def client(wire):
    topic = f"{wire.exchange}-values"
    wire.server(bridge.Target(topic=topic, server="s1"), [Echo("s1")], shared=True)
    return wire.client(bridge.Target(topic=topic))


def same(a, b) -> bool:
    """Equal, with the same types all the way down (tuples arrive as lists); NaN is NaN."""
    if isinstance(a, tuple):
        a = list(a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


EDGE_VALUES = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int64-max": 2**63 - 1,
    "int64-min": -(2**63),
    "beyond-int64": 2**63,
    "below-int64": -(2**63) - 1,
    "huge-int": 3**200,
    "float": 0.1,
    "float-whole": 2.0,
    "negative-zero": -0.0,
    "float-max": 1.7976931348623157e308,
    "float-tiny": 5e-324,
    "inf": math.inf,
    "minus-inf": -math.inf,
    "nan": math.nan,
    "empty-str": "",
    "unicode": "ünïcödé ✓ 中文 😀 \u200b",
    "control-chars": "a\x00b\x1f\n\t\"\\",
    "empty-list": [],
    "empty-dict": {},
    "empties-nested": [[], {}, [[]], {"a": {}}],
    "tuple": (1, "two", (3.0,)),
    "mixed": {"ints": [1, -1, 2**70], "f": [0.5, -2.25], "s": {"ключ": "значение"},
              "b": [True, False, None]},
    "unicode-keys": {"ü": 1, "😀": [], "": "empty key"},
}


@pytest.mark.parametrize("value", list(EDGE_VALUES.values()), ids=list(EDGE_VALUES))
def test_edge_values_cross_unchanged(client, value):
    assert same(value, client.call({}, "echo", value=value))


def test_edge_values_in_the_context(client):
    ctxt = {name.replace("-", "_"): value for name, value in EDGE_VALUES.items()
            if name != "nan"}
    got = client.call(ctxt, "context")
    got.pop("client_timeout", None)
    assert same(ctxt, got)


primitives = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=primitives)
def test_generated_values_cross_unchanged(client, value):
    assert same(value, client.call({}, "echo", value=value))


def test_values_nested_half_the_limit_cross(client):
    half = MAX_DEPTH // 2 - 8
    assert same(nested(half), client.call({}, "echo", value=nested(half)))
    assert same(nested(half), client.call({}, "nest", depth=half))


@pytest.mark.parametrize("where", ["argument", "context", "result"])
def test_values_nested_to_the_limit_cross(wire, client, where):
    value = nested(MAX_DEPTH)
    if where == "argument":  # each argument is a value of its own
        assert same(value, client.call({}, "echo", value=value))
    elif where == "context":  # the context is one value: its dict is the first level
        inner = nested(MAX_DEPTH - 1)
        assert same(inner, client.call({"deep": inner}, "context")["deep"])
    else:
        assert same(value, client.call({}, "nest", depth=MAX_DEPTH))


def test_values_nested_beyond_the_limit_are_refused(client):
    too_deep = nested(MAX_DEPTH + 1)
    with pytest.raises(bridge.NotPrimitiveError, match=f"deeper than {MAX_DEPTH}"):
        client.call({}, "echo", value=too_deep)
    with pytest.raises(bridge.NotPrimitiveError, match="the request context"):
        client.call({"deep": nested(MAX_DEPTH)}, "context")
    # A result too deep is the server's failure, reported to the caller.
    with pytest.raises(bridge.RemoteError) as info:
        client.call({}, "nest", depth=MAX_DEPTH + 1)
    assert info.value.exc_type == "NotPrimitiveError"
    assert client.call({}, "whoami") == "s1"


def test_lone_surrogate(wire, client):
    """A str that is not valid Unicode (conftest DIFFERENCES: lone_surrogate)."""
    if wire.differences["lone_surrogate"] == "crosses":
        assert client.call({}, "echo", value="a\ud800b") == "a\ud800b"
        assert client.call({}, "surrogate") == "a\ud800b"
    else:  # refused before sending, or by the server when it encodes its reply
        with pytest.raises(ValueError):
            client.call({}, "echo", value="a\ud800b")
        # The server cannot encode its reply: the caller gets that failure, its class kept.
        with pytest.raises(UnicodeError, match="surrogates not allowed"):
            client.call({}, "surrogate")
    assert client.call({}, "whoami") == "s1"


# -- serializer hooks --------------------------------------------------------------------

def test_serializer_hooks_on_both_sides(wire, topic):
    server_side, client_side = ThingSerializer("server"), ThingSerializer("client")
    wire.server(bridge.Target(topic=topic, server="s1"), [ThingEndpoint()],
                serializer=server_side)
    client = wire.client(bridge.Target(topic=topic), serializer=client_side,
                         allowed_remote_exmods=[APP_MODULE])
    result = client.call(RequestContext("alice", ["admin"]), "grow", thing=Thing(5))
    assert result == Thing([5, "alice", ["admin"]])
    assert client_side.seen == ["serialize_entity", "serialize_context", "deserialize_entity"]
    assert server_side.seen == ["deserialize_context", "deserialize_entity", "serialize_entity"]


def test_serializer_sees_only_primitives_from_the_wire(wire, topic):
    """What one side's serializer made is what the other side's gets, as primitives."""

    class Recording(ThingSerializer):
        def __init__(self, side: str) -> None:
            super().__init__(side)
            self.received: list = []

        def deserialize_entity(self, ctxt, entity):
            self.received.append(entity)
            return super().deserialize_entity(ctxt, entity)

        def deserialize_context(self, ctxt):
            self.received.append(dict(ctxt))
            return super().deserialize_context(ctxt)

    server_side, client_side = Recording("server"), Recording("client")
    wire.server(bridge.Target(topic=topic, server="s1"), [ThingEndpoint()],
                serializer=server_side)
    client = wire.client(bridge.Target(topic=topic), serializer=client_side)
    client.call(RequestContext("bob", []), "grow", thing=Thing((1, 2)))
    context, argument = server_side.received
    assert {k: v for k, v in context.items() if k != "client_timeout"} == {
        "user": "bob", "roles": [], "by": "client"}
    assert argument == {"__thing__": [1, 2], "by": "client"}
    assert client_side.received == [{"__thing__": [[1, 2], "bob", []], "by": "server"}]


def test_json_payload_serializer(wire, client):
    json_client = wire.client(client.target, serializer=bridge.JsonPayloadSerializer())
    moment = datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc)
    assert json_client.call({}, "echo", value={"at": moment, "set": {1}}) == {
        "at": moment.isoformat(), "set": [1]}
