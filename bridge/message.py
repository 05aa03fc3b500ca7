"""The fields of a request message, checked once, where the dispatcher reads them."""

from __future__ import annotations

import functools
from typing import Any

from bridge.exceptions import MalformedMessage

DEFAULT_VERSION = "1.0"


@functools.lru_cache(maxsize=256)  # a handful of distinct versions, parsed on every message
def parse_version(version: str) -> tuple[int, int, int]:
    """``major.minor[.rev]`` as three integers; ``ValueError`` for anything else."""
    parts = str(version).split(".")
    if len(parts) not in (2, 3) or not all(part.isdigit() and part.isascii()
                                           for part in parts):
        raise ValueError(f"version {version!r} is not major.minor[.rev]")
    numbers = [int(p) for p in parts]
    return numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0


def validate_message(message: Any) -> tuple[str, dict[str, Any], Any, Any]:
    """``(method, args, namespace, version)`` of a request; :class:`MalformedMessage` if
    a field has the wrong type or value. A missing version asks for 1.0."""
    if not isinstance(message, dict):
        raise MalformedMessage(f"the message must be a dict, not {type(message).__name__}")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise MalformedMessage(f"the message's 'method' must be a non-empty string, "
                               f"not {_short(method)}")
    args = message.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise MalformedMessage("the message's 'args' must be a dict with str keys, "
                               f"not {type(args).__name__}")
    namespace = message.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise MalformedMessage(f"the message's 'namespace' must be a string, "
                               f"not {_short(namespace)}")
    version = message.get("version", DEFAULT_VERSION)
    if version is not None:
        if not isinstance(version, str):
            raise MalformedMessage(f"the message's 'version' must be a string, "
                                   f"not {_short(version)}")
        try:
            parse_version(version)
        except ValueError as exc:
            raise MalformedMessage(f"the message's {_short_text(str(exc))}") from None
    return method, args, namespace, version


def _short(value: Any) -> str:
    return _short_text(repr(value))


def _short_text(text: str, limit: int = 200) -> str:
    """Text from a request, cut for an error message."""
    return text if len(text) <= limit else text[:limit] + "..."
