"""The test endpoint of oslo.messaging's classic server example."""

from __future__ import annotations

from typing import Any


class TestEndpoint:
    """``test(ctx, arg)`` returns ``arg``."""

    __test__ = False  # not a pytest test class

    def test(self, ctx: dict, arg: Any) -> Any:
        return arg
