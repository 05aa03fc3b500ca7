"""Describe: what a server serves, wire-neutral (bridge.rpc.describe)."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional, TypedDict, Union

import pytest

import bridge
from bridge.gateway import Forwarder, gateway_server
from bridge.gateway.routes import Route
from bridge.rpc.describe import Callee, describe_method, json_schema
from endpoints import ServerControlEndpoint, default_endpoints


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: int
    y: int


class Calc:
    """Arithmetic for tests."""

    target = bridge.Target(namespace="calc", version="1.2")

    def add(self, ctx: dict, a: int, b: int = 2) -> int:
        """Add two integers.

        Exactly.
        """
        return a + b

    def scale(self, ctx, values: list[float], factor: float = 1.0, *, label: str | None = None,
              **extra: Any) -> list[float]:
        return [v * factor for v in values]

    def plain(self, ctx, x, y=object()):
        return x

    def _hidden(self, ctx):
        return None

    @bridge.expected_exceptions(ValueError)
    def wrapped(self, ctx, name: "str") -> "Optional[int]":  # noqa: UP037, UP045
        """Declared."""
        raise ValueError(name)

    def broken(self, ctx, a: "NoSuchName", b: int) -> None:  # noqa: F821, UP037
        return None


def test_json_schema_of_annotations():
    assert json_schema(int) == {"type": "integer"}
    assert json_schema(float) == {"type": "number"}
    assert json_schema(str) == {"type": "string"}
    assert json_schema(bool) == {"type": "boolean"}
    assert json_schema(None) == {"type": "null"}
    assert json_schema(type(None)) == {"type": "null"}
    assert json_schema(Any) == {}
    assert json_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(Sequence[str]) == {"type": "array", "items": {"type": "string"}}
    assert json_schema(tuple[int, ...]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(tuple[int, str]) == {
        "type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2, "maxItems": 2}
    assert json_schema(dict[str, float]) == {"type": "object",
                                             "additionalProperties": {"type": "number"}}
    assert json_schema(Mapping[str, Any]) == {"type": "object", "additionalProperties": {}}
    assert json_schema(dict) == {"type": "object"}
    assert json_schema(Optional[int]) == {"type": ["integer", "null"]}  # noqa: UP045
    assert json_schema(int | None) == {"type": ["integer", "null"]}
    assert json_schema(Union[list[int], None]) == {  # noqa: UP007
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]}
    assert json_schema(int | Any) == {}
    assert json_schema(Literal["a", 1]) == {"enum": ["a", 1]}
    assert json_schema(Color) == {"enum": ["red", "blue"]}
    assert json_schema(Point) == {"type": "object", "required": ["x", "y"],
                                  "properties": {"x": {"type": "integer"},
                                                 "y": {"type": "integer"}}}
    assert json_schema(object) == {}


def test_method_parameters_defaults_and_docstring():
    calc = Calc()
    add = describe_method("add", calc.add).as_dict()
    assert add == {
        "name": "add", "doc": "Add two integers.\n\nExactly.", "extra_arguments": False,
        "returns": {"type": "integer"},
        "parameters": [{"name": "a", "required": True, "schema": {"type": "integer"}},
                       {"name": "b", "required": False, "default": 2,
                        "schema": {"type": "integer", "default": 2}}]}
    scale = describe_method("scale", calc.scale).as_dict()
    assert scale["extra_arguments"] is True
    assert [p["name"] for p in scale["parameters"]] == ["values", "factor", "label"]
    assert scale["parameters"][2] == {"name": "label", "required": False, "default": None,
                                      "schema": {"type": ["string", "null"], "default": None}}
    plain = describe_method("plain", calc.plain).as_dict()
    # Unannotated: no schema; a default that is no wire value: not required, no default.
    assert plain["parameters"] == [{"name": "x", "required": True},
                                   {"name": "y", "required": False}]
    assert "returns" not in plain


def test_wrapped_and_unresolvable_annotations():
    calc = Calc()
    wrapped = describe_method("wrapped", calc.wrapped).as_dict()
    assert wrapped["doc"] == "Declared."
    assert wrapped["parameters"] == [{"name": "name", "required": True,
                                      "schema": {"type": "string"}}]
    assert wrapped["returns"] == {"type": ["integer", "null"]}
    broken = describe_method("broken", calc.broken).as_dict()
    assert broken["parameters"] == [{"name": "a", "required": True},
                                    {"name": "b", "required": True, "schema": {"type": "integer"}}]


def _server(endpoints, access_policy=None, **target):
    transport = bridge.get_transport(None, "memory://describe-test")
    target = bridge.Target(**{"topic": "t", "server": "s1", **target})
    return transport, bridge.get_rpc_server(transport, target, endpoints,
                                            access_policy=access_policy)


def test_server_describes_its_endpoints_as_json():
    transport, server = _server([Calc(), ServerControlEndpoint(), *default_endpoints()],
                                exchange="ex")
    try:
        data = server.describe()
        json.dumps(data)  # plain data
        (target,) = data["targets"]
        assert (target["topic"], target["exchange"], target["server"], target["routed"]) == (
            "t", "ex", "s1", False)
        calc = target["endpoints"][0]
        assert (calc["namespace"], calc["version"], calc["doc"]) == (
            "calc", "1.2", "Arithmetic for tests.")
        names = [m["name"] for m in calc["methods"]]
        assert names == ["add", "broken", "plain", "scale", "wrapped"]  # no _hidden, no target
        echo = next(e for e in target["endpoints"] if e["namespace"] is None
                    and any(m["name"] == "echo" for m in e["methods"]))
        assert echo["version"] == "1.0"
        control = next(e for e in target["endpoints"] if e["namespace"] == "control")
        assert [m["name"] for m in control["methods"]] == ["status", "stop"]  # not `server`
    finally:
        transport.cleanup()


def test_access_policy_and_allow_filter():
    transport, server = _server([Calc()], access_policy=bridge.LegacyRPCAccessPolicy)
    try:
        names = [m["name"] for m in server.describe()["targets"][0]["endpoints"][0]["methods"]]
        assert "_hidden" in names
    finally:
        transport.cleanup()

    class Explicit:
        @bridge.expose
        def shown(self, ctx):
            return 1

        def unexposed(self, ctx):
            return 2

    transport, server = _server([Explicit()], access_policy=bridge.ExplicitRPCAccessPolicy)
    try:
        methods = server.describe()["targets"][0]["endpoints"][0]["methods"]
        assert [m["name"] for m in methods] == ["shown"]
    finally:
        transport.cleanup()

    seen: list[Callee] = []

    def allow(callee: Callee) -> bool:
        seen.append(callee)
        return callee.method == "add"

    transport, server = _server([Calc(), *default_endpoints()])
    try:
        endpoints = server.describe(allow=allow)["targets"][0]["endpoints"]
        # Endpoints left with no method the caller may call are left out.
        assert [(e["namespace"], [m["name"] for m in e["methods"]]) for e in endpoints] == [
            ("calc", ["add"])]
        assert Callee(None, "t", "s1", "calc", "1.2", "add") in seen
        # The server's seam for a per-caller policy: credentials -> allow.
        server.describe_filter = lambda credentials: (lambda callee: callee.method == "ping")
        endpoints = server.describe()["targets"][0]["endpoints"]
        assert [[m["name"] for m in e["methods"]] for e in endpoints] == [["ping"]]
    finally:
        transport.cleanup()


def test_gateway_routes_are_described_as_routed():
    forwarder = Forwarder([Route(topic="compute", url="memory://upstream", namespace=None),
                           Route(topic="*", url="memory://upstream")])
    gateway = gateway_server([], bridge.Target(topic="gateway", server="g"), forwarder)
    data = gateway.describe()
    assert data["targets"] == [
        {"topic": "compute", "exchange": "*", "server": None, "routed": True,
         "route_namespace": None, "endpoints": []},
        {"topic": "*", "exchange": "*", "server": None, "routed": True,
         "route_namespace": "*", "endpoints": []}]
    only = gateway.describe(allow=lambda callee: callee.topic == "compute")
    assert [t["topic"] for t in only["targets"]] == ["compute"]


@pytest.mark.parametrize("executor", ["threading"])
def test_listeners_get_the_servers_describe(executor):
    transport, server = _server([Calc()])
    server.start()
    try:
        (listener,) = server.listeners
        assert listener.describe is not None
        assert listener.describe(None) == server.describe()
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
