"""What may cross the wire: primitives, checked with the path of the first offender."""

from __future__ import annotations

from typing import Any

_SCALARS = (type(None), bool, int, float, str)
_SCALAR_TYPES = frozenset(_SCALARS)
#: The most levels of lists and dicts one value (an argument, a context entry, a result, an
#: exception argument) may nest, on every wire and both ways: protobuf's decoder refuses
#: a gRPC message whose Values nest dicts deeper than this (each level of a map costs it
#: three messages, within its limit of 100).
MAX_DEPTH = 32


class NotPrimitiveError(TypeError):
    """A value that no wire can carry; the message names its type and where it sits."""

    def __init__(self, path: str, value: Any, reason: str | None = None) -> None:
        self.path = path
        self.type_name = type(value).__name__
        detail = reason or (
            f"is a {type(value).__module__}.{type(value).__qualname__}, which cannot cross the "
            "wire; use None, bool, int, float, str, list, tuple or dict with str keys "
            "(or a serializer that turns it into those)")
        super().__init__(f"{path} {detail}")


class InvalidValueError(ValueError):
    """A value received from a wire that has no Python meaning; names where it sits."""

    def __init__(self, path: Any, reason: str) -> None:
        path = path_text(path)
        self.path = path
        super().__init__(f"{path} {reason}")


def is_primitive(value: Any) -> bool:
    """True when ``value`` is made only of wire primitives."""
    try:
        check_primitive(value, "value")
    except NotPrimitiveError:
        return False
    return True


def path_text(path: Any) -> str:
    """The text of a path built lazily: a str, or ``(parent path, index or key)``.

    Walkers of nested values pass ``(path, key)`` down instead of formatting
    ``f"{path}[{key!r}]"`` for every element: the text is only needed for an error.
    """
    parts = []
    while isinstance(path, tuple):
        path, key = path
        parts.append(f"[{key!r}]")
    return str(path) + "".join(reversed(parts))


def check_primitive(value: Any, path: Any, _depth: int = 0) -> None:
    """Raise :class:`NotPrimitiveError` naming ``path`` if ``value`` is not a primitive tree.

    ``path`` is a str, or a lazy path (see :func:`path_text`).
    """
    kind = type(value)
    if kind in _SCALAR_TYPES or isinstance(value, _SCALARS):
        return
    if _depth >= MAX_DEPTH:
        raise NotPrimitiveError(path_text(path), value, f"nests deeper than {MAX_DEPTH} levels")
    # Scalar elements are checked in the loops: no call per leaf.
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if type(item) not in _SCALAR_TYPES:
                check_primitive(item, (path, index), _depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise NotPrimitiveError(
                    f"{path_text(path)} key {key!r}", key,
                    f"is a {type(key).__name__}; dict keys must be str")
            if type(item) not in _SCALAR_TYPES:
                check_primitive(item, (path, key), _depth + 1)
        return
    raise NotPrimitiveError(path_text(path), value)


def check_arguments(args: dict[str, Any]) -> None:
    """Check every keyword argument of a call; the path names the argument."""
    for name, value in args.items():
        check_primitive(value, f"argument {name!r}")


def copy_primitive(value: Any) -> Any:
    """Copy a checked primitive tree the way a wire would: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [copy_primitive(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_primitive(item) for key, item in value.items()}
    return value
