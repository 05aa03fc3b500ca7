"""The ``aio`` flavour: grpc.aio, every handler on an event loop in a thread of its own.

Answers come from the server's executor threads; :meth:`AioGrpcServer.hand_back`
queues them and wakes the loop once per batch, where each RPC's handler awaits its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from grpc import aio

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.health import initial_statuses
from bridge.transport.grpc.options import server_args
from bridge.transport.grpc.server import MAX_LINGER, GrpcServer, remaining_time
from bridge.transport.grpc.status import Rejection, status_of
from bridge.transport.grpc.streams import StreamCalls
from bridge.transport.shared_server import LoopAnswers

LOG = logging.getLogger(__name__)


class AioGrpcServer(GrpcServer):
    """A :class:`GrpcServer` on grpc.aio, its event loop running in a thread of its own."""

    flavour = "aio"

    def _start(self) -> None:
        self._answers = LoopAnswers("gRPC call")
        self._held = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, daemon=True,
                                        name=f"bridge-grpc-{self.addresses[0][1]}")
        self._thread.start()
        try:
            self._run(self._start_on_loop())
        except BaseException:
            self._stop_loop()
            raise

    async def _start_on_loop(self) -> None:
        from grpc_health.v1 import health

        server = aio.server(options=server_args(self.options))
        servicer = health.aio.HealthServicer()
        for name, status in initial_statuses().items():
            await servicer.set(name, status)
        try:
            self._prepare(server, servicer)
        except BaseException:
            # Only a server that started frees the ports bound before the failure.
            await server.start()
            await server.stop(None)
            raise
        await server.start()
        self._server = server

    def _publish_health(self, statuses: dict[str, int]) -> None:
        async def publish() -> None:
            for name, status in statuses.items():
                await self._health.set(name, status)

        # Never waits for the loop: a method run on it (the blocking executor) may be the
        # one stopping the server, or may keep the loop busy while another thread stops it.
        if self._on_loop():
            self.loop.create_task(publish())
        else:
            asyncio.run_coroutine_threadsafe(publish(), self.loop)

    def _stop(self, server: Any, grace: float) -> None:
        async def stop() -> None:
            stopping = self.loop.create_task(server.stop(grace))
            await asyncio.sleep(0)  # grpc takes no request in from here on
            self.release_held()
            await stopping

        if self._on_loop():
            # Released from the loop itself (a blocking executor): stop without waiting.
            if server is not None:
                self.loop.create_task(stop())
            return
        if server is not None:
            try:
                self._run(stop(), grace + 10)
            except Exception:
                LOG.exception("Error while stopping the gRPC server on %s", self.address)
        self._stop_loop()

    def _hold_from_now(self) -> None:
        async def clear() -> None:
            self._held.clear()

        self._run(clear())

    def _release_held(self) -> None:
        if self._on_loop():
            self._held.set()
        else:
            self.loop.call_soon_threadsafe(self._held.set)

    # -- the event loop ----------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _run(self, coro: Any, timeout: float | None = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()

    def _on_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def _may_block(self) -> bool:
        return not self._on_loop()

    def hand_back(self, resolve: Callable[[Any], None], outcome: Any) -> None:
        """Run ``resolve(outcome)`` on the loop; callable from any thread."""
        self._answers.hand_back(self.loop, self._on_loop(), resolve, outcome)

    # -- handlers (on the event loop) ---------------------------------------------------------

    async def _abort(self, context: aio.ServicerContext, failure: Any, what: str,
                     log: bool = True) -> None:
        """Refuse a request no listener took: count it, log it, end the RPC (raises).

        While the server lingers, a request refused as UNAVAILABLE is held until its port
        closes (see :meth:`GrpcServer.linger`)."""
        code, message, metadata = self.refuse(failure, what, log)
        if self.lingering and failure.reason == pb.Failure.REASON_UNAVAILABLE:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._held.wait(), MAX_LINGER)
        await context.abort(code, message, metadata)

    async def call(self, data: bytes, context: aio.ServicerContext) -> bytes:
        """The Call handler: the encoded CallResponse, or the RPC aborted with the failure."""
        future: asyncio.Future = self.loop.create_future()

        def resolve(outcome: Any) -> None:
            if not future.done():
                future.set_result(outcome)

        try:
            self.admission.enter()
        except Rejection as rejection:
            await self._abort(context, rejection.failure, "Call")
        refused: tuple[Any, bool] | None = None  # (failure, log it)
        try:
            try:
                target, incoming = self.decode_call(
                    data, remaining_time(context), lambda outcome: self.hand_back(resolve, outcome),
                    context)
                self.deliver(target, incoming)
            except Rejection as rejection:
                refused = (rejection.failure, True)
            except Exception as exc:
                refused = (self.unexpected(exc, "Call"), False)
            if refused is None:
                try:
                    outcome = await future
                except asyncio.CancelledError:
                    incoming.caller_cancelled()  # the caller went away
                    raise
        finally:
            self.admission.leave()
        if refused is not None:
            await self._abort(context, refused[0], "Call", refused[1])
        if isinstance(outcome, bytes):
            return outcome
        code, message, metadata = status_of(outcome)
        await context.abort(code, message, metadata)
        raise AssertionError("unreachable")  # abort() raises

    async def describe(self, data: bytes, context: aio.ServicerContext) -> bytes:
        # Endpoints' descriptions are read, never run: quick enough for the loop.
        return self.description(context)

    async def cast(self, data: bytes, context: aio.ServicerContext) -> bytes:
        """The Cast handler: an empty CastResponse once a listener took the cast."""
        try:
            self.start_cast(data, context)
        except Rejection as rejection:
            await self._abort(context, rejection.failure, "Cast")
        except Exception as exc:
            await self._abort(context, self.unexpected(exc, "Cast"), "Cast", log=False)
        return b""  # an empty CastResponse

    async def call_stream(self, requests: AsyncIterator[bytes],
                          context: aio.ServicerContext) -> AsyncIterator[bytes]:
        """The CallStream handler: a task reads the requests, this one sends responses."""
        out: asyncio.Queue = asyncio.Queue()
        calls = StreamCalls(self, remaining_time(context), out.put_nowait,
                            self.sender(context))

        async def read() -> None:
            try:
                async for data in requests:
                    calls.start(data)
            finally:
                calls.end_of_requests()

        reader = self.loop.create_task(read())
        sent = 0
        try:
            while not calls.finished(sent):
                item = await out.get()
                if item is not None:
                    sent += 1
                    yield item
        finally:
            reader.cancel()
