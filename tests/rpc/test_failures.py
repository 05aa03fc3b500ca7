"""Failures cross the wire as (class, module, message, tb, args, kwargs); values are checked."""

from __future__ import annotations

import datetime
import logging

import pytest

import bridge
from bridge.exceptions import deserialize_failure, serialize_failure
from tests.remote_errors import AppError


class Failing:
    def value_error(self, ctxt):
        raise ValueError("bad value")

    def app_error(self, ctxt):
        raise AppError(7, detail="seven", hint="retry")

    @bridge.expected_exceptions(KeyError)
    def expected(self, ctxt):
        raise KeyError("missing")

    @bridge.expected_exceptions(KeyError)
    def unexpected(self, ctxt):
        raise IndexError("out of range")

    def bad_result(self, ctxt):
        return {"when": datetime.datetime(2020, 1, 1)}

    def ok(self, ctxt, **kwargs):
        return kwargs


def client(transport, **kwargs):
    return bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=5, **kwargs)


def test_builtin_exception_keeps_its_class(transport, serve):
    serve([Failing()])
    with pytest.raises(ValueError) as info:
        client(transport).call({}, "value_error")
    assert type(info.value) is ValueError
    assert str(info.value).startswith("bad value")
    assert "Traceback" in str(info.value)


def test_disallowed_module_gives_remote_error(transport, serve):
    serve([Failing()])
    with pytest.raises(bridge.RemoteError) as info:
        client(transport).call({}, "app_error")
    assert info.value.exc_type == "AppError"
    assert "7" in info.value.value


def test_allowed_module_rebuilds_the_class(memory_url):
    transport = bridge.get_transport(None, memory_url,
                                     allowed_remote_exmods=["tests.remote_errors"])
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Failing()])
    server.start()
    try:
        with pytest.raises(AppError) as info:
            client(transport).call({}, "app_error")
        exc = info.value
        assert (exc.code, exc.detail, exc.kwargs) == (7, "seven", {"hint": "retry"})
        assert type(exc).__name__ == "AppError_Remote"
        assert type(exc).__module__ == "tests.remote_errors_Remote"
        # Re-raised again by a server, it travels under its original name.
        data = serialize_failure(exc)
        assert (data["class"], data["module"]) == ("AppError", "tests.remote_errors")
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def test_expected_exception_reaches_caller_and_is_not_logged_as_error(transport, serve, caplog):
    serve([Failing()])
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        with pytest.raises(KeyError):
            client(transport).call({}, "expected")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Expected exception" in r.getMessage() for r in caplog.records)


def test_exception_not_declared_expected_is_logged(transport, serve, caplog):
    serve([Failing()])
    with caplog.at_level(logging.ERROR, logger="bridge"):
        with pytest.raises(IndexError):
            client(transport).call({}, "unexpected")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_dispatcher_errors_travel_under_oslo_module_names():
    data = serialize_failure(bridge.NoSuchMethod("foo"))
    assert (data["class"], data["module"], data["args"]) == (
        "NoSuchMethod", "oslo_messaging.rpc.dispatcher", ["foo"])
    assert isinstance(deserialize_failure(data), bridge.RemoteError)
    rebuilt = deserialize_failure(data, ["oslo_messaging.rpc.dispatcher"])
    assert isinstance(rebuilt, bridge.NoSuchMethod) and rebuilt.method == "foo"
    data = serialize_failure(bridge.UnsupportedVersion("2.0", method="m"))
    rebuilt = deserialize_failure(data, ["bridge.exceptions"])
    assert isinstance(rebuilt, bridge.UnsupportedVersion)
    assert (rebuilt.version, rebuilt.method) == ("2.0", "m")


def test_failure_dict_fields():
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        data = serialize_failure(exc)
        bare = serialize_failure(exc, include_traceback=False)
    assert set(data) == {"class", "module", "message", "tb", "args", "kwargs"}
    assert (data["class"], data["module"], data["message"]) == ("ValueError", "builtins",
                                                                "bad value")
    assert data["args"] == ["bad value"] and data["kwargs"] == {}
    assert data["tb"][0].startswith("Traceback")
    assert bare["tb"] == []


@pytest.mark.parametrize("data", [
    {"class": "NotAClass", "module": "builtins", "message": "m"},
    {"class": "ValueError", "module": "no_such_module_xyz", "message": "m"},
    {"class": "AppError", "module": "tests.remote_errors", "message": "m", "args": []},
    {"class": "len", "module": "builtins", "message": "m"},
])
def test_unbuildable_failures_become_remote_errors(data):
    exc = deserialize_failure(data, ["tests.remote_errors", "no_such_module_xyz"])
    assert isinstance(exc, bridge.RemoteError)


def test_exceptions_module_is_builtins():
    exc = deserialize_failure({"class": "KeyError", "module": "exceptions", "message": "'k'",
                               "args": ["k"]})
    assert isinstance(exc, KeyError)


# -- values ------------------------------------------------------------------------------------

