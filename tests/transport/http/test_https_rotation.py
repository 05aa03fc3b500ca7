"""The https:// server follows its TLS files: a rotated certificate, key and CA serve new
handshakes without a restart, connections already open go on, and a broken new set
keeps the current one, logged once."""

from __future__ import annotations

import http.client
import logging
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from tls_certs import issue, make_pki, write

from bridge.transport import tls_files
from bridge.transport.http.options import HttpOptions
from bridge.transport.http.server import HttpServer


@pytest.fixture(autouse=True)
def _check_every_handshake(monkeypatch):
    monkeypatch.setattr(tls_files, "CHECK_INTERVAL", 0.0)


def _server(pki, **options) -> HttpServer:
    cert, key = pki["server"]
    return HttpServer("https", "127.0.0.1", 0,
                      HttpOptions(tls_cert_file=cert, tls_key_file=key, **options), "bridge")


def _client_context(client: tuple[str, str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the tests read what is served
    if client is not None:
        context.load_cert_chain(*client)
    return context


def _connect(server: HttpServer, client: tuple[str, str] | None = None
             ) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=5,
                                             context=_client_context(client))
    connection.connect()
    return connection


def _served(connection: http.client.HTTPSConnection) -> x509.Certificate:
    der = connection.sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def _health(connection: http.client.HTTPSConnection) -> int:
    connection.request("GET", "/v1/health")
    response = connection.getresponse()
    response.read()
    return response.status


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _rotate(pki, name: str, ca_key=None, ca_cert=None) -> x509.Certificate:
    """A new server certificate in place of the served one: key first, then certificate,
    each replaced atomically (a moment where they do not match)."""
    directory = Path(pki["server"][0]).parent
    key, cert = issue(name, ca_key or pki["ca_key"], (ca_cert or pki["ca_cert"]).subject,
                      server=True)
    new_cert, new_key = write(directory, "next", key, cert)
    os.replace(new_key, pki["server"][1])
    os.replace(new_cert, pki["server"][0])
    return cert


def test_a_rotated_certificate_serves_new_handshakes_and_open_connections_go_on(tmp_path):
    pki = make_pki(tmp_path)
    server = _server(pki)
    try:
        before = _connect(server)
        first = _served(before)
        assert _subject(first) == "CN=server" and _health(before) in (200, 503)
        rotated = _rotate(pki, "server-2")
        after = _connect(server)
        assert _served(after).serial_number == rotated.serial_number
        assert _subject(_served(after)) == "CN=server-2"
        assert _health(after) in (200, 503)
        # The connection opened before goes on, with the certificate it began with.
        assert _health(before) in (200, 503)
        assert _served(before).serial_number == first.serial_number
        before.close()
        after.close()
    finally:
        server.shutdown()


def test_a_rotated_ca_takes_the_new_clients_and_drops_the_old_ones(tmp_path):
    pki = make_pki(tmp_path)
    server = _server(pki, tls_ca_file=pki["ca"], tls_client_auth=True)
    try:
        old_client = pki["client"]
        assert _health(_connect(server, old_client)) in (200, 503)
        new_ca_key, new_ca_cert = issue("test CA 2", ca=True)
        new_client = write(tmp_path, "client-2", *issue("client-2", new_ca_key,
                                                        new_ca_cert.subject))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _health(_connect(server, new_client))
        # The CA rotates (alone: the server certificate it signed stays valid).
        ca_next = write(tmp_path, "ca-next", new_ca_key, new_ca_cert)[0]
        os.replace(ca_next, pki["ca"])
        assert _health(_connect(server, new_client)) in (200, 503)
        # The CA no longer in the file is no longer trusted: the context is new, whole.
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _health(_connect(server, old_client))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _health(_connect(server, None))  # a client certificate is still required
    finally:
        server.shutdown()


def _garbage(pki) -> None:
    Path(pki["server"][0]).write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n"
                                       b"-----END CERTIFICATE-----\n")


def _mismatched(pki) -> None:
    key, _ = issue("other")
    _, other_key = write(Path(pki["server"][0]).parent, "other", key, pki["ca_cert"])
    os.replace(other_key, pki["server"][1])


def _unreadable(pki) -> None:
    os.remove(pki["server"][1])


@pytest.mark.parametrize("breakage", [_garbage, _mismatched, _unreadable])
def test_a_broken_new_set_keeps_the_current_certificate_and_is_logged_once(
        tmp_path, caplog, breakage):
    pki = make_pki(tmp_path)
    key_pem = Path(pki["server"][1]).read_text()
    server = _server(pki)
    try:
        served = _served(_connect(server)).serial_number
        with caplog.at_level(logging.INFO, logger="bridge.transport.tls_files"):
            breakage(pki)
            for _ in range(3):
                connection = _connect(server)
                assert _served(connection).serial_number == served
                assert _health(connection) in (200, 503)
                connection.close()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "keeping the current certificate" in message and "\n" not in message
        assert "PRIVATE KEY" not in message and key_pem.splitlines()[1] not in message
        # Whole files again: taken at the next handshake.
        rotated = _rotate(pki, "server-3")
        assert _served(_connect(server)).serial_number == rotated.serial_number
    finally:
        server.shutdown()


def test_checks_are_rate_limited(tmp_path, monkeypatch):
    from bridge.transport.http.tls import ReloadingContext

    monkeypatch.setattr(tls_files, "CHECK_INTERVAL", 1.0)
    pki = make_pki(tmp_path)
    now = [0.0]
    context = ReloadingContext(*pki["server"], None, False, clock=lambda: now[0])
    first = context.current
    _rotate(pki, "server-4")
    assert context.current is first  # within the interval: not even read
    now[0] += 2
    assert context.current is not first and context.files.reloads == 1
    assert isinstance(context, ssl.SSLContext)  # asyncio takes it as a context
