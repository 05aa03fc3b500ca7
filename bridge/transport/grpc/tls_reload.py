"""Server TLS credentials that follow their files: certificates rotate without a restart.

grpcio asks a dynamic credentials' fetcher for the certificate configuration before
each new connection's handshake (``grpc.dynamic_ssl_server_credentials``). The fetcher
here polls the certificate chain, key and CA files through
:class:`bridge.transport.tls_files.TlsFiles` (at most once a second) and, when their
contents changed and form a usable set (the key matches the certificate, every PEM
parses), hands the new configuration over; connections and calls already open keep
theirs. A set that does not parse (say, a certificate written before its key) is logged
and the previous one stays in use until the files are whole again.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from bridge.transport.tls_files import Contents, TlsFiles


def _configuration(contents: Contents) -> Any:
    cert, key, ca = contents
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


class ReloadingCredentials:
    """Dynamic server credentials over three files (see the module doc)."""

    def __init__(self, cert_file: str, key_file: str, ca_file: str | None,
                 require_client_auth: bool, clock: Any = time.monotonic) -> None:
        self._files = TlsFiles(cert_file, key_file, ca_file, _configuration, clock=clock)
        self.files = self._files.files
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._files.current, self.fetch,
            require_client_authentication=require_client_auth)

    @property
    def reloads(self) -> int:
        """How many new certificate sets were handed over."""
        return self._files.reloads

    def fetch(self) -> Any:
        """The new configuration when the files changed into a usable set, else None
        (keep the current one). Called by grpcio before each handshake; never raises."""
        return self._files.poll()


def server_credentials(cert_file: str, key_file: str, ca_file: str | None,
                       require_client_auth: bool) -> grpc.ServerCredentials:
    """Server credentials that pick up changed certificate files (see the module doc)."""
    return ReloadingCredentials(cert_file, key_file, ca_file, require_client_auth).credentials
