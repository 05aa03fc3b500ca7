"""Describe: what a server serves, whatever the wire.

A description lists, for each served target, its exchange, topic and server and, for
each endpoint, its namespace, version and the methods a caller may call: each with its
parameters (name, whether required, default, type as JSON Schema when annotated) and
its docstring. A gateway's routed topics are listed as such, with no methods: any
method is forwarded.

Wires carry the plain form of :meth:`Description.as_dict` (JSON-ready dicts and lists),
so drivers never import this module; its layout is documented on :meth:`as_dict`.
Only what the dispatcher's access policy allows is listed, and only what an optional
``allow`` callback (given a :class:`Callee`) accepts: the seam for a per-caller policy.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.message import DEFAULT_VERSION
from bridge.values import is_primitive

if TYPE_CHECKING:
    from bridge.rpc.dispatcher import RPCDispatcher
    from bridge.target import Target

#: A routed topic, exchange or namespace that matches any.
ANY = "*"
#: Nesting of annotations followed into JSON Schema; deeper parts accept anything.
_MAX_SCHEMA_DEPTH = 16


@dataclass(frozen=True)
class Callee:
    """What a caller would call: asked of an ``allow`` callback for each method listed.

    ``method`` is None for a routed topic (a gateway forwards any method).
    """

    exchange: str | None
    topic: str
    server: str | None
    namespace: str | None
    version: str | None
    method: str | None


#: Decides whether a :class:`Callee` is listed (for example: whether this caller may call it).
Allow = Callable[[Callee], bool]


@dataclass(frozen=True)
class Parameter:
    """One keyword argument of a method."""

    name: str
    required: bool
    #: JSON Schema of the annotation; None when the parameter is not annotated.
    schema: dict[str, Any] | None = None
    #: The default when it is a wire value (absent from :meth:`as_dict` otherwise).
    default: Any = None
    has_default: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "required": self.required}
        if self.has_default:
            data["default"] = self.default
        if self.schema is not None:
            data["schema"] = self.schema
        return data


@dataclass(frozen=True)
class Method:
    """One method a caller may call."""

    name: str
    doc: str = ""
    parameters: tuple[Parameter, ...] = ()
    #: JSON Schema of the return annotation; None when not annotated.
    returns: dict[str, Any] | None = None
    #: The method takes ``**kwargs``: arguments beyond ``parameters`` are accepted.
    extra_arguments: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "doc": self.doc,
                                "parameters": [item.as_dict() for item in self.parameters],
                                "extra_arguments": self.extra_arguments}
        if self.returns is not None:
            data["returns"] = self.returns
        return data


@dataclass(frozen=True)
class Endpoint:
    """An endpoint: the methods of one object, under its namespace and version."""

    namespace: str | None
    version: str
    methods: tuple[Method, ...] = ()
    #: Further namespaces the endpoint also answers (``legacy_namespaces``).
    legacy_namespaces: tuple[str, ...] = ()
    doc: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "version": self.version, "doc": self.doc,
                "legacy_namespaces": list(self.legacy_namespaces),
                "methods": [item.as_dict() for item in self.methods]}


@dataclass(frozen=True)
class Served:
    """A served target: the endpoints of one server, or a gateway's routed topic."""

    topic: str
    exchange: str | None = None
    server: str | None = None
    endpoints: tuple[Endpoint, ...] = ()
    #: A gateway forwards it to another wire: any method (no list) in ``route_namespace``.
    routed: bool = False
    #: For a routed topic: the namespace it forwards (``"*"``: any; None: the null one).
    route_namespace: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"topic": self.topic, "exchange": self.exchange,
                                "server": self.server, "routed": self.routed,
                                "endpoints": [item.as_dict() for item in self.endpoints]}
        if self.routed:
            data["route_namespace"] = self.route_namespace
        return data


