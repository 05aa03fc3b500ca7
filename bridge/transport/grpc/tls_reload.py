"""Server TLS credentials that follow their files: certificates rotate without a restart.

grpcio asks a dynamic credentials' fetcher for the certificate configuration before
each new connection's handshake (``grpc.dynamic_ssl_server_credentials``). The fetcher
here re-reads the certificate chain, key and CA files at most once a second and, when
their contents changed and form a usable set (the key matches the certificate, every
PEM parses), hands the new configuration over; connections and calls already open keep
theirs. A set that does not parse (say, a certificate written before its key) is logged
and the previous one stays in use until the files are whole again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc

LOG = logging.getLogger(__name__)

#: Seconds between two looks at the files.
CHECK_INTERVAL = 1.0


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def check_tls_files(cert: bytes, key: bytes, ca: bytes | None) -> None:
    """Raise ``ValueError`` unless ``cert`` (a PEM chain), ``key`` (its PEM private key) and
    ``ca`` (PEM certificates, optional) parse and the key matches the first certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    chain = x509.load_pem_x509_certificates(cert)
    private = serialization.load_pem_private_key(key, password=None)
    encoding, public_format = (serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(encoding, public_format) != \
            private.public_key().public_bytes(encoding, public_format):
        raise ValueError("the private key does not match the certificate")
    if ca is not None:
        x509.load_pem_x509_certificates(ca)


class ReloadingCredentials:
    """Dynamic server credentials over three files (see the module doc)."""

    def __init__(self, cert_file: str, key_file: str, ca_file: str | None,
                 require_client_auth: bool, clock: Any = time.monotonic) -> None:
        self.files = (cert_file, key_file, ca_file)
        self._clock = clock
        self._lock = threading.Lock()
        self._contents = self._read_all()
        self._refused: tuple[bytes | None, ...] | None = None
        self._checked = clock()
        self.reloads = 0
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(self._contents), self.fetch,
            require_client_authentication=require_client_auth)

    def _read_all(self) -> tuple[bytes | None, ...]:
        return tuple(_read(path) for path in self.files)

    @staticmethod
    def _configuration(contents: tuple[bytes | None, ...]) -> Any:
        cert, key, ca = contents
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> Any:
        """The new configuration when the files changed into a usable set, else None
        (keep the current one). Called by grpcio before each handshake; never raises."""
        now = self._clock()
        with self._lock:
            if now - self._checked < CHECK_INTERVAL:
                return None
            self._checked = now
            try:
                contents = self._read_all()
            except OSError as exc:
                LOG.error("Cannot read the TLS files (%s); keeping the current certificate",
                          exc)
                return None
            if contents == self._contents or contents == self._refused:
                return None
            try:
                cert, key, ca = contents
                if cert is None or key is None:
                    raise ValueError("no certificate or key")
                check_tls_files(cert, key, ca)
            except Exception as exc:  # noqa: BLE001 - any unusable file keeps the old set
                self._refused = contents
                LOG.error("The TLS files %s changed but cannot be used (%s); keeping the "
                          "current certificate", ", ".join(p for p in self.files if p), exc)
                return None
            self._contents, self._refused = contents, None
            self.reloads += 1
        LOG.info("TLS certificate, key and CA reloaded from %s",
                 ", ".join(p for p in self.files if p))
        return self._configuration(contents)


def server_credentials(cert_file: str, key_file: str, ca_file: str | None,
                       require_client_auth: bool) -> grpc.ServerCredentials:
    """Server credentials that pick up changed certificate files (see the module doc)."""
    return ReloadingCredentials(cert_file, key_file, ca_file, require_client_auth).credentials