def test_values_round_trip_exactly(transport, serve):
    serve([Failing()])
    value = {"int": 1, "float": 1.0, "big": 2**100, "neg": -(2**63), "none": None,
             "bool": True, "text": "héllo ✓ 𝄞", "nested": [[1, [2, {"k": [3.5]}]], {}]}
    result = client(transport).call({}, "ok", value=value, pair=(1, 2))
    assert result == {"value": value, "pair": [1, 2]}
    assert type(result["value"]["int"]) is int and type(result["value"]["float"]) is float


@pytest.mark.parametrize("kwargs,where", [
    ({"when": datetime.date(2020, 1, 1)}, "argument 'when' is a datetime.date"),
    ({"items": [1, {"deep": {1, 2}}]}, "argument 'items'[1]['deep'] is a builtins.set"),
    ({"mapping": {1: "one"}}, "argument 'mapping' key 1 is a int; dict keys must be str"),
    ({"blob": b"bytes"}, "argument 'blob' is a builtins.bytes"),
])
def test_non_primitive_arguments_are_refused_before_sending(transport, serve, kwargs, where):
    serve([Failing()])
    with pytest.raises(bridge.NotPrimitiveError) as info:
        client(transport).call({}, "ok", **kwargs)
    assert str(info.value).startswith(where)
    assert client(transport).call({}, "ok", fine=1) == {"fine": 1}


def test_non_primitive_context_is_refused(transport, serve):
    serve([Failing()])
    with pytest.raises(bridge.NotPrimitiveError, match="the request context"):
        client(transport).call({"user": object()}, "ok")


def test_non_primitive_result_is_a_clear_error_and_the_server_goes_on(transport, serve):
    serve([Failing()])
    with pytest.raises(bridge.RemoteError) as info:
        client(transport).call({}, "bad_result")
    assert info.value.exc_type == "NotPrimitiveError"
    assert "the result['when'] is a datetime.datetime" in info.value.value
    assert client(transport).call({}, "ok", again=True) == {"again": True}


def test_deeply_nested_values_are_refused():
    from bridge.values import check_primitive

    value: list = []
    for _ in range(100):
        value = [value]
    with pytest.raises(bridge.NotPrimitiveError, match="nests deeper"):
        check_primitive(value, "argument 'x'")


# -- serializers -------------------------------------------------------------------------------

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Context:
    def __init__(self, user):
        self.user = user

    def to_dict(self):
        return {"user": self.user}


class PointSerializer(bridge.NoOpSerializer):
    def __init__(self):
        self.calls: list[str] = []

    def serialize_entity(self, ctxt, entity):
        self.calls.append("serialize_entity")
        return {"__point__": [entity.x, entity.y]} if isinstance(entity, Point) else entity

    def deserialize_entity(self, ctxt, entity):
        self.calls.append("deserialize_entity")
        if isinstance(entity, dict) and "__point__" in entity:
            return Point(*entity["__point__"])
        return entity

    def serialize_context(self, ctxt):
        self.calls.append("serialize_context")
        return ctxt.to_dict()

    def deserialize_context(self, ctxt):
        self.calls.append("deserialize_context")
        return Context(ctxt["user"])


class Geometry:
    def mirror(self, ctxt, point):
        assert isinstance(ctxt, Context) and isinstance(point, Point)
        return Point(point.y, point.x) if ctxt.user == "u1" else None


def test_serializer_hooks_on_both_sides(transport, serve):
    server_side, client_side = PointSerializer(), PointSerializer()
    serve([Geometry()], serializer=server_side)
    rpc = client(transport, serializer=client_side)
    assert rpc.call(Context("u1"), "mirror", point=Point(1, 2)) == Point(2, 1)
    assert server_side.calls == ["deserialize_context", "deserialize_entity",
                                 "serialize_entity"]
    assert client_side.calls == ["serialize_entity", "serialize_context",
                                 "deserialize_entity"]


def test_json_payload_serializer_makes_primitives(transport, serve):
    serve([Failing()])
    rpc = client(transport, serializer=bridge.JsonPayloadSerializer())
    result = rpc.call({}, "ok", when=datetime.datetime(1920, 2, 3, 4, 5, 6, 7), tags={"a"})
    assert result == {"when": "1920-02-03T04:05:06.000007", "tags": ["a"]}


def test_a_rebuilt_failure_is_forwarded_unchanged():
    original = {"class": "QuotaError", "module": "nova.exception", "message": "over quota",
                "tb": ["Traceback (most recent call last):\n", "nova.exception.QuotaError\n"],
                "args": ["over quota", 3], "kwargs": {"code": 413}}
    rebuilt = deserialize_failure(original)
    assert isinstance(rebuilt, bridge.RemoteError)
    assert serialize_failure(rebuilt) == original
    assert serialize_failure(rebuilt, include_traceback=False)["tb"] == []
    builtin = deserialize_failure({"class": "ValueError", "module": "builtins",
                                   "message": "bad", "tb": [], "args": ["bad"]})
    assert serialize_failure(builtin)["message"] == "bad"
