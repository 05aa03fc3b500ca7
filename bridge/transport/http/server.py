"""One HTTP server per bound address, shared by its listeners: uvicorn on an event loop
in a thread of its own (never a loop that grpc.aio also runs on), the router, the
limit on calls in flight, and the hand-back of answers from worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.auth.identity import Credentials
from bridge.stats import record_refusal
from bridge.target import Target
from bridge.transport.http.incoming import HttpIncoming
from bridge.transport.http.listener import HttpListener
from bridge.transport.http.options import HttpOptions
from bridge.transport.http.request import Request
from bridge.transport.http.status import Rejection
from bridge.transport.http.tls import ReloadingContext
from bridge.transport.shared_server import Admission, LoopAnswers, Router

LOG = logging.getLogger(__name__)
# uvicorn says "Started server process" and the like at INFO: the bridge logs its own.
_UVICORN_LOG = logging.getLogger("uvicorn.error")
if _UVICORN_LOG.level == logging.NOTSET:
    _UVICORN_LOG.setLevel(logging.WARNING)

_STARTUP_TIMEOUT = 30.0


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def count_refusal(rejection: Rejection) -> None:
    """Count a request refused before any listener took it (bridge_refusals_total)."""
    record_refusal("http", rejection.reason.lower())


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``. Made with ``IPPROTO_TCP`` named, so that the
    connections it accepts inherit it and asyncio turns Nagle's algorithm off on them
    (it does only for sockets that say TCP): a response's head and body are two writes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}"
                      ) from None
    return sock


def peer_names(certificate: dict[str, Any]) -> tuple[str, ...]:
    """The names of a verified client certificate (``SSLSocket.getpeercert()``), in order
    of preference, as on gRPC: SPIFFE URI SANs, then DNS SANs, then the subject CN."""
    sans = certificate.get("subjectAltName") or ()
    spiffe = [value for kind, value in sans if kind == "URI" and value.startswith("spiffe://")]
    dns = [value for kind, value in sans if kind == "DNS"]
    common = [value for rdn in certificate.get("subject") or () for key, value in rdn
              if key == "commonName"]
    names = [name for name in (*spiffe, *dns, *common) if name and name.isprintable()]
    return tuple(dict.fromkeys(names))


class _TlsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, adding the ASGI TLS extension to each request's scope:
    ``client_cert_chain`` (the client certificate, PEM) and, when the server requires
    client certificates (so TLS verified it against the CA), ``bridge_peer_names``."""

    #: Set on the subclass a server makes: client certificates are required (verified).
    verified_peers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        names = (peer_names(ssl_object.getpeercert() or {})
                 if der and self.verified_peers else ())
        self._tls = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                     "tls_version": None, "cipher_suite": None, "bridge_peer_names": names}

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls}  # type: ignore[typeddict-unknown-key]


