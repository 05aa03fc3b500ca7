"""Serializers: hooks that turn application objects into wire primitives and back."""

from __future__ import annotations

import abc
import datetime
import decimal
import uuid
from collections.abc import Mapping
from typing import Any


class Serializer(abc.ABC):
    """Converts entities and the request context to and from primitives."""

    @abc.abstractmethod
    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Turn an argument or result into primitives."""

    @abc.abstractmethod
    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        """Turn primitives back into an argument or result."""

    @abc.abstractmethod
    def serialize_context(self, ctxt: Any) -> dict:
        """Turn a request context into a dict."""

    @abc.abstractmethod
    def deserialize_context(self, ctxt: dict) -> Any:
        """Turn a dict back into a request context."""


class NoOpSerializer(Serializer):
    """Returns everything unchanged (the default on both sides)."""

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def deserialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return entity

    def serialize_context(self, ctxt: Any) -> dict:
        return ctxt

    def deserialize_context(self, ctxt: dict) -> Any:
        return ctxt


def to_primitive(value: Any, _depth: int = 0) -> Any:
    """Best-effort conversion to primitives, like oslo.serialization's ``to_primitive``.

    datetimes become ISO strings, sets and tuples lists, Decimal a float, UUIDs
    strings, mappings dicts, objects with ``to_dict()`` or ``__dict__`` dicts.
    """
    if isinstance(value, (type(None), bool, int, float, str)):
        return value
    if _depth > 32:
        return "?"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return float(value) if isinstance(value, decimal.Decimal) else str(value)
    if isinstance(value, Mapping):
        return {str(k): to_primitive(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_primitive(v, _depth + 1) for v in value]
    if hasattr(value, "to_dict"):
        return to_primitive(value.to_dict(), _depth + 1)
    if hasattr(value, "__dict__"):
        return to_primitive(vars(value), _depth + 1)
    if hasattr(value, "__iter__"):
        return [to_primitive(v, _depth + 1) for v in value]
    return str(value)


class JsonPayloadSerializer(NoOpSerializer):
    """Turns entities into JSON-compatible primitives before they are sent."""

    def serialize_entity(self, ctxt: Any, entity: Any) -> Any:
        return to_primitive(entity)


def context_to_dict(ctxt: Any) -> dict:
    """The context as a dict: a dict as is, an object through its ``to_dict()``."""
    if ctxt is None:
        return {}
    if isinstance(ctxt, dict):
        return ctxt
    if hasattr(ctxt, "to_dict"):
        return ctxt.to_dict()
    raise TypeError(f"the request context must be a dict or have to_dict(), not {type(ctxt)}")
