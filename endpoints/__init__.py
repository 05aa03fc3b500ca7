"""Endpoints shipped with rpc-bridge and its container image.

``default_endpoints(server)`` is what ``bridge serve`` serves when told nothing else:
echo, test and counter. The control endpoint, which can stop the server, is served only
when named (``--endpoint endpoints.control:ServerControlEndpoint``; see docs/security.md).
"""

from __future__ import annotations

from typing import Any

from endpoints.control import ServerControlEndpoint
from endpoints.counter import CounterEndpoint
from endpoints.echo import EchoEndpoint
from endpoints.test import TestEndpoint


def default_endpoints(server: Any = None) -> list[Any]:
    """The echo, test and counter endpoints, in that order (``server`` is not used: the
    control endpoint, which would take it, is not among them)."""
    return [EchoEndpoint(), TestEndpoint(), CounterEndpoint()]


__all__ = ["CounterEndpoint", "EchoEndpoint", "ServerControlEndpoint", "TestEndpoint",
           "default_endpoints"]
