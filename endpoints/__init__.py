"""Endpoints shipped with rpc-bridge and its container image.

``default_endpoints(server)`` is what ``bridge serve`` serves when told nothing else.
"""

from __future__ import annotations

from typing import Any

from endpoints.control import ServerControlEndpoint
from endpoints.counter import CounterEndpoint
from endpoints.echo import EchoEndpoint
from endpoints.test import TestEndpoint


def default_endpoints(server: Any = None) -> list[Any]:
    """The control, echo, test and counter endpoints, in that order."""
    return [ServerControlEndpoint(server), EchoEndpoint(), TestEndpoint(), CounterEndpoint()]


__all__ = ["CounterEndpoint", "EchoEndpoint", "ServerControlEndpoint", "TestEndpoint",
           "default_endpoints"]
