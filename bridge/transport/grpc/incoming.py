"""The IncomingMessage of a gRPC Call, Cast or CallStream request."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.base import IncomingMessage
from bridge.transport.grpc.decoding import release_freed_memory
from bridge.transport.grpc.status import Rejection, failure_from_exception
from bridge.transport.grpc.values import fill_value

LOG = logging.getLogger(__name__)

#: What ``reply()`` hands back: the encoded response (bytes), or the Failure to send.
Answer = Callable[[Any], None]


class GrpcIncoming(IncomingMessage):
    """A Call, Cast or CallStream request taken from a gRPC server.

    ``ctxt["client_timeout"]`` is the seconds left before the gRPC deadline when
    the request arrived (None without a deadline); ``deadline`` is that instant.
    There is no call monitor on gRPC: ``client_timeout`` (the attribute) is None.
    ``reply()`` hands the encoded response, or a ``bridge.v1.Failure``, to ``answer``
    (None for a cast) exactly once.
    """

    wire = "grpc"

    def __init__(self, ctxt: dict[str, Any], message: dict[str, Any],
                 deadline: float | None, remaining: float | None,
                 answer: Answer | None, make_reply: Callable[[Any], bytes],
                 include_traceback: bool, max_send: int) -> None:
        ctxt["client_timeout"] = remaining
        self.ctxt = ctxt
        self.message = message
        self.deadline = deadline
        self.wants_reply = answer is not None
        self._answer = answer
        self._make_reply = make_reply
        self._include_traceback = include_traceback
        self._max_send = max_send

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if self._answer is None:
            return
        outcome: Any
        if failure is None:
            try:
                outcome = self._make_reply(result)
            except Exception as exc:  # a result no Value can hold
                failure = exc
            else:
                release_freed_memory(len(outcome))  # what encoding a large reply took
                if len(outcome) > self._max_send:
                    outcome = Rejection(
                        pb.Failure.REASON_RESOURCE_EXHAUSTED,
                        f"the reply of {self.method!r} is {len(outcome)} bytes, over "
                        f"max_send_message_length ({self._max_send})",
                        "max_send_message_length", self._max_send).failure
        if failure is not None:
            try:
                outcome = failure_from_exception(failure, self._include_traceback,
                                                 self.failure_expected)
            except Exception as exc:
                LOG.error("Could not encode the failure of %s: %s", self.method, exc)
                outcome = Rejection(pb.Failure.REASON_ENDPOINT_ERROR, str(failure)).failure
        answer, self._answer = self._answer, None
        answer(outcome)

    def copy_for_fanout(self) -> GrpcIncoming:
        """A copy of this cast for one more listener (each dispatcher gets its own dicts)."""
        twin = GrpcIncoming(copy.deepcopy(self.ctxt), copy.deepcopy(self.message),
                            self.deadline, self.ctxt.get("client_timeout"), None,
                            self._make_reply, self._include_traceback, self._max_send)
        twin.credentials = self.credentials
        twin.headers = self.headers
        return twin


def call_reply(result: Any) -> bytes:
    """The encoded CallResponse holding ``result``."""
    response = pb.CallResponse()
    fill_value(response.result, result, "the result")
    return response.SerializeToString()
