"""grpcs:// with TLS and mutual TLS, using throwaway certificates."""

from __future__ import annotations

import pytest
from tls_certs import make_pki

import bridge
from endpoints import default_endpoints


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate, a client certificate, and a rogue self-signed client."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _url(base: str, **options: str) -> str:
    return base + "?" + "&".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture
def tls_server(pki):
    servers = []

    def start(client_auth: bool):
        cert, key = pki["server"]
        options = {"tls_cert_file": cert, "tls_key_file": key}
        if client_auth:
            options.update(tls_ca_file=pki["ca"], tls_client_auth="true")
        transport = bridge.get_transport(None, _url("grpcs://127.0.0.1:0", **options))
        srv = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                    default_endpoints())
        srv.start()
        servers.append((srv, transport))
        return srv.addresses[0]

    yield start
    for srv, transport in servers:
        srv.stop()
        srv.wait()
        transport.cleanup()


def _call(url: str) -> str:
    transport = bridge.get_transport(None, url)
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10,
                                       retry=0)
        return client.call({}, "ping")
    finally:
        transport.cleanup()


def test_tls(tls_server, pki):
    address = tls_server(client_auth=False)
    assert address.startswith("grpcs://127.0.0.1:")
    assert _call(_url(address, tls_ca_file=pki["ca"])) == "pong"
    # A client that does not trust the server's CA is refused.
    with pytest.raises(bridge.MessageDeliveryFailure):
        _call(_url(address, tls_ca_file=pki["rogue"][0]))
    # A plain-text client cannot talk to a TLS server.
    with pytest.raises(bridge.MessageDeliveryFailure):
        _call(address.replace("grpcs://", "grpc://"))


def test_mutual_tls(tls_server, pki):
    address = tls_server(client_auth=True)
    cert, key = pki["client"]
    assert _call(_url(address, tls_ca_file=pki["ca"], tls_cert_file=cert,
                      tls_key_file=key)) == "pong"
    with pytest.raises(bridge.MessageDeliveryFailure):  # no client certificate
        _call(_url(address, tls_ca_file=pki["ca"]))
    rogue_cert, rogue_key = pki["rogue"]
    with pytest.raises(bridge.MessageDeliveryFailure):  # not signed by the server's CA
        _call(_url(address, tls_ca_file=pki["ca"], tls_cert_file=rogue_cert,
                   tls_key_file=rogue_key))


def test_several_hosts_need_the_server_name(pki):
    from bridge.app import cli

    cert, key = pki["server"]
    transport = bridge.get_transport(None, _url("grpcs://127.0.0.1:0,127.0.0.2:0",
                                                tls_cert_file=cert, tls_key_file=key))
    srv = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                default_endpoints())
    srv.start()
    try:
        (address,) = srv.addresses
        assert address.startswith("grpcs://127.0.0.1:") and ",127.0.0.2:" in address
        # Every server holds a certificate for "localhost"; the hosts are addresses.
        assert _call(_url(address, tls_ca_file=pki["ca"], tls_server_name="localhost")) == (
            "pong")
        with pytest.raises(bridge.InvalidTransportURL, match="tls_server_name"):
            _call(_url(address, tls_ca_file=pki["ca"]))
        tls = {"tls_ca_file": pki["ca"]}
        assert cli.check_health(address, tls={**tls, "tls_server_name": "localhost"}) == (
            "SERVING")
        with pytest.raises(cli.UsageError, match="tls_server_name"):
            cli.check_health(address, tls=tls)
    finally:
        srv.stop()
        srv.wait()
        transport.cleanup()
