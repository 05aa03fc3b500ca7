"""The Target: where a message goes, and what an endpoint implements."""

from __future__ import annotations

from typing import Any

_FIELDS = ("exchange", "topic", "namespace", "version", "server", "fanout", "legacy_namespaces")


class Target:
    """Identifies a destination (client side) or an interface (endpoint side).

    Same attributes and meaning as ``oslo_messaging.Target``:

    * ``exchange``: scopes topics; None means the transport's control exchange.
    * ``topic``: the name of the interface set; servers listen on it, clients send to it.
    * ``namespace``: an RPC interface inside a topic; None is the null namespace.
    * ``version``: ``"major.minor[.rev]"``: implemented (endpoint) or required (client).
    * ``server``: a server's own name; a client that sets it sends to that server only.
    * ``fanout``: a client sets it to cast to every server of the topic.
    * ``legacy_namespaces``: further namespaces an endpoint accepts.

    Calling a target copies it with overrides. Unlike oslo.messaging, the copy keeps
    ``legacy_namespaces`` unless it is overridden too.
    """

    def __init__(
        self,
        exchange: str | None = None,
        topic: str | None = None,
        namespace: str | None = None,
        version: str | None = None,
        server: str | None = None,
        fanout: bool | None = None,
        legacy_namespaces: list[str] | None = None,
    ) -> None:
        self.exchange = exchange
        self.topic = topic
        self.namespace = namespace
        self.version = version
        self.server = server
        self.fanout = fanout
        self.legacy_namespaces = list(legacy_namespaces) if legacy_namespaces else []

    @property
    def accepted_namespaces(self) -> list[str | None]:
        """The namespace followed by the legacy namespaces."""
        return [self.namespace] + self.legacy_namespaces

    def __call__(self, **overrides: Any) -> Target:
        unknown = set(overrides) - set(_FIELDS)
        if unknown:
            raise TypeError(f"Target() got unexpected keyword arguments {sorted(unknown)}")
        kwargs = {name: getattr(self, name) for name in _FIELDS}
        kwargs.update(overrides)
        return Target(**kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and vars(self) == vars(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        attrs = [f"{name}={getattr(self, name)!r}" for name in _FIELDS if getattr(self, name)]
        return f"<Target {', '.join(attrs)}>"
