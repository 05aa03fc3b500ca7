"""The ``sync`` flavour: grpc.server, each RPC on a thread of its pool."""

from __future__ import annotations

import _thread
import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.health import initial_statuses
from bridge.transport.grpc.options import server_args
from bridge.transport.grpc.server import MAX_LINGER, GrpcServer, remaining_time
from bridge.transport.grpc.status import Rejection, status_of
from bridge.transport.grpc.streams import StreamCalls

LOG = logging.getLogger(__name__)


class SyncGrpcServer(GrpcServer):
    """A :class:`GrpcServer` on grpc.server: handlers run on grpc's thread pool."""

    flavour = "sync"

    def _start(self) -> None:
        from grpc_health.v1 import health

        self._held = threading.Event()
        # Each call in flight holds one of these threads while the executor runs it; the
        # spare ones answer health checks and refuse calls over the limit. Threads are
        # made only when needed.
        workers = (self.options.max_concurrent_calls or 1000) + 16
        pool = ThreadPoolExecutor(workers,
                                  thread_name_prefix=f"bridge-grpc-{self.addresses[0][1]}")
        self._pool = pool
        server = grpc.server(pool, options=server_args(self.options))
        servicer = health.HealthServicer()
        for name, status in initial_statuses().items():
            servicer.set(name, status)
        try:
            self._prepare(server, servicer)
        except BaseException:
            # Only a server that started frees the ports bound before the failure.
            server.start()
            server.stop(None).wait(10)
            pool.shutdown(wait=False)
            raise
        server.start()
        self._server = server

    def _publish_health(self, statuses: dict[str, int]) -> None:
        for name, status in statuses.items():
            self._health.set(name, status)

    def _stop(self, server: Any, grace: float) -> None:
        stopped = server.stop(grace) if server is not None else None
        self.release_held()  # after grpc took its last request in: none is cancelled
        if stopped is not None:
            stopped.wait(grace + 10)
        self._pool.shutdown(wait=False)

    def _hold_from_now(self) -> None:
        self._held.clear()

    def _release_held(self) -> None:
        self._held.set()

    # -- handlers (grpc.server threads) -------------------------------------------------------

    def _abort(self, context: grpc.ServicerContext, failure: Any, what: str,
               log: bool = True) -> None:
        """Refuse a request no listener took: count it, log it, end the RPC (raises).

        While the server lingers, a request refused as UNAVAILABLE is held until its port
        closes (see :meth:`GrpcServer.linger`)."""
        code, message, metadata = self.refuse(failure, what, log)
        if self.lingering and failure.reason == pb.Failure.REASON_UNAVAILABLE:
            self._held.wait(MAX_LINGER)
        context.set_trailing_metadata(metadata)
        context.abort(code, message)

    def call(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """The Call handler: the encoded CallResponse, or the RPC aborted with the failure."""
        # This thread only waits for the answer, so the executor may run the method right
        # here (may_run_inline): then reply() has filled the box before deliver() returns
        # and the answer goes back without a wake-up. Otherwise a pool worker answers and
        # a bare lock, the cheapest wait, hands it over.
        done = _thread.allocate_lock()
        done.acquire()
        box: list[Any] = []

        def answer(outcome: Any) -> None:
            box.append(outcome)
            done.release()

        try:
            self.admission.enter()
        except Rejection as rejection:
            self._abort(context, rejection.failure, "Call")
        refused: tuple[Any, bool] | None = None  # (failure, log it)
        try:
            remaining = remaining_time(context)
            try:
                target, incoming = self.decode_call(data, remaining, answer, context)
                incoming.may_run_inline = True
                # Runs when the RPC ends; before the answer, that means the caller went
                # away. Added before delivery so that it also reaches an inline run.
                context.add_callback(lambda: None if box else incoming.caller_cancelled())
                self.deliver(target, incoming)
            except Rejection as rejection:
                refused = (rejection.failure, True)
            except Exception as exc:
                refused = (self.unexpected(exc, "Call"), False)
            if refused is None and not box:
                # Past the deadline gRPC has answered the caller already: stop waiting.
                done.acquire(timeout=-1 if remaining is None else remaining + 1.0)
        finally:
            self.admission.leave()
        if refused is not None:
            self._abort(context, refused[0], "Call", refused[1])
        if not box:
            return b""  # the deadline passed; nobody reads this
        outcome = box[0]
        if isinstance(outcome, bytes):
            return outcome
        code, message, metadata = status_of(outcome)
        context.set_trailing_metadata(metadata)
        context.abort(code, message)
        raise AssertionError("unreachable")  # abort() raises

    def describe(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        return self.description(context)

    def cast(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """The Cast handler: an empty CastResponse once a listener took the cast."""
        try:
            self.start_cast(data, context)
        except Rejection as rejection:
            self._abort(context, rejection.failure, "Cast")
        except Exception as exc:
            self._abort(context, self.unexpected(exc, "Cast"), "Cast", log=False)
        return b""  # an empty CastResponse

    def call_stream(self, requests: Iterator[bytes],
                    context: grpc.ServicerContext) -> Iterator[bytes]:
        """The CallStream handler: a thread reads the requests, this one sends responses."""
        out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        calls = StreamCalls(self, remaining_time(context), out.put, self.sender(context))

        def read() -> None:
            try:
                for data in requests:
                    calls.start(data)
            except Exception as exc:  # the client cancelled, or the stream broke
                LOG.debug("CallStream reader ended: %s", exc)
            finally:
                calls.end_of_requests()

        threading.Thread(target=read, name="bridge-grpc-stream", daemon=True).start()
        context.add_callback(lambda: out.put(None))
        sent = 0
        while context.is_active() and not calls.finished(sent):
            item = out.get()
            if item is not None:
                sent += 1
                yield item
