"""A server's TLS files, followed: certificates rotate without a restart.

:class:`TlsFiles` holds the certificate chain, key and CA files of a server and what a
transport built from them (gRPC's certificate configuration, an ``ssl.SSLContext``).
:meth:`TlsFiles.poll`, called before new handshakes, re-reads the files at most every
:data:`CHECK_INTERVAL` seconds and, when their contents changed and form a usable set
(every PEM parses, the key matches the certificate, the transport accepts them), builds
the new one; connections already open keep theirs. A set that cannot be used (say, a
certificate written before its key) is logged once, without the files' contents, and
the previous one stays in use until the files are whole again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bridge.exceptions import InvalidTransportURL

LOG = logging.getLogger(__name__)

#: Seconds between two looks at the files.
CHECK_INTERVAL = 1.0

#: The contents of the certificate chain, key and CA files (None: no such file).
Contents = tuple[bytes | None, bytes | None, bytes | None]

T = TypeVar("T")


def check_tls_options(url: Any, options: Any, plain: str, secure: str) -> None:
    """Refuse TLS options that do not go together, naming them (``InvalidTransportURL``).

    ``options`` has ``tls_cert_file``, ``tls_key_file``, ``tls_ca_file`` and
    ``tls_client_auth``; ``plain`` is the driver name of the wire without TLS, on which
    they are refused, and ``secure`` how the docs name its TLS URLs (``a grpcs://``).
    """
    tls_set = [name for name in ("tls_cert_file", "tls_key_file", "tls_ca_file")
               if getattr(options, name)] + (["tls_client_auth"] if options.tls_client_auth
                                             else [])
    if url.driver_name == plain and tls_set:
        raise InvalidTransportURL(str(url), f"{', '.join(tls_set)} need {secure} URL, "
                                  f"not {url}")
    if bool(options.tls_cert_file) != bool(options.tls_key_file):
        raise InvalidTransportURL(str(url), "tls_cert_file and tls_key_file go together")
    if options.tls_client_auth and not options.tls_ca_file:
        raise InvalidTransportURL(str(url), "tls_client_auth needs tls_ca_file (the CA that "
                                  "signs client certificates)")


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


class TlsFiles(Generic[T]):
    """A certificate chain, key and CA file, and ``build(contents)`` made from them.

    ``build`` is called once here (its errors are the caller's: the files must be usable
    at start) and again by :meth:`poll` for each usable new set; an error it raises then
    refuses the set like a file that does not parse.
    """

    def __init__(self, cert_file: str, key_file: str, ca_file: str | None,
                 build: Callable[[Contents], T], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.files = (cert_file, key_file, ca_file)
        self._build = build
        self._clock = clock
        self._lock = threading.Lock()
        self._contents = self.read()
        #: What ``build`` made of the files in use.
        self.current: T = build(self._contents)
        self._refused: Contents | None = None
        self._read_error: str | None = None
        self._checked = clock()
        #: How many new sets were taken into use.
        self.reloads = 0

    def read(self) -> Contents:
        """The files' contents now; raise ``OSError`` when one cannot be read."""
        cert, key, ca = self.files
        return _read(cert), _read(key), _read(ca)

    @property
    def names(self) -> str:
        """The files' paths, for log lines."""
        return ", ".join(path for path in self.files if path)

    def poll(self) -> T | None:
        """What ``build`` made of the files when they changed into a usable set (it is
        then :attr:`current`), else None: keep the current one. Never raises."""
        now = self._clock()
        with self._lock:
            if now - self._checked < CHECK_INTERVAL:
                return None
            self._checked = now
            try:
                contents = self.read()
            except OSError as exc:
                if str(exc) != self._read_error:  # one line while the error stays
                    self._read_error = str(exc)
                    LOG.error("Cannot read the TLS files (%s); keeping the current "
                              "certificate", exc)
                return None
            self._read_error = None
            if contents == self._contents or contents == self._refused:
                return None
            try:
                cert, key, ca = contents
                if cert is None or key is None:
                    raise ValueError("no certificate or key")
                check_tls_files(cert, key, ca)
                built = self._build(contents)
            except Exception as exc:  # noqa: BLE001 - any unusable file keeps the old set
                self._refused = contents
                LOG.error("The TLS files %s changed but cannot be used (%s); keeping the "
                          "current certificate", self.names, _reason(exc))
                return None
            self._contents, self._refused, self.current = contents, None, built
            self.reloads += 1
        LOG.info("TLS certificate, key and CA reloaded from %s", self.names)
        return built


def _reason(exc: BaseException) -> str:
    """``exc`` in one line, for a log line: never the files' contents."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]

