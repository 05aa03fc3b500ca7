"""The forwarding handler: a server whose messages go on to another wire by route.

A server built with :func:`gateway_server` takes messages from its own listeners
(addressed to the gateway: forwarded to the route's upstream topic, any server) and,
through :meth:`~bridge.rpc.server.MessageHandlingServer.serve_unrouted`, the requests
of a wire that can hand over targets no local listener serves (forwarded as
addressed). It holds no thread per forwarded call: the upstream Future answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future

from bridge.auth.guard import Guard
from bridge.failures import GATEWAY_ERROR
from bridge.gateway.forwarder import Forwarder
from bridge.rpc.describe import Allow, Served, describe_routes
from bridge.rpc.handlers import Answer, Handler
from bridge.rpc.server import MessageHandlingServer
from bridge.target import Target
from bridge.transport import Transport
from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)


class ForwardHandler(Handler):
    """Forwards each message through a :class:`Forwarder` and relays the outcome."""

    blocking = False
    unknown_failure = GATEWAY_ERROR

    def __init__(self, forwarder: Forwarder, target: Target) -> None:
        self.forwarder = forwarder
        #: The gateway server's own target: where messages its listeners take were sent.
        self.target = target

    def upstream_target(self, incoming: IncomingMessage) -> Target:
        """Where ``incoming`` goes: as addressed when it reached the gateway unrouted;
        else, addressed to the gateway itself, to any server of its topic in the
        upstream's default exchange."""
        if incoming.unrouted and incoming.target is not None:
            return incoming.target
        own = incoming.target or self.target
        return Target(topic=own.topic, fanout=own.fanout)

    def handle(self, incoming: IncomingMessage, answer: Answer) -> None:
        upstream = self.forwarder.forward(incoming, self.upstream_target(incoming))
        incoming.add_cancel_callback(upstream.cancel)
        upstream.add_done_callback(lambda done: _relay(done, answer))

    def accepts_unrouted(self, target: Target) -> bool:
        return self.forwarder.serves(target)

    def describe(self, target: Target, allow: Allow | None = None) -> list[Served]:
        """The routes' topics, listed as routed (any method is forwarded)."""
        return describe_routes(self.forwarder.routes, allow)

    def open(self) -> None:
        """Open every route's transport (a bad URL fails the server's start)."""
        self.forwarder.open()

    def route_topic(self, incoming: IncomingMessage) -> str:
        """The topic of the route that forwards ``incoming`` (``*`` for a wildcard
        route): a label from the configuration, never from the request."""
        route = self.forwarder.route_for(incoming.target or self.target,
                                         incoming.message.get("namespace"))
        return str(route.topic) if route is not None else str(self.target.topic)


def _relay(done: Future, answer: Answer) -> None:
    if done.cancelled():  # the caller went away: nothing to send
        answer(None, None)
        return
    failure = done.exception()
    answer(None if failure else done.result(), failure)


def gateway_server(transports: Transport | Sequence[Transport], target: Target,
                   forwarder: Forwarder, guard: Guard | None = None) -> MessageHandlingServer:
    """A server on ``transports`` (may be empty) whose messages are forwarded by routes.

    Call its ``serve_unrouted(transport)`` after ``start()`` to also forward the
    requests of a wire with ``implements.unrouted`` that no local listener serves.
    ``guard`` authenticates and authorizes each message before it is forwarded; the
    caller's identity travels upstream in the context (docs/security.md, "Gateway").
    """
    return MessageHandlingServer(transports, target, ForwardHandler(forwarder, target),
                                 executor="threading", guard=guard)
