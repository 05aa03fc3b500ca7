"""Python primitives <-> ``bridge.v1.Value``: the exact, typed value of the gRPC wire.

Integers stay integers and floats stay floats. An integer outside int64 crosses
exactly as ``big_integer_value`` (its decimal text), up to
:data:`MAX_INTEGER_DIGITS` digits. Nesting deeper than :data:`bridge.values.MAX_DEPTH`
is refused both ways.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from google.protobuf.unknown_fields import UnknownFieldSet

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.values import MAX_DEPTH, InvalidValueError, NotPrimitiveError, path_text

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The most digits a ``big_integer_value`` may have, both ways: Python's default limit of
#: int/str conversion (``sys.get_int_max_str_digits()``).
MAX_INTEGER_DIGITS = 4300
_BIG_INTEGER = re.compile(r"-?[0-9]+\Z")
#: The kinds whose field holds the Python value as it is.
_SCALAR_KINDS = frozenset({"string_value", "integer_value", "double_value", "bool_value"})


def fill_value(msg: pb.Value, obj: Any, path: Any = "value", depth: int = 0) -> None:
    """Write ``obj`` into the empty ``Value`` message ``msg``.

    Raise :class:`~bridge.values.NotPrimitiveError` naming ``path`` (a str, or a lazy
    path: see :func:`bridge.values.path_text`) when ``obj`` is not made of None, bool,
    int, float, str, list/tuple and dict with str keys.
    """
    kind = type(obj)
    if kind is str:
        msg.string_value = obj
    elif kind is int:
        if INT64_MIN <= obj <= INT64_MAX:
            msg.integer_value = obj
        else:
            msg.big_integer_value = _big_integer_text(obj, path)
    elif kind is float:
        msg.double_value = obj
    elif obj is None:
        msg.null_value = pb.NULL_VALUE
    elif kind is bool:
        msg.bool_value = obj
    elif depth >= MAX_DEPTH and isinstance(obj, (list, tuple, Mapping)):
        raise NotPrimitiveError(path_text(path), obj, f"nests deeper than {MAX_DEPTH} levels")
    elif isinstance(obj, (list, tuple)):
        values = msg.list_value.values
        if not obj:
            msg.list_value.SetInParent()
        for index, item in enumerate(obj):
            if type(item) is str:  # the commonest leaf, without a call
                values.add().string_value = item
            else:
                fill_value(values.add(), item, (path, index), depth + 1)
    elif isinstance(obj, Mapping):
        fields = msg.map_value.fields
        if not obj:
            msg.map_value.SetInParent()
        for key, item in obj.items():
            if type(key) is not str:
                raise NotPrimitiveError(f"{path_text(path)} key {key!r}", key,
                                        f"is a {type(key).__name__}; dict keys must be str")
            kind = type(item)
            if kind is str:  # the commonest leaves, without a call
                fields[key].string_value = item
            elif kind is float:
                fields[key].double_value = item
            else:
                fill_value(fields[key], item, (path, key), depth + 1)
    elif isinstance(obj, bool):
        msg.bool_value = bool(obj)
    elif isinstance(obj, int):
        fill_value(msg, int(obj), path, depth)
    elif isinstance(obj, float):
        msg.double_value = float(obj)
    elif isinstance(obj, str):
        msg.string_value = str(obj)
    else:
        raise NotPrimitiveError(path_text(path), obj)


def _big_integer_text(obj: int, path: Any) -> str:
    try:
        text = str(obj)
    except ValueError:  # over the interpreter's own limit
        text = ""
    if not text or len(text) - (text[0] == "-") > MAX_INTEGER_DIGITS:
        raise NotPrimitiveError(path_text(path), obj, f"is an integer of more than "
                                f"{MAX_INTEGER_DIGITS} digits")
    return text


def to_value(obj: Any, path: str = "value") -> pb.Value:
    """A new ``Value`` holding ``obj``."""
    msg = pb.Value()
    fill_value(msg, obj, path)
    return msg


def fill_map(fields: Any, mapping: Mapping[str, Any], path: str) -> None:
    """Write a dict with str keys into a ``map<string, Value>`` field."""
    for key, item in mapping.items():
        if type(key) is not str:
            raise NotPrimitiveError(f"{path} key {key!r}", key,
                                    f"is a {type(key).__name__}; dict keys must be str")
        fill_value(fields[key], item, (path, key))


def from_value(msg: pb.Value, path: Any = "value", depth: int = 0) -> Any:
    """The Python value of ``msg``; a ``Value`` with no kind set is None.

    A ``Value`` with no kind this reader knows but with fields it does not (a kind added
    to the protocol after it was built) is refused, never read as None.

    Raise :class:`InvalidValueError` for a malformed ``big_integer_value`` (or one of more
    than :data:`MAX_INTEGER_DIGITS` digits) or nesting deeper than
    :data:`~bridge.values.MAX_DEPTH`.
    """
    kind = msg.WhichOneof("kind")
    if kind == "string_value":
        return msg.string_value
    if kind == "integer_value":
        return msg.integer_value
    if kind == "double_value":
        return msg.double_value
    if kind == "bool_value":
        return msg.bool_value
    if kind == "null_value":
        return None
    if kind is None:
        if UnknownFieldSet(msg):  # a kind added by a newer writer: not a null
            numbers = sorted({field.field_number for field in UnknownFieldSet(msg)})
            raise InvalidValueError(path, f"has a kind this reader does not know (field "
                                    f"{', '.join(map(str, numbers))})")
        return None
    if depth >= MAX_DEPTH:
        raise InvalidValueError(path, f"nests deeper than {MAX_DEPTH} levels")
    if kind == "list_value":
        items = []
        for index, item in enumerate(msg.list_value.values):
            kind = item.WhichOneof("kind")
            items.append(getattr(item, kind) if kind in _SCALAR_KINDS
                         else from_value(item, (path, index), depth + 1))
        return items
    if kind == "map_value":
        return _from_fields(msg.map_value.fields, path, depth + 1)
    if kind == "big_integer_value":
        return _big_integer(msg.big_integer_value, path)
    raise InvalidValueError(path, f"has an unknown kind {kind!r}")  # a newer writer


def _big_integer(text: str, path: Any) -> int:
    if not _BIG_INTEGER.match(text):
        raise InvalidValueError(path, f"has big_integer_value {text[:40]!r}, which is not "
                                "a decimal integer (optional '-' then digits)")
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INTEGER_DIGITS:
        raise InvalidValueError(path, f"has a big_integer_value of {digits} digits, over "
                                f"the limit of {MAX_INTEGER_DIGITS}")
    try:
        return int(text)
    except ValueError as exc:  # a lower limit set in this interpreter
        raise InvalidValueError(path, f"has a big_integer_value Python refuses: {exc}") from None


def from_map(fields: Any, path: str) -> dict[str, Any]:
    """The dict of a ``map<string, Value>`` field."""
    return _from_fields(fields, path, 0)


def _from_fields(fields: Any, path: Any, depth: int) -> dict[str, Any]:
    # Scalar leaves are read in the loop, without a call each; keys then lookups,
    # because a protobuf map's items() goes through a Python-level ItemsView.
    result = {}
    for key in fields:
        item = fields[key]
        kind = item.WhichOneof("kind")
        result[key] = (getattr(item, kind) if kind in _SCALAR_KINDS
                       else from_value(item, (path, key), depth))
    return result


def decode_error_text(exc: Exception) -> str:
    """What went wrong decoding a message: protobuf's decoder refuses nesting past its
    own limit before :func:`from_value` sees it, and says so in its own terms."""
    text = str(exc)
    if "MaxDepth" in text or "recursion" in text.lower():
        return f"a value nests deeper than {MAX_DEPTH} levels"
    return text
