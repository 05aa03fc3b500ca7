"""Options of the HTTP driver: the ``[http]`` conf group, overridden by the URL query."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.exceptions import InvalidTransportURL
from bridge.transport.tls_files import check_tls_options

MIB = 1024 * 1024


def _at_least(minimum: float, default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"minimum": minimum})


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    """Options of the HTTP driver (docs/http.md)."""

    #: Largest request body (a ``/v1/stream`` line) accepted and reply sent, in bytes.
    max_message_size: int = _at_least(1, 4 * MIB)
    #: Calls a server address runs at once; more get RESOURCE_EXHAUSTED (0: no limit).
    max_concurrent_calls: int = _at_least(0, 0)
    #: Send formatted tracebacks of endpoint failures to callers.
    include_traceback: bool = False
    #: Seconds a server waits for replies in flight when its last listener is released.
    shutdown_grace: float = _at_least(0, 5.0)
    #: Seconds an idle keep-alive connection stays open.
    keepalive_timeout: int = _at_least(1, 5)
    #: Serve the explorer page on ``GET /``.
    explorer: bool = True
    #: PEM certificate chain: the server's, or the client's for mutual TLS.
    tls_cert_file: str = ""
    #: PEM private key of ``tls_cert_file``.
    tls_key_file: str = ""
    #: PEM CA bundle: clients verify the server with it (system roots when empty);
    #: servers verify client certificates with it.
    tls_ca_file: str = ""
    #: Servers require a client certificate signed by ``tls_ca_file`` (mutual TLS).
    tls_client_auth: bool = False
    #: Clients expect this name in the server certificate instead of the URL's host.
    tls_server_name: str = ""


def check_options(url: Any, options: HttpOptions) -> None:
    """Refuse options that do not go together, naming them."""
    check_tls_options(url, options, "http", "an https://")
    if len(url.hosts) > 1:
        raise InvalidTransportURL(str(url), f"an http(s):// URL names one host, not {url}")
