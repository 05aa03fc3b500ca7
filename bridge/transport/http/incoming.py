"""An HTTP request as the server sees it: an :class:`~bridge.transport.base.IncomingMessage`.

Its reply is encoded where the server answers (a worker thread), then handed to the
HTTP server's event loop as ``(HTTP status, body)``: the loop only writes bytes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from bridge.auth.identity import Credentials
from bridge.transport.base import IncomingMessage
from bridge.transport.http import values
from bridge.transport.http.request import Request
from bridge.transport.http.status import Rejection, error_response, failure_of_exception

LOG = logging.getLogger(__name__)

#: (HTTP status, body): what an HTTP call answers.
Outcome = tuple[int, bytes]


def call_result(result: Any) -> Outcome:
    """The response of a call that returned ``result``: ``200 {"result": ...}``."""
    return 200, values.dumps({"result": result})


class HttpIncoming(IncomingMessage):
    """A call, cast or stream line taken from an HTTP server.

    ``ctxt["client_timeout"]`` is the caller's timeout in seconds (the request timeout
    header, or a stream line's ``timeout``; None without one); ``deadline`` is when it
    runs out. There is no call monitor on HTTP: ``client_timeout`` (the attribute) is None.
    """

    wire = "http"

    def __init__(self, request: Request, deadline: float | None, remaining: float | None,
                 answer: Callable[[Outcome], None] | None,
                 encode: Callable[[Any], Outcome] = call_result,
                 encode_failure: Callable[[dict[str, Any]], Outcome] = error_response,
                 include_traceback: bool = False, max_send: int = 0,
                 credentials: Credentials | None = None) -> None:
        ctxt = request.ctxt
        ctxt["client_timeout"] = remaining
        self.ctxt = ctxt
        self.message = request.message
        self.deadline = deadline
        self.wants_reply = answer is not None
        self.credentials = credentials
        self._request = request
        self._answer = answer
        self._encode = encode
        self._encode_failure = encode_failure
        self._include_traceback = include_traceback
        self._max_send = max_send

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if self._answer is None:
            return
        outcome: Outcome | None = None
        if failure is None:
            try:
                outcome = self._encode(result)
            except Exception as exc:  # a result JSON cannot hold
                failure = exc
            else:
                if self._max_send and len(outcome[1]) > self._max_send:
                    outcome = self._encode_failure(Rejection(
                        "RESOURCE_EXHAUSTED", f"the reply of {self.method!r} is "
                        f"{len(outcome[1])} bytes, over max_message_size ({self._max_send})",
                        "max_message_size", self._max_send).failure)
        if failure is not None:
            try:
                outcome = self._encode_failure(failure_of_exception(
                    failure, self._include_traceback, self.failure_expected))
            except Exception as exc:
                LOG.error("Could not encode the failure of %s: %s", self.method, exc)
                outcome = self._encode_failure(Rejection("ENDPOINT_ERROR", str(failure)).failure)
        answer, self._answer = self._answer, None
        assert outcome is not None
        answer(outcome)

    def copy_for_fanout(self) -> HttpIncoming:
        """A copy of this cast for one more listener (each dispatcher gets its own dicts)."""
        request = copy.deepcopy(self._request)
        return HttpIncoming(request, self.deadline, self.ctxt.get("client_timeout"), None,
                            credentials=self.credentials)
