"""The ASGI application of an HTTP server: the routes of docs/http.md.

* ``POST /v1/call`` (``200 {"result": ...}``), ``POST /v1/cast`` (``202 {}``),
  ``POST /v1/{topic}/{method}`` (the arguments as the body), ``POST /v1/stream``
  (newline-delimited JSON, :mod:`bridge.transport.http.stream`);
* ``GET /v1/describe``, ``GET /v1/openapi.json``, ``GET /v1/health``;
* ``GET /`` and ``GET /static/...``: the explorer page.

Errors are the JSON form of ``google.rpc.Status`` (:mod:`bridge.transport.http.status`).
Every request runs on the server's event loop; endpoint methods never do.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING, Any

from bridge.auth.identity import Credentials, bearer_credentials
from bridge.transport.http import values
from bridge.transport.http.incoming import Outcome
from bridge.transport.http.request import (
    CONTEXT_HEADER,
    TIMEOUT_HEADER,
    Request,
    parse_call,
    parse_context_header,
    parse_shorthand,
    parse_timeout,
)
from bridge.transport.http.status import (
    Rejection,
    error_response,
    failure_of_exception,
    plain_error,
)

if TYPE_CHECKING:
    from bridge.transport.http.server import HttpServer

LOG = logging.getLogger(__name__)

JSON = b"application/json"
WIRE = "http"
#: The credentials of a request that presents none (the common case, made once).
NO_CREDENTIALS = Credentials(WIRE)
_EXPLORER_DIR = pathlib.Path(__file__).resolve().parent / "explorer"
_STATIC_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
                 ".css": b"text/css; charset=utf-8"}
_TIMEOUT = TIMEOUT_HEADER.encode()
_CONTEXT = CONTEXT_HEADER.encode()
_POST_ONLY = frozenset({"/v1/call", "/v1/cast", "/v1/stream"})
_GET_ONLY = frozenset({"/v1/describe", "/v1/openapi.json", "/v1/health", "/"})


class Disconnected(Exception):  # noqa: N818 - a condition, not an error
    """The caller went away before its request was read."""


class _Headers:
    """The request headers the bridge reads, from one pass over the scope's list."""

    __slots__ = ("authorization", "content_length", "context", "several_authorizations",
                 "timeout")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.authorization: bytes | None = None
        self.several_authorizations = False
        self.content_length = -1
        self.context: str | None = None
        self.timeout: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                self.content_length = int(value) if value.isdigit() else -1
            elif name == b"authorization":
                self.several_authorizations = self.authorization is not None
                self.authorization = value
            elif name == _TIMEOUT:
                self.timeout = value.decode("latin-1")
            elif name == _CONTEXT:
                self.context = value.decode("latin-1")


def credentials_of(scope: dict[str, Any], headers: _Headers) -> Credentials:
    """What the caller presented: the ``Authorization`` header and, when the server
    requires client certificates (so TLS verified the caller's against its CA), the
    certificate's names (see :func:`bridge.transport.http.server.peer_names`)."""
    tls = (scope.get("extensions") or {}).get("tls")
    names = tuple(tls.get("bridge_peer_names") or ()) if tls else ()
    if headers.authorization is None and not names:
        return NO_CREDENTIALS
    if headers.several_authorizations:
        return Credentials(WIRE, malformed="several authorization headers")
    return bearer_credentials(WIRE, headers.authorization, names)


async def respond(send: Any, status: int, body: bytes, content_type: bytes = JSON,
                  extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send a whole response."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any, headers: _Headers, limit: int) -> bytes:
    """The request body; RESOURCE_EXHAUSTED past ``limit`` bytes."""
    if headers.content_length > limit:
        raise _too_large(headers.content_length, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected()
    body = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, "at least ")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, qualifier: str = "") -> Rejection:
    return Rejection("RESOURCE_EXHAUSTED", f"the request body is {qualifier}{size} bytes, over "
                     f"max_message_size ({limit})", "max_message_size", limit)


def _expire(future: Any, incoming: Any, seconds: float) -> None:
    if not future.done():
        future.set_result(error_response(Rejection(
            "DEADLINE_EXCEEDED", f"no answer within the request timeout ({seconds:g} s)").failure))
        incoming.caller_cancelled()