class _Config(uvicorn.Config):
    """uvicorn's configuration, serving TLS (when ``tls`` holds the arguments of
    :class:`ReloadingContext`) with a context that follows its files."""

    def __init__(self, app: Any, tls: dict[str, Any] | None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._tls = tls

    def load(self) -> None:
        super().load()
        if self._tls is not None:
            self.ssl = ReloadingContext(**self._tls)


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, telling another thread when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()



def _over_the_limit(limit: int) -> Rejection:
    return Rejection("RESOURCE_EXHAUSTED", f"over max_concurrent_calls ({limit}): retry later",
                     "max_concurrent_calls", limit)

class HttpServer:
    """An HTTP server on ``host:port`` (port 0: a free one), with its router."""

    def __init__(self, scheme: str, host: str, port: int, options: HttpOptions,
                 default_exchange: str) -> None:
        from bridge.transport.http.app import BridgeApp

        self.scheme = scheme
        self.host = host
        self.options = options
        self.router: Router[HttpListener] = Router(default_exchange)
        self.admission = Admission(options.max_concurrent_calls, _over_the_limit)
        #: False while the process says it cannot serve (set through a listener).
        self.process_serving = True
        self.running = False
        self._answers = LoopAnswers("HTTP call")
        self._socket = _listening_socket(host, port)
        self.port = int(self._socket.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.app = BridgeApp(self)
        self._uvicorn = _Uvicorn(self._config())
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"bridge-http-{self.port}",
                                        daemon=True)
        self._thread.start()
        if not self._uvicorn.listening.wait(_STARTUP_TIMEOUT) or self._failure is not None:
            self._stop_thread()
            raise OSError(f"the HTTP server on {self.address} did not start: "
                          f"{self._failure or 'timed out'}")
        self.running = True

    @property
    def address(self) -> str:
        """``scheme://host:port``: a URL clients can use."""
        return f"{self.scheme}://{host_port(self.host, self.port)}"

    def _config(self) -> uvicorn.Config:
        opts = self.options
        tls: dict[str, Any] = {}
        if self.scheme == "https":
            if not (opts.tls_cert_file and opts.tls_key_file):
                raise ValueError("an https:// server needs tls_cert_file and tls_key_file")
            tls = {"cert_file": opts.tls_cert_file, "key_file": opts.tls_key_file,
                   "ca_file": opts.tls_ca_file or None,
                   "client_auth": bool(opts.tls_client_auth and opts.tls_ca_file)}
        protocol: Any = "httptools"
        if tls:
            protocol = type("TlsProtocol", (_TlsProtocol,),
                            {"verified_peers": tls["client_auth"]})
        return _Config(
            self.app, tls or None, loop="none", http=protocol, ws="none",
            lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=opts.keepalive_timeout,
            timeout_graceful_shutdown=max(1, int(opts.shutdown_grace)))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._uvicorn.serve(sockets=[self._socket]))
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._failure = exc
            self._uvicorn.listening.set()
            if not isinstance(exc, Exception):
                raise
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def _stop_thread(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=self.options.shutdown_grace + 10)
        self._socket.close()

    def shutdown(self) -> None:
        """Stop taking connections; answers in flight get ``shutdown_grace`` seconds."""
        if not self.running:
            return
        self.running = False
        if threading.current_thread() is self._thread:
            self._uvicorn.should_exit = True  # released from the loop itself: no waiting
            return
        self._stop_thread()

    # -- answers from other threads ----------------------------------------------------------

    def hand_back(self, resolve: Callable[[Any], None], outcome: Any) -> None:
        """Run ``resolve(outcome)`` on the loop; callable from any thread. Answers that
        arrive together are run in one wake-up of the loop."""
        self._answers.hand_back(self.loop, threading.current_thread() is self._thread,
                                resolve, outcome)

    # -- requests ----------------------------------------------------------------------------

    def incoming(self, request: Request, remaining: float | None,
                 answer: Callable[[Any], None] | None, credentials: Credentials | None,
                 **encoders: Any) -> HttpIncoming:
        """The IncomingMessage of ``request``; its answer is handed back to the loop."""
        if answer is not None and request.fanout:
            raise Rejection("INVALID_ARGUMENT", "A call cannot be used with fanout")
        deadline = None if remaining is None else time.monotonic() + remaining
        handed = (None if answer is None
                  else (lambda outcome: self.hand_back(answer, outcome)))
        return HttpIncoming(request, deadline, remaining, handed,
                            include_traceback=self.options.include_traceback,
                            max_send=self.options.max_message_size, credentials=credentials,
                            **encoders)

    def deliver(self, request: Request, incoming: HttpIncoming) -> None:
        """Hand ``incoming`` to one listener of its target (every one for fanout); raise
        :class:`Rejection` when none takes it."""
        listeners = self.router.candidates(request.exchange, request.topic, request.server,
                                           request.fanout)
        delivered = 0
        for listener in listeners:
            if listener.deliver(incoming.copy_for_fanout() if delivered else incoming):
                delivered += 1
                if not request.fanout:
                    return
        if delivered:
            return
        if listeners:
            raise Rejection("UNAVAILABLE", f"the servers of {request.target_text()} are "
                            "stopping or not started")
        fallback = self.router.fallback
        if fallback is not None:
            incoming.target = Target(exchange=request.exchange, topic=request.topic,
                                     server=request.server, fanout=request.fanout or None)
            handler = fallback(incoming.target)
            if handler is not None:
                handler(incoming)
                return
        raise Rejection("TARGET_NOT_FOUND", f"no server of {request.target_text()} at "
                        f"{self.address}")

    def describe(self, credentials: Credentials | None) -> dict[str, Any]:
        """What the servers behind this address serve (their listeners' ``describe``, then
        the unrouted handler's), for this caller."""
        callables: list[Any] = []
        for listener in self.router.listeners():
            if listener.started and listener.describe is not None:
                callables.append(listener.describe)
        fallback_describe = getattr(self.router.fallback, "describe", None)
        if fallback_describe is not None:
            callables.append(fallback_describe)
        targets: list[Any] = []
        seen: list[Any] = []
        for describe in callables:
            if describe in seen:  # one server with two listeners here
                continue
            seen.append(describe)
            targets.extend(describe(credentials).get("targets", ()))
        return {"targets": targets}

    @property
    def serving(self) -> bool:
        """The health ``GET /v1/health`` reports: some listener serves, the process can."""
        return self.running and self.process_serving and (
            self.router.serving or self.router.fallback is not None)