@dataclass(frozen=True)
class Description:
    """Everything a server (or several sharing a wire address) serves."""

    targets: tuple[Served, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """The plain form wires carry::

            {"targets": [{"topic", "exchange", "server", "routed", ["route_namespace"],
                          "endpoints": [{"namespace", "version", "doc", "legacy_namespaces",
                                         "methods": [{"name", "doc", "extra_arguments",
                                                      ["returns"],
                                                      "parameters": [{"name", "required",
                                                                      ["default"],
                                                                      ["schema"]}]}]}]}]}

        Keys in brackets are present only when known: ``default`` when the parameter
        has a default that is a wire value, ``schema`` and ``returns`` (JSON Schema,
        draft 2020-12) when annotated. ``exchange`` None is the server's default exchange.
        """
        return {"targets": [item.as_dict() for item in self.targets]}


def merge(descriptions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One plain description holding the targets of several (in order)."""
    return {"targets": [target for item in descriptions for target in item.get("targets", ())]}


def as_text(description: dict[str, Any]) -> str:
    """A plain description for people: one block per target, one line per method."""
    lines = []
    for target in description.get("targets", ()):
        exchange = target.get("exchange") or "the default exchange"
        if target.get("routed"):
            namespace = target.get("route_namespace")
            lines.append(f"routed topic {target['topic']!r} (exchange {exchange}, namespace "
                         f"{'any' if namespace == ANY else _namespace(namespace)}): "
                         "forwarded, any method")
            continue
        lines.append(f"topic {target['topic']!r} server {target.get('server')!r} "
                     f"({exchange})")
        for endpoint in target.get("endpoints", ()):
            lines.append(f"  namespace {_namespace(endpoint.get('namespace'))}, version "
                         f"{endpoint.get('version')}")
            for method in endpoint.get("methods", ()):
                lines.append(f"    {_signature(method)}")
                doc = (method.get("doc") or "").strip()
                if doc:
                    lines.append(f"        {doc.splitlines()[0]}")
    return "\n".join(lines) if lines else "(nothing served)"


def _namespace(namespace: str | None) -> str:
    return "(null)" if namespace is None else repr(namespace)


def _type_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array[{_type_text(schema['items'])}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object[{_type_text(schema['additionalProperties'])}]"
    if "enum" in schema:
        return " | ".join(json.dumps(item) for item in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_text(item) for item in schema["anyOf"])
    return str(kind or "any")


def _signature(method: dict[str, Any]) -> str:
    params = []
    for param in method.get("parameters", ()):
        text = param["name"]
        if "schema" in param:
            text += f": {_type_text(param['schema'])}"
        if "default" in param:
            text += f" = {json.dumps(param['default'])}"
        elif not param.get("required"):
            text += " = ..."
        params.append(text)
    if method.get("extra_arguments"):
        params.append("**kwargs")
    returns = f" -> {_type_text(method['returns'])}" if "returns" in method else ""
    return f"{method['name']}({', '.join(params)}){returns}"


# -- endpoints -------------------------------------------------------------------------------

def describe_dispatcher(dispatcher: RPCDispatcher, target: Target,
                        allow: Allow | None = None) -> Served:
    """The target a server of ``dispatcher``'s endpoints serves, as a :class:`Served`."""
    endpoints = []
    for endpoint, endpoint_target in zip(dispatcher.endpoints, _endpoint_targets(dispatcher),
                                         strict=True):
        namespace = endpoint_target.namespace
        version = endpoint_target.version or DEFAULT_VERSION
        methods = []
        for name in _method_names(endpoint, dispatcher):
            callee = Callee(target.exchange, str(target.topic), target.server, namespace,
                            version, name)
            if allow is not None and not allow(callee):
                continue
            methods.append(describe_method(name, getattr(endpoint, name)))
        if methods or allow is None:
            endpoints.append(Endpoint(namespace, version, tuple(methods),
                                      tuple(endpoint_target.legacy_namespaces),
                                      _doc(type(endpoint))))
    return Served(topic=str(target.topic), exchange=target.exchange, server=target.server,
                  endpoints=tuple(endpoints))


def _endpoint_targets(dispatcher: RPCDispatcher) -> list[Target]:
    from bridge.target import Target

    return [getattr(endpoint, "target", None) or Target() for endpoint in dispatcher.endpoints]


def _method_names(endpoint: Any, dispatcher: RPCDispatcher) -> list[str]:
    """The methods of ``endpoint`` that the dispatcher would run, sorted."""
    names = []
    for name in dir(endpoint):
        if name.startswith("__") and name.endswith("__") or name == "target":
            continue
        try:
            value = getattr(endpoint, name)
        except Exception:  # a property that fails is no method
            continue
        if not callable(value) or isinstance(value, type):
            continue
        if dispatcher.access_policy.is_allowed(endpoint, name):
            names.append(name)
    return sorted(names)


def describe_method(name: str, func: Callable[..., Any]) -> Method:
    """The :class:`Method` for an endpoint's bound method (its first argument is the context)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature
        return Method(name, _doc(func), extra_arguments=True)
    hints = _annotations(func)
    params = list(signature.parameters.values())
    if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                     inspect.Parameter.POSITIONAL_OR_KEYWORD):
        params = params[1:]  # the request context
    parameters = []
    extra = False
    for param in params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            continue  # a caller sends keyword arguments only
        has_default = param.default is not inspect.Parameter.empty
        default = param.default if has_default and is_primitive(param.default) else None
        schema = None
        if param.name in hints:
            schema = json_schema(hints[param.name])
            if has_default and is_primitive(param.default):
                schema = {**schema, "default": param.default}
        parameters.append(Parameter(param.name, not has_default, schema, default,
                                    has_default and is_primitive(param.default)))
    returns = json_schema(hints["return"]) if "return" in hints else None
    return Method(name, _doc(func), tuple(parameters), returns, extra)


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    if doc is None or (isinstance(obj, type) and doc == inspect.getdoc(object)):
        return ""
    return doc


def _annotations(func: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``func`` (string annotations evaluated in its module);
    one that cannot be resolved is left out."""
    target = inspect.unwrap(getattr(func, "__func__", func))
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, Mapping):
        return {}
    try:
        return dict(typing.get_type_hints(target))
    except Exception:  # noqa: BLE001 - one bad annotation; resolve the others one by one
        pass
    namespace = getattr(target, "__globals__", {})
    hints = {}
    for name, value in raw.items():
        try:
            # Twice at most: a quoted annotation under ``from __future__ import annotations``.
            for _ in range(2):
                if isinstance(value, str):
                    value = eval(value, dict(namespace))  # noqa: S307 - the server's own code
        except Exception:  # noqa: BLE001 - an unresolvable annotation: no schema
            continue
        if not isinstance(value, str):
            hints[name] = value
    return hints


# -- JSON Schema -----------------------------------------------------------------------------

_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}


