"""The gRPC form of Describe: the plain description <-> bridge.v1.DescribeResponse."""

from __future__ import annotations

import json

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.gateway import Forwarder, gateway_server
from bridge.gateway.routes import Route
from bridge.transport.grpc.describe import describe_response, description_from_response
from endpoints import default_endpoints


class Calc:
    """Arithmetic."""

    target = bridge.Target(namespace="calc", version="1.2", legacy_namespaces=["old"])

    def add(self, ctx: dict, a: int, b: int = 2**70, c: float = 1.0, **rest: object) -> int:
        """Add."""
        return a + b

    def untyped(self, ctx, x, y=object()):
        return x


def test_round_trip_of_a_server_and_a_gateway():
    transport = bridge.get_transport(None, "memory://grpc-describe")
    try:
        server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                       [Calc(), *default_endpoints()])
        gateway = gateway_server([], bridge.Target(topic="gateway", server="s"),
                                 Forwarder([Route(topic="compute", url="memory://x",
                                                  namespace=None),
                                            Route(topic="*", url="memory://x")]))
        description = {"targets": server.describe()["targets"] + gateway.describe()["targets"]}
        response = describe_response(description)
        wire = pb.DescribeResponse.FromString(response.SerializeToString())
        assert description_from_response(wire) == description
    finally:
        transport.cleanup()


def test_fields_on_the_wire():
    transport = bridge.get_transport(None, "memory://grpc-describe")
    try:
        server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s",
                                                                exchange="ex"), [Calc()])
        response = describe_response(server.describe())
    finally:
        transport.cleanup()
    (target,) = response.targets
    assert (target.exchange, target.topic, target.server, target.routed) == ("ex", "t", "s",
                                                                              False)
    assert not target.HasField("route_namespace")
    (endpoint,) = target.endpoints
    assert (endpoint.namespace, endpoint.version, endpoint.doc) == ("calc", "1.2", "Arithmetic.")
    assert list(endpoint.legacy_namespaces) == ["old"]
    add = endpoint.methods[0]
    assert (add.name, add.doc, add.extra_arguments) == ("add", "Add.", True)
    assert json.loads(add.returns_schema_json) == {"type": "integer"}
    a, b, c = add.parameters
    assert (a.name, a.required, a.HasField("default_value")) == ("a", True, False)
    assert json.loads(a.schema_json) == {"type": "integer"}
    # A default past int64 stays exact; a float default stays a double.
    assert b.default_value.big_integer_value == str(2**70)
    assert c.default_value.WhichOneof("kind") == "double_value"
    untyped = endpoint.methods[1]
    assert untyped.returns_schema_json == ""
    assert [(p.name, p.required, p.schema_json, p.HasField("default_value"))
            for p in untyped.parameters] == [("x", True, "", False), ("y", False, "", False)]


def test_null_namespace_and_default_exchange_are_absent():
    transport = bridge.get_transport(None, "memory://grpc-describe")
    try:
        server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                       default_endpoints())
        response = describe_response(server.describe())
    finally:
        transport.cleanup()
    (target,) = response.targets
    assert target.exchange == ""
    echo = next(e for e in target.endpoints if any(m.name == "echo" for m in e.methods))
    assert not echo.HasField("namespace")
