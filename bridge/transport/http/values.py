"""JSON text <-> Python values on the HTTP wire: the same values as on gRPC.

* An integer (a number without fraction or exponent) is an ``int`` of any size,
  exactly (no rounding past 2**53): the standard library's parser reads it, since
  faster parsers round integers past 64 bits to floats.
* A number with a fraction or an exponent is a ``float`` (``1.0`` stays a float);
  one past the range of a double reads as an infinity, as the nearest double.
* JSON has no NaN or infinity: requests may write them as the bare words ``NaN``,
  ``Infinity`` and ``-Infinity``, and replies holding them write those words (as
  Python's ``json`` does). Strict JSON parsers (JavaScript's ``JSON.parse``) refuse
  them: such a value has no standard JSON form.
* Strings are Unicode: a lone surrogate (``"\\ud800"``), which no UTF-8 text can
  hold and gRPC refuses too, is refused.

Replies are written by orjson (fast), except the rare ones it cannot write exactly
(an integer past 64 bits, NaN or an infinity, a lone surrogate), which the standard
library writes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from bridge.values import MAX_DEPTH, InvalidValueError, NotPrimitiveError, check_primitive

_decoder = json.JSONDecoder()


class JSONValueError(ValueError):
    """A request body that is not JSON the bridge takes; the message says why."""


def loads(body: bytes | str, what: str = "the request body") -> Any:
    """The value of JSON text ``body``; :class:`JSONValueError` saying why when it is not
    JSON (or nests deeper than :data:`~bridge.values.MAX_DEPTH`)."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        value = _decoder.decode(text)
    except UnicodeDecodeError as exc:
        raise JSONValueError(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise JSONValueError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise JSONValueError(f"{what} is not valid JSON: {exc}") from None
    if "\\u" in text or "\\U" in text:  # only an escape can make a lone surrogate
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JSONValueError(f"{what} holds a lone surrogate (a \\ud800-\\udfff escape "
                                 "not in a pair), which is no Unicode text") from None
    return value


def check_depth(value: Any, path: str) -> None:
    """Refuse a value nesting deeper than :data:`~bridge.values.MAX_DEPTH` (as gRPC does)."""
    if isinstance(value, (dict, list)):
        try:
            check_primitive(value, path)
        except NotPrimitiveError as exc:
            raise InvalidValueError(exc.path, str(exc)[len(exc.path) + 1:]) from None


def dumps(value: Any) -> bytes:
    """UTF-8 JSON text of ``value`` (wire primitives), exact: see the module's rules.

    Raises ``ValueError`` or ``TypeError`` for a value JSON cannot hold.
    """
    try:
        data = orjson.dumps(value)
    except TypeError:  # an integer past 64 bits, or a lone surrogate
        return _dumps_slow(value)
    if b"null" in data and _has_nonfinite(value):  # orjson writes NaN as null
        return _dumps_slow(value)
    return data


def _dumps_slow(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, as JSON allows
        return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("ascii")


def _has_nonfinite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(_has_nonfinite(item, depth + 1) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(item, depth + 1) for item in value)
    return False
