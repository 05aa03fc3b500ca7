"""Describe on the gRPC wire: the plain description of a server (the dict of
:meth:`bridge.rpc.describe.Description.as_dict`, handed to the driver by
``Listener.describe``) <-> ``bridge.v1.DescribeResponse``.

JSON Schemas travel as JSON text (``schema_json``, ``returns_schema_json``); a
parameter's default as a ``Value`` (exact, like arguments).
"""

from __future__ import annotations

import json
from typing import Any

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import fill_value, from_value


def _schema_text(schema: Any) -> str:
    return "" if schema is None else json.dumps(schema, sort_keys=True, allow_nan=False)


def describe_response(description: dict[str, Any]) -> pb.DescribeResponse:
    """The ``DescribeResponse`` of a plain description."""
    response = pb.DescribeResponse()
    for served in description.get("targets", ()):
        target = response.targets.add(exchange=served.get("exchange") or "",
                                      topic=served.get("topic") or "",
                                      server=served.get("server") or "",
                                      routed=bool(served.get("routed")))
        if served.get("routed") and served.get("route_namespace") is not None:
            target.route_namespace = served["route_namespace"]
        for endpoint in served.get("endpoints", ()):
            item = target.endpoints.add(version=endpoint.get("version") or "",
                                        doc=endpoint.get("doc") or "",
                                        legacy_namespaces=endpoint.get("legacy_namespaces", ()))
            if endpoint.get("namespace") is not None:
                item.namespace = endpoint["namespace"]
            for method in endpoint.get("methods", ()):
                _fill_method(item.methods.add(), method)
    return response


def _fill_method(msg: pb.MethodDescription, method: dict[str, Any]) -> None:
    msg.name = method["name"]
    msg.doc = method.get("doc") or ""
    msg.extra_arguments = bool(method.get("extra_arguments"))
    msg.returns_schema_json = _schema_text(method.get("returns"))
    for param in method.get("parameters", ()):
        item = msg.parameters.add(name=param["name"], required=bool(param.get("required")),
                                  schema_json=_schema_text(param.get("schema")))
        if "default" in param:
            fill_value(item.default_value, param["default"], f"the default of {param['name']!r}")


def description_from_response(response: pb.DescribeResponse) -> dict[str, Any]:
    """The plain description a ``DescribeResponse`` holds (the inverse of
    :func:`describe_response`)."""
    targets = []
    for target in response.targets:
        served: dict[str, Any] = {"topic": target.topic, "exchange": target.exchange or None,
                                  "server": target.server or None, "routed": target.routed,
                                  "endpoints": [_endpoint(item) for item in target.endpoints]}
        if target.routed:
            served["route_namespace"] = (target.route_namespace
                                         if target.HasField("route_namespace") else None)
        targets.append(served)
    return {"targets": targets}


def _endpoint(msg: pb.EndpointDescription) -> dict[str, Any]:
    methods = []
    for method in msg.methods:
        data: dict[str, Any] = {"name": method.name, "doc": method.doc,
                                "parameters": [_parameter(item) for item in method.parameters],
                                "extra_arguments": method.extra_arguments}
        if method.returns_schema_json:
            data["returns"] = json.loads(method.returns_schema_json)
        methods.append(data)
    return {"namespace": msg.namespace if msg.HasField("namespace") else None,
            "version": msg.version, "doc": msg.doc,
            "legacy_namespaces": list(msg.legacy_namespaces), "methods": methods}


def _parameter(msg: pb.ParameterDescription) -> dict[str, Any]:
    data: dict[str, Any] = {"name": msg.name, "required": msg.required}
    if msg.HasField("default_value"):
        data["default"] = from_value(msg.default_value, f"the default of {msg.name!r}")
    if msg.schema_json:
        data["schema"] = json.loads(msg.schema_json)
    return data
