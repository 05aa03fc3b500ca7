"""The TLS context of an https:// server, following its files: certificates rotate
without a restart.

asyncio makes each new connection's TLS object with the server context's ``wrap_bio``.
:class:`ReloadingContext` is that server context: before each new connection it polls
the certificate chain, key and CA files (:class:`bridge.transport.tls_files.TlsFiles`,
at most once a second) and makes the connection from the newest usable context, a
whole ``ssl.SSLContext`` built from the files (certificate, key, CA and client
certificate checks alike). Connections and calls already open keep the context they
began with; a set that cannot be used is logged and the current one stays.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

from bridge.transport.tls_files import Contents, TlsFiles


def server_context(cert_file: str, key_file: str, ca_file: str | None,
                   client_auth: bool) -> ssl.SSLContext:
    """A server context from the files: with ``ca_file``, client certificates are checked
    against it, and required when ``client_auth``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    if ca_file:
        context.verify_mode = ssl.CERT_REQUIRED if client_auth else ssl.CERT_OPTIONAL
        context.load_verify_locations(ca_file)
    return context


class ReloadingContext(ssl.SSLContext):
    """A server ``SSLContext`` whose connections use the newest usable files (see the
    module doc). Only ``wrap_bio`` and ``wrap_socket`` are meant to be used on it."""

    files: TlsFiles[ssl.SSLContext]

    def __new__(cls, *args: Any, **kwargs: Any) -> ReloadingContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, cert_file: str, key_file: str, ca_file: str | None,
                 client_auth: bool, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()

        def build(_contents: Contents) -> ssl.SSLContext:
            # From the paths (ssl reads no PEM from memory); files changed since they
            # were read are seen, and taken, at the next poll.
            return server_context(cert_file, key_file, ca_file, client_auth)

        self.files = TlsFiles(cert_file, key_file, ca_file, build, clock=clock)

    @property
    def current(self) -> ssl.SSLContext:
        """The context new connections are made with, once the files are polled."""
        self.files.poll()
        return self.files.current

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        """A new connection's TLS object, from the newest usable context."""
        return self.current.wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        """A TLS socket, from the newest usable context."""
        return self.current.wrap_socket(*args, **kwargs)
