"""Handlers: what a server does with each message it takes.

The server owns the lifecycle and the in-flight bookkeeping; its handler decides
what a message means. :class:`DispatchHandler` runs endpoint methods through an
:class:`~bridge.rpc.dispatcher.RPCDispatcher`; the gateway's forwarding handler
(:mod:`bridge.gateway`) sends each message on over another wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.failures import ERROR, Kind
from bridge.transport.base import IncomingMessage

if TYPE_CHECKING:
    from bridge.rpc.describe import Allow, Served
    from bridge.rpc.dispatcher import RPCDispatcher
    from bridge.rpc.executors import AsyncioExecutor
    from bridge.target import Target

#: ``answer(result, failure)``: the handler's outcome for one message; called exactly once.
Answer = Callable[[Any, "BaseException | None"], None]


class Handler:
    """What a server does with a message; the server answers with what it is told."""

    #: True when the handler runs a request to its end on the calling thread
    #: (:meth:`run`): the server then runs it on its executor and answers with what it
    #: returns or raises. False when :meth:`handle` returns at once and answers later
    #: from another thread (forwarding): the server calls it on the listener's thread,
    #: holding no executor thread while the answer is awaited.
    blocking: bool = True
    #: The kind of a failure that no rule of :func:`bridge.failures.classify` names.
    unknown_failure: Kind = ERROR

    def run(self, incoming: IncomingMessage) -> Any:
        """A blocking handler's work: the result of ``incoming`` (or raise its failure)."""
        raise NotImplementedError(f"{type(self).__name__} is not a blocking handler")

    def handle(self, incoming: IncomingMessage, answer: Answer) -> None:
        """Handle ``incoming``; call ``answer(result, failure)`` once, now or later.
        By default: :meth:`run`, then answer."""
        try:
            result = self.run(incoming)
        except Exception as exc:
            answer(None, exc)
            return
        answer(result, None)

    async def handle_async(self, incoming: IncomingMessage, answer: Answer,
                           executor: AsyncioExecutor) -> None:
        """:meth:`handle` under the asyncio executor (on its event loop)."""
        await executor.run_blocking(self.handle, incoming, answer)

    def accepts_unrouted(self, target: Target) -> bool:
        """Whether a request for ``target``, which no listener serves, is this handler's."""
        return False

    def describe(self, target: Target, allow: Allow | None = None) -> list[Served]:
        """What a server with this handler serves at ``target`` (see :mod:`bridge.rpc.describe`);
        ``allow`` leaves out what it refuses."""
        return []

    def open(self) -> None:  # noqa: B027 - handlers with nothing to open
        """Prepare before the server listens (a failure here fails ``start()``)."""

    def close(self) -> None:  # noqa: B027 - handlers with nothing to release
        """Release what :meth:`open` took, once the server has drained."""


class DispatchHandler(Handler):
    """Runs each message's endpoint method through a dispatcher."""

    def __init__(self, dispatcher: RPCDispatcher) -> None:
        self.dispatcher = dispatcher

    def describe(self, target: Target, allow: Allow | None = None) -> list[Served]:
        """The endpoints of the dispatcher, their methods as its access policy allows."""
        from bridge.rpc.describe import describe_dispatcher

        return [describe_dispatcher(self.dispatcher, target, allow)]

    def run(self, incoming: IncomingMessage) -> Any:
        return self.dispatcher.resolve(incoming.ctxt, incoming.message).run()

    async def handle_async(self, incoming: IncomingMessage, answer: Answer,
                           executor: AsyncioExecutor) -> None:
        """Await ``async def`` methods on the loop; run plain ones in the pool."""
        result, failure = None, None
        try:
            invocation = self.dispatcher.resolve(incoming.ctxt, incoming.message)
            if invocation.is_coroutine:
                raw = await invocation.method(invocation.ctxt, **invocation.args)
                result = invocation.finish(raw)
            else:
                result = await executor.run_blocking(invocation.run)
        except Exception as exc:
            failure = exc
        await executor.run_blocking(answer, result, failure)
