"""bridge.v1.Value round-trips Python primitives exactly."""

from __future__ import annotations

import math

import pytest

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value, to_value
from bridge.values import MAX_DEPTH, InvalidValueError, NotPrimitiveError


def _round_trip(value):
    wire = to_value(value).SerializeToString()
    return from_value(pb.Value.FromString(wire))


def _same(a, b) -> bool:
    """Equal, and of the same types all the way down (1 != 1.0, True != 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.mark.parametrize("value", [
    None, True, False, 0, 1, -1, 1.0, 0.0, -0.0, 1.5, 1e308, float("inf"), float("nan"),
    -(2**63), 2**63 - 1, 2**63, -(2**63) - 1, 10**40, -(10**40),
    "", "plain", "ünïcødé ☃ 𝄞 \u0000 nul", [], {}, [1, 1.0, True, None, "1"],
    {"a": {"b": [{"c": [[], {}]}]}, "ключ": "значение", "": 0},
])
def test_round_trip_exact(value):
    assert _same(_round_trip(value), value)


def test_int_and_float_kinds_on_the_wire():
    assert to_value(1).WhichOneof("kind") == "integer_value"
    assert to_value(1.0).WhichOneof("kind") == "double_value"
    assert to_value(True).WhichOneof("kind") == "bool_value"
    assert to_value(2**63 - 1).WhichOneof("kind") == "integer_value"
    assert to_value(-(2**63)).WhichOneof("kind") == "integer_value"
    big = to_value(2**63)
    assert big.WhichOneof("kind") == "big_integer_value"
    assert big.big_integer_value == "9223372036854775808"
    assert to_value([]).WhichOneof("kind") == "list_value"
    assert to_value({}).WhichOneof("kind") == "map_value"


def test_tuples_become_lists():
    assert _same(_round_trip((1, (2.0, "x"))), [1, [2.0, "x"]])


def test_unset_value_reads_as_null():
    assert from_value(pb.Value()) is None


def test_big_integer_within_int64_is_accepted():
    assert from_value(pb.Value(big_integer_value="-5")) == -5


@pytest.mark.parametrize("text", ["", "+5", "1e5", " 5", "5 ", "0x10", "--1", "1.0"])
def test_malformed_big_integer_is_refused(text):
    with pytest.raises(InvalidValueError, match="big_integer_value"):
        from_value(pb.Value(big_integer_value=text))


def test_non_primitives_are_refused_with_their_path():
    with pytest.raises(NotPrimitiveError, match=r"value\['a'\]\[1\] is a builtins.object"):
        to_value({"a": [1, object()]})
    with pytest.raises(NotPrimitiveError, match="dict keys must be str"):
        to_value({1: "x"})
    with pytest.raises(NotPrimitiveError):
        to_value({1, 2})


def test_depth_limit_both_ways():
    deep = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(NotPrimitiveError, match="nests deeper"):
        to_value(deep)
    msg = pb.Value()
    inner = msg
    for _ in range(MAX_DEPTH + 1):
        inner = inner.list_value.values.add()
    inner.null_value = pb.NULL_VALUE
    with pytest.raises(InvalidValueError, match="nests deeper"):
        from_value(msg)
