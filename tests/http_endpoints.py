"""Endpoints served in the HTTP tests (bridge serve --endpoint http_endpoints): annotated,
and never a server error for arguments that match their schemas."""

from __future__ import annotations

from typing import Any, Literal

import bridge


class Calc:
    """Integer arithmetic, exact at any size."""

    target = bridge.Target(namespace="calc", version="1.2")

    def add(self, ctx: dict, a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    def mul(self, ctx: dict, a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b


class Text:
    """Strings and values in the null namespace."""

    def greet(self, ctx: dict, name: str, punctuation: str = "!") -> str:
        """Say hello to ``name``."""
        return f"Hello, {name}{punctuation}"

    def echo(self, ctx: dict, value: Any = None) -> Any:
        """Return ``value`` unchanged."""
        return value

    def join(self, ctx: dict, words: list[str], sep: str = " ") -> str:
        """Join words."""
        return sep.join(words)

    @bridge.expected_exceptions(KeyError)
    def lookup(self, ctx: dict, key: Literal["red", "blue"]) -> str:
        """The colour named ``key``: red or blue (any other key: KeyError)."""
        colours = {"red": "#ff0000", "blue": "#0000ff"}
        if key not in colours:
            raise KeyError(key)
        return colours[key]


ENDPOINTS = [Calc(), Text()]
