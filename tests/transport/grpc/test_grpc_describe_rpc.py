"""Describe and server reflection (v1 and v1alpha) on a live gRPC server."""

from __future__ import annotations

import pytest
from grpc_reflection.v1alpha import reflection_pb2 as rpb

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.describe import description_from_response
from tests.grpc_helpers import channel


class Calculator:
    """Adds numbers."""

    def add(self, ctxt, a: int, b: int = 2) -> int:
        """a + b."""
        return a + b

    def _hidden(self, ctxt):
        return None


def test_describe_lists_targets_endpoints_methods_and_parameters(grpc_server):
    srv = grpc_server(topic="calc", server="c1", endpoints=[Calculator()])
    with channel(srv.addresses[0]) as chan:
        data = chan.unary_unary("/bridge.v1.Bridge/Describe")(
            pb.DescribeRequest().SerializeToString(), timeout=10)
    description = description_from_response(pb.DescribeResponse.FromString(data))
    (target,) = description["targets"]
    assert (target["topic"], target["server"]) == ("calc", "c1")
    (endpoint,) = target["endpoints"]
    (method,) = endpoint["methods"]  # _hidden is not callable under the default policy
    assert method["name"] == "add" and method["doc"] == "a + b."
    params = {p["name"]: p for p in method["parameters"]}
    assert params["a"]["required"] and params["a"]["schema"] == {"type": "integer"}
    assert not params["b"]["required"] and params["b"]["default"] == 2


@pytest.mark.parametrize("service", ["grpc.reflection.v1.ServerReflection",
                                     "grpc.reflection.v1alpha.ServerReflection"])
def test_reflection_is_served_as_v1_and_v1alpha(grpc_server, service):
    srv = grpc_server()
    with channel(srv.addresses[0]) as chan:
        stream = chan.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=rpb.ServerReflectionRequest.SerializeToString,
            response_deserializer=rpb.ServerReflectionResponse.FromString)
        replies = list(stream(iter([rpb.ServerReflectionRequest(list_services="")]),
                              timeout=10))
    names = {item.name for item in replies[0].list_services_response.service}
    assert {"bridge.v1.Bridge", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_bridge_describe_of_a_grpc_url(grpc_server):
    import json

    from bridge.app import cli

    srv = grpc_server(topic="calc", server="c1", endpoints=[Calculator()])
    url = srv.addresses[0]
    description = json.loads(cli_output(cli, "describe", url, "--json"))
    assert description["targets"][0]["topic"] == "calc"
    assert "add" in cli_output(cli, "describe", url)


def cli_output(cli, *argv: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(list(argv)) == 0
    return out.getvalue()