class BridgeApp:
    """The ASGI 3 application of one :class:`~bridge.transport.http.server.HttpServer`."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._route(scope, receive, tracked)
        except Rejection as rejection:
            from bridge.transport.http.server import count_refusal

            count_refusal(rejection)
            LOG.warning("HTTP %s %s refused: %s", scope["method"], scope["path"][:200],
                        rejection)
            if not started:
                await respond(send, *error_response(rejection.failure))
        except Disconnected:
            return
        except Exception:  # a defect: the caller gets a 500, the server goes on
            LOG.exception("Error while answering HTTP %s %s", scope["method"],
                          scope["path"][:200])
            if not started:
                await respond(send, *plain_error("INTERNAL", "internal error (logged)"))

    async def _route(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        if method == "POST":
            if path == "/v1/call" or path == "/v1/cast":
                await self._call(scope, receive, send, path == "/v1/call")
                return
            raw = scope.get("raw_path") or path.encode()
            if raw.count(b"/") == 3 and raw.startswith(b"/v1/"):
                await self._shorthand(scope, receive, send, raw)
                return
            if path == "/v1/stream":
                from bridge.transport.http.stream import serve_stream

                headers = _Headers(scope)
                await serve_stream(self.server, receive, send, credentials_of(scope, headers),
                                   self._timeout(headers))
                return
        elif method in ("GET", "HEAD"):
            if await self._get(scope, send, path):
                return
        if path in _POST_ONLY or path in _GET_ONLY or (
                path.startswith("/v1/") and path.count("/") == 3):
            allow = b"GET" if path in _GET_ONLY or path.startswith("/static/") else b"POST"
            await respond(send, *plain_error("UNIMPLEMENTED", f"{method} is not allowed on "
                                             f"{path}; use {allow.decode()}", 405),
                          extra=((b"allow", allow),))
            return
        await respond(send, *plain_error("NOT_FOUND", f"no such path: {path[:200]}"))

    def _timeout(self, headers: _Headers) -> float | None:
        return None if headers.timeout is None else parse_timeout(headers.timeout)

    async def _call(self, scope: dict[str, Any], receive: Any, send: Any,
                    wants_reply: bool) -> None:
        headers = _Headers(scope)
        body = await read_body(receive, headers, self.server.options.max_message_size)
        try:
            value = values.loads(body)
        except values.JSONValueError as exc:
            raise Rejection("INVALID_ARGUMENT", str(exc)) from None
        request = parse_call(value)
        await respond(send, *await self.invoke(request, self._timeout(headers),
                                               credentials_of(scope, headers), wants_reply))

    async def _shorthand(self, scope: dict[str, Any], receive: Any, send: Any,
                         raw: bytes) -> None:
        headers = _Headers(scope)
        body = await read_body(receive, headers, self.server.options.max_message_size)
        try:
            args = values.loads(body, "the request body (the arguments)") if body.strip() else {}
        except values.JSONValueError as exc:
            raise Rejection("INVALID_ARGUMENT", str(exc)) from None
        ctxt = parse_context_header(headers.context) if headers.context is not None else {}
        request = parse_shorthand(raw, scope.get("query_string", b""), args, ctxt)
        await respond(send, *await self.invoke(request, self._timeout(headers),
                                               credentials_of(scope, headers), True))

    async def invoke(self, request: Request, remaining: float | None,
                     credentials: Credentials, wants_reply: bool) -> Outcome:
        """Deliver ``request``; the answer (a call) or ``202 {}`` once accepted (a cast)."""
        server = self.server
        if not wants_reply:
            incoming = server.incoming(request, remaining, None, credentials)
            server.deliver(request, incoming)
            refusal = incoming.refusal  # the server's guard refused it: tell the caller
            if refusal is not None:
                return error_response(failure_of_exception(refusal))
            return 202, b"{}"
        future = server.loop.create_future()

        def resolve(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        server.admission.enter()
        timer = None
        try:
            incoming = server.incoming(request, remaining, resolve, credentials)
            server.deliver(request, incoming)
            if remaining is not None and not future.done():
                timer = server.loop.call_later(remaining, _expire, future, incoming, remaining)
            return await future
        finally:
            server.admission.leave()
            if timer is not None:
                timer.cancel()

    async def _get(self, scope: dict[str, Any], send: Any, path: str) -> bool:
        """Answer a GET; False when ``path`` is not one."""
        if path == "/v1/health":
            serving = self.server.serving
            await respond(send, 200 if serving else 503, values.dumps(
                {"status": "SERVING" if serving else "NOT_SERVING"}))
            return True
        if path == "/v1/describe" or path == "/v1/openapi.json":
            description = self.server.describe(credentials_of(scope, _Headers(scope)))
            if path == "/v1/describe":
                await respond(send, 200, values.dumps(description))
            else:
                from bridge.transport.http.openapi import openapi_document

                await respond(send, 200, values.dumps(openapi_document(description)))
            return True
        if not self.server.options.explorer:
            return False
        name = "index.html" if path == "/" else (
            path[len("/static/"):] if path.startswith("/static/") else "")
        page = _static(name)
        if page is None:
            return False
        await respond(send, 200, page[0], page[1], ((b"cache-control", b"no-cache"),))
        return True


_STATIC: dict[str, tuple[bytes, bytes] | None] = {}


def _static(name: str) -> tuple[bytes, bytes] | None:
    """(content, content type) of an explorer file, or None."""
    if name in _STATIC:
        return _STATIC[name]
    found = None
    if name and "/" not in name and not name.startswith("."):
        path = _EXPLORER_DIR / name
        kind = _STATIC_TYPES.get(path.suffix)
        if kind is not None and path.is_file():
            found = (path.read_bytes(), kind)
    if len(_STATIC) < 64:
        _STATIC[name] = found
    return found
