"""The calls of one CallStream: each request starts a call; each call gets one response.

Whatever the server flavour, a :class:`StreamCalls` reads the stream's requests
(:meth:`StreamCalls.start`) and emits one ``StreamResponse`` per request, in the
order the calls finish, through the ``emit`` callable the flavour gives it (a queue
its response loop drains). A request's ``timeout`` is enforced on the server's
timer; its call ends with DEADLINE_EXCEEDED when it runs past it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.decoding import detached
from bridge.transport.grpc.incoming import GrpcIncoming
from bridge.transport.grpc.server import MAX_TIMEOUT, GrpcServer
from bridge.transport.grpc.status import (
    TEXT_BUDGET,
    Rejection,
    bounded,
    count_refusal,
    status_of,
    truncate,
)
from bridge.transport.grpc.values import decode_error_text, fill_value

LOG = logging.getLogger(__name__)


def error_response(call_id: int, failure: pb.Failure) -> bytes:
    """The encoded StreamResponse of call ``call_id`` ending with ``failure`` (cut to the
    budgets of a status: see :func:`~bridge.transport.grpc.status.bounded`)."""
    failure = bounded(failure)
    code, message, _ = status_of(failure)
    return pb.StreamResponse(id=call_id, error=pb.StreamError(
        code=code.value[0], message=message, failure=failure)).SerializeToString()


class StreamCalls:
    """The calls of one CallStream.

    ``emit(bytes)`` queues a response for the stream (``None``: wake the response loop
    up). ``remaining`` is the stream's own time left (None without a deadline); each
    call gets at most that, and at most its request's ``timeout``.
    """

    def __init__(self, server: GrpcServer, remaining: float | None,
                 emit: Callable[[bytes | None], None], sender: Any = None) -> None:
        self.server = server
        #: What the stream's metadata and peer tell about the sender (bridge.auth).
        self.sender = sender
        self.deadline = None if remaining is None else server.clock.now() + remaining
        self.emit = emit
        self.lock = threading.Lock()
        #: Requests read so far; each gets exactly one response.
        self.started = 0
        self.done_reading = False

    def finished(self, sent: int) -> bool:
        """True once the requests are all read and ``sent`` responses answer them all."""
        return self.done_reading and sent >= self.started

    def end_of_requests(self) -> None:
        """The client closed its side (or the stream broke): no request follows."""
        self.done_reading = True
        self.emit(None)

    def start(self, data: bytes) -> None:
        """Start the call in ``data``; exactly one response is emitted for it, whatever
        goes wrong, and the call's ``max_concurrent_calls`` slot is given back with it."""
        self.started += 1
        with self.server.decode_budget.decoding(len(data)):
            decoded = self._decode(data)
        if decoded is None:
            return  # answered already
        call, target, incoming = decoded
        try:
            self.server.deliver(target, incoming)
        except Exception as exc:
            self._fail(call, exc)

    def _decode(self, data: bytes) -> tuple[_StreamCall, pb.Target, GrpcIncoming] | None:
        """Parse a request, take its slot, arm its timeout and decode it; None once a
        refusal answered it (the target apart from a large request: see
        :func:`~bridge.transport.grpc.decoding.detached`)."""
        server = self.server
        try:
            request = pb.StreamRequest.FromString(data)
        except Exception as exc:
            text = f"undecodable StreamRequest: {decode_error_text(exc)}"
            self._refuse(0, Rejection(pb.Failure.REASON_INVALID_ARGUMENT, text).failure)
            return None
        call = _StreamCall(self, request.id)
        try:
            server.admission.enter()
        except Rejection as rejection:
            self._refuse(call.id, rejection.failure)
            return None
        try:
            incoming = self._decode_call(call, request)
        except Exception as exc:
            self._fail(call, exc)
            return None
        return call, detached(request.envelope.target, len(data)), incoming

    def _fail(self, call: _StreamCall, exc: Exception) -> None:
        """Answer a call that holds a slot and failed before a listener took it."""
        if isinstance(exc, Rejection):
            LOG.warning("gRPC CallStream call %s refused: %s", call.id,
                        truncate(str(exc), TEXT_BUDGET))
            failure = exc.failure
        else:
            failure = self.server.unexpected(exc, f"CallStream call {call.id}")
        call.finish(error_response(call.id, failure), refused=failure)

    def _refuse(self, call_id: int, failure: pb.Failure) -> None:
        """Answer a request refused before it holds a slot."""
        LOG.warning("gRPC CallStream call %s refused: %s", call_id,
                    truncate(failure.message, TEXT_BUDGET))
        count_refusal(failure)
        self.emit(error_response(call_id, failure))

    def _decode_call(self, call: _StreamCall, request: pb.StreamRequest) -> GrpcIncoming:
        """Arm the call's timeout and decode it (or raise)."""
        server = self.server
        timeout = call_timeout(request.timeout)
        now = server.clock.now()
        remaining = None if self.deadline is None else max(0.0, self.deadline - now)
        if timeout is not None:
            remaining = timeout if remaining is None else min(remaining, timeout)
            call.timer = server.timeouts.schedule(now + remaining, call.expire)
        return server.decode(request.envelope, remaining, call.answer, call.make_reply,
                             self.sender)


def call_timeout(timeout: float) -> float | None:
    """The seconds a StreamRequest's ``timeout`` gives its call: None for 0 (none) or past
    :data:`~bridge.transport.grpc.server.MAX_TIMEOUT` (infinity included); a negative or
    NaN timeout is refused."""
    if not timeout >= 0:  # NaN too
        raise Rejection(pb.Failure.REASON_INVALID_ARGUMENT,
                        f"the timeout of a StreamRequest is a number of seconds >= 0 "
                        f"(0: none), not {timeout!r}")
    if timeout == 0 or timeout > MAX_TIMEOUT:
        return None
    return timeout


class _StreamCall:
    """One call of a CallStream, from admission to its one response."""

    __slots__ = ("calls", "id", "timer", "answered")

    def __init__(self, calls: StreamCalls, call_id: int) -> None:
        self.calls = calls
        self.id = call_id
        self.timer: Any = None
        self.answered = False

    def make_reply(self, result: Any) -> bytes:
        response = pb.StreamResponse(id=self.id)
        fill_value(response.result, result, "the result")
        return response.SerializeToString()

    def answer(self, outcome: Any) -> None:
        """The call's answer (from any thread): encoded response or Failure."""
        self.calls.server.hand_back(self.resolve, outcome)

    def expire(self) -> None:
        """The call ran past its timeout (on the timer's thread)."""
        self.answer(Rejection(pb.Failure.REASON_DEADLINE_EXCEEDED,
                              f"call {self.id} ran past its timeout").failure)

    def resolve(self, outcome: Any) -> None:
        self.finish(outcome if isinstance(outcome, bytes) else error_response(self.id, outcome))

    def finish(self, payload: bytes, refused: pb.Failure | None = None) -> None:
        """Emit ``payload`` if the call has no response yet, and give its slot back."""
        calls = self.calls
        with calls.lock:
            if self.answered:
                return
            self.answered = True
        if self.timer is not None:
            calls.server.timeouts.cancel(self.timer)
        calls.server.admission.leave()
        if refused is not None:
            count_refusal(refused)
        calls.emit(payload)
