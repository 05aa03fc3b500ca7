"""The OpenAPI 3.1 document of an HTTP server, generated from its description.

One operation per served method on its shorthand route (``POST /v1/{topic}/{method}``,
the arguments as the body, a JSON Schema built from the method's parameters), a
routed topic as ``POST /v1/{topic}/{method}`` with any method, the generic
``POST /v1/call`` and ``POST /v1/cast`` (their bodies one of the served calls, or any
call to a routed topic), and ``GET /v1/describe`` and ``GET /v1/health``. Errors are
the ``Status`` schema (``google.rpc.Status`` with ``bridge.v1.Failure`` details).
"""

from __future__ import annotations

import json
import re
from typing import Any

import bridge

_VERSION_OF_DEFAULT = "1.0"

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "google.rpc.Status: the error of a request.",
    "properties": {
        "code": {"type": "integer", "description": "google.rpc.Code"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"$ref": "#/components/schemas/Failure"}},
    },
    "required": ["code", "message", "details"],
}
FAILURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "bridge.v1.Failure in the proto3 JSON mapping.",
    "properties": {
        "@type": {"const": "type.googleapis.com/bridge.v1.Failure"},
        "reason": {"type": "string"},
        "module": {"type": "string"},
        "className": {"type": "string"},
        "message": {"type": "string"},
        "args": {"type": "array"},
        "kwargs": {"type": "object"},
        "traceback": {"type": "array", "items": {"type": "string"}},
        "limitName": {"type": "string"},
        "limitValue": {"type": "string"},
    },
    "required": ["@type", "reason"],
}
_ERROR = {"description": "The request failed: google.rpc.Status (docs/http.md).",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def _clean(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A parameter or result schema, without a default standard JSON cannot write."""
    if schema is None:
        return {}
    if "default" in schema and not _jsonable(schema["default"]):
        return {key: value for key, value in schema.items() if key != "default"}
    return schema


def _arguments_schema(method: dict[str, Any]) -> dict[str, Any]:
    properties = {param["name"]: _clean(param.get("schema")) for param in method["parameters"]}
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": bool(method.get("extra_arguments"))}
    required = [param["name"] for param in method["parameters"] if param["required"]]
    if required:
        schema["required"] = required
    return schema


def _needs_version(version: str) -> bool:
    """A call without a version asks for 1.0: other majors need the version sent."""
    return version.split(".")[0] != _VERSION_OF_DEFAULT.split(".")[0]


def _operation_id(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", ".".join(str(part) for part in parts if part))


def _result_response(method: dict[str, Any]) -> dict[str, Any]:
    return {"description": "What the method returned.",
            "content": {"application/json": {"schema": {
                "type": "object", "properties": {"result": _clean(method.get("returns"))},
                "required": ["result"], "additionalProperties": False}}}}


def _served_methods(description: dict[str, Any]) -> list[tuple[dict, dict, dict]]:
    """(target, endpoint, method) of every method served (not routed)."""
    return [(target, endpoint, method)
            for target in description.get("targets", ()) if not target.get("routed")
            for endpoint in target.get("endpoints", ())
            for method in endpoint.get("methods", ())]


def _shorthand(target: dict, group: list[tuple[dict, dict]]) -> dict[str, Any]:
    """The operation of ``POST /v1/{topic}/{method}`` for the endpoints that have it."""
    parameters: list[dict[str, Any]] = []
    namespaces = [endpoint["namespace"] for endpoint, _ in group]
    named = [ns for ns in namespaces if ns is not None]
    if named:
        parameters.append({"name": "namespace", "in": "query", "required": len(named) == len(
            namespaces), "schema": {"type": "string", "enum": sorted(set(named))},
            "description": "The endpoint's namespace (absent: the null namespace)."})
    versions = sorted({endpoint["version"] for endpoint, _ in group})
    parameters.append({"name": "version", "in": "query",
                       "required": all(_needs_version(v) for v in versions),
                       "schema": {"type": "string", "enum": versions},
                       "description": "The version asked for (absent: 1.0)."})
    if target.get("server"):
        parameters.append({"name": "server", "in": "query", "required": False,
                           "schema": {"type": "string", "enum": [target["server"]]},
                           "description": "Only this server of the topic."})
    schemas = [_arguments_schema(method) for _, method in group]
    method = group[0][1]
    doc = method.get("doc") or ""
    return {"operationId": _operation_id(target["topic"], *namespaces[:1], method["name"]),
            "summary": doc.splitlines()[0] if doc else method["name"],
            "description": doc, "tags": [target["topic"]], "parameters": parameters,
            "requestBody": {"required": any("required" in schema for schema in schemas),
                            "content": {"application/json": {
                                "schema": schemas[0] if len(schemas) == 1
                                else {"anyOf": schemas}}}},
            "responses": {"200": _result_response(method), "default": _ERROR}}


def _call_body(target: dict, endpoint: dict | None, method: dict | None) -> dict[str, Any]:
    """The ``/v1/call`` body of one served method (or of any method of a routed topic)."""
    target_schema: dict[str, Any] = {
        "type": "object", "properties": {
            "topic": ({"type": "string", "minLength": 1} if target["topic"] == "*"
                      else {"const": target["topic"]}),
            "fanout": {"const": False}},
        "required": ["topic"], "additionalProperties": False}
    if target.get("server"):
        target_schema["properties"]["server"] = {"enum": [target["server"], None]}
    if target.get("exchange") and target["exchange"] != "*":
        target_schema["properties"]["exchange"] = {"enum": [target["exchange"], None]}
    properties: dict[str, Any] = {"target": target_schema,
                                  "context": {"type": "object"}}
    required = ["target", "method"]
    if method is None or endpoint is None:
        properties.update(method={"type": "string", "minLength": 1},
                          args={"type": "object"}, namespace={"type": ["string", "null"]},
                          version={"type": "string", "pattern": r"^\d+\.\d+(\.\d+)?$"})
    else:
        properties["method"] = {"const": method["name"]}
        properties["args"] = _arguments_schema(method)
        if "required" in properties["args"]:
            required.append("args")
        if endpoint["namespace"] is None:
            properties["namespace"] = {"type": "null"}
        else:
            properties["namespace"] = {"const": endpoint["namespace"]}
            required.append("namespace")
        properties["version"] = {"enum": [endpoint["version"]]}
        if _needs_version(endpoint["version"]):
            required.append("version")
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _generic(description: dict[str, Any], cast: bool) -> dict[str, Any]:
    bodies = [_call_body(target, endpoint, method)
              for target, endpoint, method in _served_methods(description)]
    bodies += [_call_body(target, None, None) for target in description.get("targets", ())
               if target.get("routed") and target["topic"] != "*"]
    if any(target.get("routed") and target["topic"] == "*"
           for target in description.get("targets", ())):
        bodies.append(_call_body({"topic": "*"}, None, None))
    body = {"anyOf": bodies} if bodies else {"not": {}}
    if cast:
        ok = {"202": {"description": "Accepted: the method will run.",
                      "content": {"application/json": {"schema": {
                          "type": "object", "additionalProperties": False}}}}}
    else:
        ok = {"200": {"description": "What the method returned.",
                      "content": {"application/json": {"schema": {
                          "type": "object", "properties": {"result": {}},
                          "required": ["result"], "additionalProperties": False}}}}}
    what = "Send a method to run (no result)" if cast else "Call a method"
    return {"operationId": "cast" if cast else "call", "summary": what,
            "description": f"{what} by target, namespace, version and method.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {**ok, "default": _ERROR}}


def openapi_document(description: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server that serves ``description``; its paths are
    relative to where the document is served (no ``servers``)."""
    paths: dict[str, Any] = {}
    groups: dict[tuple[str, str], tuple[dict, list[tuple[dict, dict]]]] = {}
    for target, endpoint, method in _served_methods(description):
        key = (target["topic"], method["name"])
        groups.setdefault(key, (target, []))[1].append((endpoint, method))
    for (topic, name), (target, group) in groups.items():
        paths[f"/v1/{_segment(topic)}/{_segment(name)}"] = {"post": _shorthand(target, group)}
    for target in description.get("targets", ()):
        if target.get("routed") and target["topic"] != "*":
            paths[f"/v1/{_segment(target['topic'])}/{{method}}"] = {"post": {
                "operationId": _operation_id("routed", target["topic"]),
                "summary": f"Any method of the routed topic {target['topic']!r}",
                "tags": [target["topic"]],
                "parameters": [{"name": "method", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1}}],
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"type": "object"}}}},
                "responses": {"200": _result_response({}), "default": _ERROR}}}
    paths["/v1/call"] = {"post": _generic(description, cast=False)}
    paths["/v1/cast"] = {"post": _generic(description, cast=True)}
    paths["/v1/describe"] = {"get": {
        "operationId": "describe", "summary": "What this server serves",
        "responses": {"200": {"description": "The description (docs/http.md).", "content": {
            "application/json": {"schema": {"type": "object", "required": ["targets"],
                                            "properties": {"targets": {"type": "array"}}}}}},
                      "default": _ERROR}}}
    paths["/v1/health"] = {"get": {
        "operationId": "health", "summary": "Whether this server serves",
        "responses": {code: {"description": text, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"status": {"enum": ["SERVING", "NOT_SERVING"]}},
            "required": ["status"]}}}}
            for code, text in (("200", "Serving."), ("503", "Not serving."))}}}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "rpc-bridge", "version": bridge.__version__,
                 "description": "The methods this rpc-bridge server serves, over HTTP/JSON "
                                "(docs/http.md)."},
        "paths": paths,
        "components": {"schemas": {"Status": STATUS_SCHEMA, "Failure": FAILURE_SCHEMA}},
    }
    return document


def _segment(text: str) -> str:
    """A path segment: percent-encoded where a path cannot hold the character."""
    from urllib.parse import quote

    return quote(text, safe="")