def json_schema(annotation: Any, _depth: int = 0) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a type annotation.

    ``int`` is ``integer``, ``float`` ``number``, ``str`` ``string``, ``bool``
    ``boolean``, None ``null``; ``list[X]``, ``tuple[X, ...]`` and ``Sequence[X]`` are
    arrays, ``tuple[X, Y]`` an array of exactly those items; ``dict[str, X]`` and
    ``Mapping[str, X]`` are objects; ``Optional[X]`` and unions are ``anyOf``;
    ``Literal[...]`` and ``Enum`` classes an ``enum``. ``Any`` and anything else accept
    any value (``{}``).
    """
    if _depth > _MAX_SCHEMA_DEPTH:
        return {}
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    if annotation in (list, tuple, Sequence):
        return {"type": "array"}
    if annotation in (dict, Mapping):
        return {"type": "object"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [item.value for item in annotation]
        return {"enum": values} if all(is_primitive(v) for v in values) else {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return _union([json_schema(arg, _depth + 1) for arg in args])
    if origin is typing.Literal:
        return {"enum": list(args)} if all(is_primitive(arg) for arg in args) else {}
    if origin is typing.Annotated:
        return json_schema(args[0], _depth + 1) if args else {}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": json_schema(args[0], _depth + 1)}
        if args == ((),) or not args:
            return {"type": "array", "maxItems": 0} if args else {"type": "array"}
        return {"type": "array", "prefixItems": [json_schema(arg, _depth + 1) for arg in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin in (list, Sequence, set, frozenset) or _is_abc(origin, Sequence):
        schema: dict[str, Any] = {"type": "array"}
        if args:
            schema["items"] = json_schema(args[0], _depth + 1)
        return schema
    if origin in (dict, Mapping) or _is_abc(origin, Mapping):
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = json_schema(args[1], _depth + 1)
        return schema
    if _is_typed_dict(annotation):
        return _typed_dict(annotation, _depth)
    return {}


def _is_abc(origin: Any, abc_class: type) -> bool:
    return isinstance(origin, type) and issubclass(origin, abc_class) and origin is not str


def _union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not schema for schema in schemas):
        return {}  # one member accepts anything
    simple = [schema["type"] for schema in schemas if list(schema) == ["type"]]
    if len(simple) == len(schemas) and all(isinstance(item, str) for item in simple):
        return {"type": list(dict.fromkeys(simple))}
    return {"anyOf": schemas}


def _is_typed_dict(annotation: Any) -> bool:
    return (isinstance(annotation, type) and issubclass(annotation, dict)
            and hasattr(annotation, "__required_keys__"))


def _typed_dict(annotation: Any, depth: int) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(annotation)
    except Exception:  # noqa: BLE001 - unresolvable: an object of anything
        return {"type": "object"}
    return {"type": "object",
            "properties": {name: json_schema(hint, depth + 1) for name, hint in hints.items()},
            "required": sorted(annotation.__required_keys__)}


# -- the policy ------------------------------------------------------------------------------

def policy_filter(guard: Any, credentials: Any, default_exchange: str) -> Allow | None:
    """The ``allow`` callback of a :class:`bridge.auth.Guard`'s policy for the identity
    ``credentials`` establish: a method is listed when the policy would let that caller
    call it; a routed topic when it would let the caller call any method there (asked as
    the method ``*``). None when the guard has no policy (everything is allowed);
    credentials that do not authenticate list nothing."""
    policy = guard.policy
    if policy is None:
        return None
    from bridge.auth.policy import Request

    try:
        identity = guard.authenticate(credentials)
    except Exception:  # noqa: BLE001 - credentials that do not authenticate: see nothing
        return lambda callee: False
    wire = credentials.wire if credentials is not None else "unknown"

    def allow(callee: Callee) -> bool:
        exchange = callee.exchange if callee.exchange not in (None, ANY) else default_exchange
        request = Request(wire=wire, kind="call", exchange=str(exchange),
                          topic=str(callee.topic), server=str(callee.server or ""),
                          namespace=str(callee.namespace or ""),
                          method=str(callee.method or ANY))
        return bool(policy.decide(identity, request).allowed)

    return allow


# -- routes ----------------------------------------------------------------------------------

def describe_routes(routes: Iterable[Any], allow: Allow | None = None) -> list[Served]:
    """The routed topics of a gateway's routes (``topic``, ``exchange``, ``namespace``)."""
    served = []
    for route in routes:
        callee = Callee(route.exchange, route.topic, None, route.namespace, None, None)
        if allow is not None and not allow(callee):
            continue
        served.append(Served(topic=route.topic, exchange=route.exchange, routed=True,
                             route_namespace=route.namespace))
    return served


__all__ = ["ANY", "Allow", "Callee", "Description", "Endpoint", "Method", "Parameter",
           "Served", "as_text", "describe_dispatcher", "describe_method", "describe_routes",
           "json_schema", "merge", "policy_filter"]
