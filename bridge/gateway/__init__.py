"""The gateway: forward RPC messages from one wire to another by configured routes
(docs/gateway.md). It imports no driver: routes name URLs, transports do the rest."""

from bridge.gateway.forwarder import DEFAULT_MAX_IN_FLIGHT, Forwarder
from bridge.gateway.handler import ForwardHandler, gateway_server
from bridge.gateway.routes import ANY, Route, routes_from_config

__all__ = ["ANY", "DEFAULT_MAX_IN_FLIGHT", "ForwardHandler", "Forwarder", "Route",
           "gateway_server", "routes_from_config"]
