"""One parser for every wire's options: a conf group, then the URL's query.

A driver declares its options as a frozen dataclass (``Capabilities.options_type``):
each field's type (``bool``, ``int``, ``float``, ``str``, or ``X | None``) says how a
text value is read, its default is the option's default, and its metadata may add

* ``"minimum"``: the smallest value accepted (numbers);
* ``"choices"``: the values accepted;
* ``"supported": False``: accepted for compatibility (an oslo.messaging option that
  changes nothing here); a warning is logged when a URL sets it to something else.

Booleans are strict: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` in any case (the
spellings oslo.config accepts); anything else is an error naming the option and
those values. An unknown name is an error listing the known ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from collections.abc import Mapping
from typing import Any

from bridge.conf import parse_bool
from bridge.exceptions import InvalidTransportURL

LOG = logging.getLogger(__name__)

def _kind(annotation: Any) -> tuple[type, bool]:
    """(base type, optional) of a field annotation such as ``int`` or ``str | None``."""
    if isinstance(annotation, str):
        optional = annotation.replace(" ", "").endswith("|None")
        name = annotation.split("|")[0].strip()
        return {"bool": bool, "int": int, "float": float, "str": str}[name], optional
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if args:
        return args[0], True
    return annotation, False


def convert(field: dataclasses.Field, raw: Any) -> Any:
    """The value of option ``field`` given as ``raw`` (text, or a typed config value)."""
    kind, optional = _kind(field.type)
    name = field.name
    if raw is None or (optional and isinstance(raw, str) and raw.strip() == ""):
        if optional:
            return None
        raise ValueError(f"{name} needs a value")
    if kind is bool:
        value: Any = parse_bool(raw, name)
    elif kind is int:
        if isinstance(raw, bool) or isinstance(raw, float):
            raise ValueError(f"{name} must be an integer, not {raw!r}")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    elif kind is float:
        if isinstance(raw, bool):
            raise ValueError(f"{name} must be a number, not {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, not {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {raw!r}")
    else:
        value = str(raw)
    minimum = field.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {raw!r}")
    choices = field.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, not {raw!r}")
    return value


def parse_options(options_type: type, group: Mapping[str, Any], url: Any,
                  group_name: str = "") -> Any:
    """An ``options_type`` from the conf ``group``, overridden by ``url``'s query.

    Raise :class:`InvalidTransportURL` naming the option and where it came from.
    """
    fields = {field.name: field for field in dataclasses.fields(options_type)}
    hints = typing.get_type_hints(options_type)
    for field in fields.values():
        field.type = hints.get(field.name, field.type)
    label = getattr(url, "driver_name", "") or "transport"
    values: dict[str, Any] = {}
    query = getattr(url, "query", {}) or {}
    for source, items in ((f"[{group_name or label}] option", group),
                          ("URL option", query)):
        for name, raw in items.items():
            field = fields.get(name)
            if field is None:
                raise InvalidTransportURL(
                    str(url), f"unknown {label} {source} {name!r} in {url}; known: "
                    f"{', '.join(sorted(fields))}")
            if raw is None:
                continue
            try:
                value = convert(field, raw)
            except ValueError as exc:
                raise InvalidTransportURL(str(url), f"bad {label} {source} in {url}: "
                                          f"{exc}") from None
            if (field.metadata.get("supported", True) is False and source == "URL option"
                    and value != field.default):
                LOG.warning("Option %s is accepted for compatibility but has no effect "
                            "in rpc-bridge", name)
            values[name] = value
    try:
        return options_type(**values)  # its __post_init__ checks options together
    except ValueError as exc:
        raise InvalidTransportURL(str(url), f"bad {label} options in {url}: {exc}") from None


def describe(options_type: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of each option, for documentation and ``--help``."""
    hints = typing.get_type_hints(options_type)
    rows = []
    for field in dataclasses.fields(options_type):
        kind, optional = _kind(hints.get(field.name, field.type))
        rows.append((field.name, kind.__name__ + (" or empty" if optional else ""),
                     field.default, field.metadata.get("help", "")))
    return rows
