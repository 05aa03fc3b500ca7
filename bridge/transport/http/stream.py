"""``POST /v1/stream``: pipelined calls as newline-delimited JSON, both ways.

Each request line is a ``/v1/call`` body plus ``id`` (chosen by the caller: an integer
or a string, echoed in the reply) and ``timeout`` (seconds for that call; 0 or absent:
the stream's ``X-Bridge-Timeout`` only). Each call starts as soon as its line arrives,
and each reply line, ``{"id", "result"}`` or ``{"id", "error": <google.rpc.Status>}``,
is written as soon as its call ends: replies come in completion order. The response
(``200``, ``application/x-ndjson``) ends once the request body has ended and every
line is answered. A bad line (not JSON, a wrong field, over ``max_message_size``) is
answered with an error line (``id`` null when it could not be read); the stream goes on.
Everything here runs on the HTTP server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.auth.identity import Credentials
from bridge.transport.http import values
from bridge.transport.http.incoming import Outcome
from bridge.transport.http.request import STREAM_FIELDS, parse_call, parse_stream_timeout
from bridge.transport.http.status import HTTP_STATUS, Rejection, code_of, status_json

if TYPE_CHECKING:
    from bridge.transport.http.server import HttpServer

LOG = logging.getLogger(__name__)

NDJSON = b"application/x-ndjson"


def _line(data: dict[str, Any]) -> bytes:
    return values.dumps(data) + b"\n"


def _result_encoder(call_id: Any) -> Callable[[Any], Outcome]:
    return lambda result: (200, _line({"id": call_id, "result": result}))


def _failure_encoder(call_id: Any) -> Callable[[dict[str, Any]], Outcome]:
    return lambda failure: (HTTP_STATUS[code_of(failure)],
                            _line({"id": call_id, "error": status_json(failure)}))


class _Stream:
    """The calls of one stream: start each line's call, write each answer once."""

    def __init__(self, server: HttpServer, send: Any, credentials: Credentials,
                 timeout: float | None) -> None:
        self.server = server
        self.send = send
        self.credentials = credentials
        loop = server.loop
        self.deadline = None if timeout is None else loop.time() + timeout
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.started = 0
        self.done_reading = False
        self.pending: set[Any] = set()

    def remaining(self, line_timeout: float | None) -> float | None:
        left = None if self.deadline is None else max(0.0, self.deadline - self.server.loop.time())
        if line_timeout is None:
            return left
        return line_timeout if left is None else min(left, line_timeout)

    def refuse(self, call_id: Any, rejection: Rejection) -> None:
        from bridge.transport.http.server import count_refusal

        count_refusal(rejection)
        LOG.warning("HTTP stream call %r refused: %s", call_id, rejection)
        self.out.put_nowait(_failure_encoder(call_id)(rejection.failure)[1])

    def start(self, line: bytes) -> None:
        """Start the call of one request line; exactly one reply line is written for it."""
        self.started += 1
        call_id = None
        try:
            value = values.loads(line, "the line")
            if isinstance(value, dict):
                call_id = value.get("id")
                if isinstance(call_id, bool) or not isinstance(call_id, (int, str, type(None))):
                    call_id = None
                    raise Rejection("INVALID_ARGUMENT", "'id' must be an integer or a string")
            request = parse_call(value, STREAM_FIELDS)
            remaining = self.remaining(parse_stream_timeout(value.get("timeout")))
        except values.JSONValueError as exc:
            self.refuse(None, Rejection("INVALID_ARGUMENT", str(exc)))
            return
        except Rejection as rejection:
            self.refuse(call_id, rejection)
            return
        self._run(call_id, request, remaining)

    def _run(self, call_id: Any, request: Any, remaining: float | None) -> None:
        server = self.server
        state: dict[str, Any] = {"answered": False, "timer": None, "incoming": None}

        def resolve(outcome: Outcome) -> None:
            if state["answered"]:
                return
            state["answered"] = True
            server.admission.leave()
            if state["timer"] is not None:
                state["timer"].cancel()
            self.pending.discard(state["incoming"])
            self.out.put_nowait(outcome[1])

        def expire() -> None:
            resolve(_failure_encoder(call_id)(Rejection(
                "DEADLINE_EXCEEDED", f"call {call_id!r} ran past its timeout").failure))
            if state["incoming"] is not None:
                state["incoming"].caller_cancelled()

        try:
            server.admission.enter()
        except Rejection as rejection:
            self.refuse(call_id, rejection)
            return
        try:
            incoming = server.incoming(request, remaining, resolve, self.credentials,
                                       encode=_result_encoder(call_id),
                                       encode_failure=_failure_encoder(call_id))
            state["incoming"] = incoming
            self.pending.add(incoming)
            server.deliver(request, incoming)
        except Rejection as rejection:
            state["answered"] = True
            server.admission.leave()
            self.pending.discard(state["incoming"])
            self.refuse(call_id, rejection)
            return
        if remaining is not None and not state["answered"]:
            state["timer"] = server.loop.call_later(remaining, expire)

    async def read(self, receive: Any) -> None:
        """Start a call per line of the request body, as lines arrive."""
        limit = self.server.options.max_message_size
        buffer = b""
        skipping = False  # inside a line over the limit: drop it up to its newline
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.caller_gone()
                    return
                buffer += message.get("body", b"")
                while True:
                    end = buffer.find(b"\n")
                    if end < 0:
                        break
                    line, buffer = buffer[:end], buffer[end + 1:]
                    if skipping:
                        skipping = False
                    elif line.strip():
                        self.start(line)
                if len(buffer) > limit and not skipping:
                    self.started += 1
                    self.refuse(None, Rejection(
                        "RESOURCE_EXHAUSTED", f"a line is over max_message_size ({limit} "
                        "bytes)", "max_message_size", limit))
                    skipping, buffer = True, b""
                elif skipping:
                    buffer = b""
                if not message.get("more_body"):
                    if buffer.strip() and not skipping:
                        self.start(buffer)
                    return
        finally:
            self.done_reading = True
            self.out.put_nowait(None)

    def caller_gone(self) -> None:
        for incoming in list(self.pending):
            incoming.caller_cancelled()

    async def write(self) -> None:
        """Write reply lines as they come, several at once when several are ready."""
        written = 0
        while not (self.done_reading and written >= self.started):
            item = await self.out.get()
            chunks = []
            while True:
                if item is not None:
                    chunks.append(item)
                if self.out.empty():
                    break
                item = self.out.get_nowait()
            if chunks:
                written += len(chunks)
                await self.send({"type": "http.response.body", "body": b"".join(chunks),
                                 "more_body": True})
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def serve_stream(server: HttpServer, receive: Any, send: Any, credentials: Credentials,
                       timeout: float | None) -> None:
    """Answer one ``POST /v1/stream``."""
    stream = _Stream(server, send, credentials, timeout)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", NDJSON), (b"cache-control", b"no-cache")]})
    reader = server.loop.create_task(stream.read(receive))
    try:
        await stream.write()
    except OSError:  # the caller went away
        stream.caller_gone()
    finally:
        if not reader.done():
            reader.cancel()
