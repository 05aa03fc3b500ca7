"""Gateway routes: which targets go to which upstream URL (docs/gateway.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.target import Target

ANY = "*"


@dataclass(frozen=True)
class Route:
    """Forward messages for ``topic`` (in ``exchange``, for ``namespace``) to ``url``.

    ``topic``, ``exchange`` and ``namespace`` may be ``"*"`` (any). ``exchange=None``
    and ``namespace=None`` match the default exchange and the null namespace only.
    ``call_monitor_timeout`` asks the upstream server for heartbeats on forwarded calls.
    ``upstream_topic`` and ``upstream_exchange`` rename the target on its way upstream
    (by default it keeps its own).
    """

    topic: str
    url: str
    exchange: str | None = ANY
    namespace: str | None = ANY
    call_monitor_timeout: float | None = None
    upstream_topic: str | None = None
    upstream_exchange: str | None = None

    def upstream_target(self, target: Target) -> Target:
        """Where a matching ``target`` goes upstream."""
        overrides: dict[str, Any] = {}
        if self.upstream_topic:
            overrides["topic"] = self.upstream_topic
        if self.upstream_exchange:
            overrides["exchange"] = self.upstream_exchange
        return target(**overrides) if overrides else target

    def matches(self, target: Target, namespace: str | None) -> bool:
        return (self.topic in (ANY, target.topic)
                and (self.exchange == ANY or self.exchange == target.exchange)
                and (self.namespace == ANY or self.namespace == namespace))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        """A route from a config table: ``topic``, ``url`` and the optional fields."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown route keys {sorted(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        if not data.get("topic") or not data.get("url"):
            raise ValueError(f"a route needs a topic and a url, got {data!r}")
        return cls(**data)


def routes_from_config(items: Iterable[dict[str, Any]]) -> list[Route]:
    """Routes from config tables (``[[gateway.routes]]`` in TOML)."""
    return [Route.from_dict(dict(item)) for item in items]
