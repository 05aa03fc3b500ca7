"""AMQP over TLS against the real broker, through a TLS-terminating proxy.

The local RabbitMQ has no TLS listener, so ``tcp_proxy.TcpProxy(tls=...)`` on
127.0.0.1 (port 0) does the TLS side, with throwaway certificates
(``tls_certs``), and forwards the decrypted stream to the broker: to the driver it
is a TLS broker, and its refusals are real TLS refusals. Each test uses an exchange
and topic of its own and bounds every wait.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from amqp_support import (
    FAST_RECONNECT,
    Peer,
    call_in_thread,
    delete_queues,
    drain,
    oslo_conf,
    unique,
    wait_for,
)
from tcp_proxy import TcpProxy
from tls_certs import issue, make_pki, write

import bridge

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker_available")]

#: The real broker, behind the proxy.
BROKER = ("127.0.0.1", 5672)
#: How long a refused connection may take to be reported (kombu tries twice, 2 s apart).
REFUSAL_BOUND = 15.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Any]:
    """The test CA's files, and server certificates for the refusal tests."""
    directory = tmp_path_factory.mktemp("amqp-pki")
    pki = make_pki(directory)
    ca_key, ca_name = pki["ca_key"], pki["ca_cert"].subject
    # Signed by the test CA, but for another host name.
    pki["elsewhere"] = write(directory, "elsewhere", *issue(
        "elsewhere", ca_key, ca_name, server=True, names=("elsewhere.example",)))
    # For the name localhost only (no 127.0.0.1).
    pki["localhost"] = write(directory, "localhost", *issue(
        "localhost", ca_key, ca_name, server=True, names=("localhost",)))
    # For localhost, but signed by a CA the clients do not trust.
    other_key, other_cert = issue("other CA", ca=True)
    pki["foreign"] = write(directory, "foreign", *issue(
        "server", other_key, other_cert.subject, server=True))
    return pki


@pytest.fixture
def tls_proxy(pki):
    """``tls_proxy(cert="server", client_ca=None)``: a TLS proxy to the broker, started."""
    proxies: list[TcpProxy] = []

    def start(cert: str = "server", client_ca: str | None = None) -> TcpProxy:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pki[cert])
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        proxy = TcpProxy(BROKER, tls=context)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def names():
    """A unique exchange and topic, and the clean-up of what servers left on the broker."""
    exchange, topic = unique("tlsx"), unique("tls")
    yield exchange, topic
    delete_queues([topic, f"{topic}.s1"], [exchange])


def tls_url(proxy: TcpProxy, host: str = "localhost", **options: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"ssl": "true", **options}.items())
    return f"rabbit://guest:guest@{host}:{proxy.port}/?{query}"


@contextlib.contextmanager
def served(url: str, names: tuple[str, str]) -> Iterator[tuple[Peer, Any, queue.Queue]]:
    """A bridge server ``s1`` on ``url``: (the peer that makes clients, server, events)."""
    exchange, topic = names
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge", url)
    try:
        server = peer.server(exchange, topic, "s1", events)
        yield peer, server, events
    finally:
        peer.close()


def client_of(peer: Peer, names: tuple[str, str], timeout: float = 10) -> Any:
    return peer.client(*names, timeout=timeout)


def round_trip(peer: Peer, names: tuple[str, str], events: queue.Queue) -> None:
    """call, cast and a remote exception through a client of ``peer``."""
    client = client_of(peer, names)
    assert client.call({"user": "u1"}, "echo", value={"a": [1, 2.5, None]}) == \
        {"a": [1, 2.5, None]}
    token = unique("cast")
    client.cast({}, "record", token=token)
    assert drain(events, 1) == [("s1", token)]
    with pytest.raises(ValueError, match="bad value"):
        client.call({}, "fail")


def refused_call(url: str, names: tuple[str, str]) -> tuple[BaseException, float]:
    """A retry=0 call on ``url``: the error it ends with, and how long that took."""
    transport = bridge.get_transport(None, url)
    started = time.monotonic()
    try:
        exchange, topic = names
        client = bridge.get_rpc_client(transport, bridge.Target(exchange=exchange, topic=topic),
                                       timeout=REFUSAL_BOUND, retry=0)
        with pytest.raises(bridge.MessageDeliveryFailure) as info:
            client.call({}, "echo", value=1)
        return info.value, time.monotonic() - started
    finally:
        transport.cleanup()


def refused_server(url: str, names: tuple[str, str]) -> tuple[BaseException, float]:
    """A server start on ``url``: the error it fails with, and how long that took."""
    started = time.monotonic()
    with pytest.raises(bridge.ServerListenError) as info, served(url, names):
        pass
    return info.value, time.monotonic() - started


def assert_refused(url: str, names: tuple[str, str], reason: str) -> None:
    """Both a client and a server on ``url`` fail soon, saying ``reason``."""
    for attempt in (refused_call, refused_server):
        error, elapsed = attempt(url, names)
        assert reason in str(error) and elapsed < REFUSAL_BOUND, (attempt.__name__, error)


def generations(server: Any, peer: Peer) -> tuple[int, int]:
    """How many connections the server's listener and the last client transport made."""
    client = peer.transports[-1].driver.client
    return server.listeners[0]._conn.generation, client.connection.generation


def test_call_cast_and_remote_exception_over_tls(tls_proxy, pki, names):
    proxy = tls_proxy()
    with served(tls_url(proxy, ssl_ca_file=pki["ca"]), names) as (peer, server, events):
        assert server.healthy
        round_trip(peer, names, events)
    # Both connections (the server's and the client's) went through the TLS proxy.
    assert proxy.client_names == [None, None] and proxy.handshake_errors == []


def test_mutual_tls(tls_proxy, pki, names):
    proxy = tls_proxy(client_ca=pki["ca"])
    cert, key = pki["client"]
    url = tls_url(proxy, ssl_ca_file=pki["ca"], ssl_cert_file=cert, ssl_key_file=key)
    with served(url, names) as (peer, _, events):
        round_trip(peer, names, events)
    assert proxy.client_names == ["client", "client"]

    # Without a client certificate, or with one the proxy's CA did not sign: refused,
    # with the TLS alert as the reason, in bounded time.
    rogue_cert, rogue_key = pki["rogue"]
    assert_refused(tls_url(proxy, ssl_ca_file=pki["ca"]), names, "certificate required")
    assert_refused(tls_url(proxy, ssl_ca_file=pki["ca"], ssl_cert_file=rogue_cert,
                           ssl_key_file=rogue_key), names, "unknown ca")
    assert len(proxy.handshake_errors) >= 4
    # A call that may wait for the broker (retry=None) fails at once too: a refused
    # handshake is refused for good, not an unreachable broker to wait for.
    transport = bridge.get_transport(None, tls_url(proxy, ssl_ca_file=pki["ca"]))
    try:
        exchange, topic = names
        client = bridge.get_rpc_client(transport, bridge.Target(exchange=exchange, topic=topic),
                                       timeout=30)
        with pytest.raises(bridge.MessageDeliveryFailure, match="certificate required"):
            client.call({}, "echo", value=1)
    finally:
        transport.cleanup()


def test_server_certificate_of_another_ca_is_refused(tls_proxy, pki, names):
    proxy = tls_proxy(cert="foreign")
    assert_refused(tls_url(proxy, ssl_ca_file=pki["ca"]), names, "certificate verify failed")


def test_host_name_verification(tls_proxy, pki, names):
    """On by default with ssl_ca_file; ssl_enforce_hostname_verification=false skips it."""
    proxy = tls_proxy(cert="elsewhere")
    url = tls_url(proxy, ssl_ca_file=pki["ca"])
    assert_refused(url, names, "not valid for 'localhost'")
    # Without the name check the certificate is accepted, its chain still checked.
    url += "&ssl_enforce_hostname_verification=false"
    with served(url, names) as (peer, _, _):
        assert client_of(peer, names).call({}, "echo", value=2) == 2
    foreign = tls_proxy(cert="foreign")
    error, _ = refused_call(tls_url(foreign, ssl_ca_file=pki["ca"],
                                    ssl_enforce_hostname_verification="false"), names)
    assert "certificate verify failed" in str(error)


def test_the_name_verified_is_the_url_host(tls_proxy, pki, names):
    """``localhost`` in the URL is checked as that name (kombu alone would check 127.0.0.1)."""
    proxy = tls_proxy(cert="localhost")
    with served(tls_url(proxy, ssl_ca_file=pki["ca"]), names) as (peer, _, _):
        assert client_of(peer, names).call({}, "echo", value=3) == 3
    error, _ = refused_call(tls_url(proxy, host="127.0.0.1", ssl_ca_file=pki["ca"]), names)
    assert "not valid for '127.0.0.1'" in str(error)


def test_ssl_without_ca_file_verifies_against_the_system_store(tls_proxy, names):
    """As oslo.messaging (py-amqp's defaults): the test CA is not trusted there."""
    error, elapsed = refused_call(tls_url(tls_proxy()), names)
    assert "certificate verify failed" in str(error) and elapsed < REFUSAL_BOUND


def test_heartbeats_flow_over_tls_while_a_method_runs(tls_proxy, pki, names):
    """A 2 s heartbeat timeout and a 5 s method: the broker would drop a silent connection."""
    url = tls_url(tls_proxy(), ssl_ca_file=pki["ca"], heartbeat_timeout_threshold="2")
    with served(url, names) as (peer, server, _):
        client = client_of(peer, names, timeout=20)
        assert client.call({}, "sleep", seconds=5) == 5
        assert client.call({}, "echo", value="after") == "after"
        assert generations(server, peer) == (1, 1)


def test_many_calls_at_once_keep_the_tls_connection(tls_proxy, pki, names):
    """Publishers write while the I/O thread reads, on one TLS session, without breaking it."""
    proxy = tls_proxy()
    value = "x" * 262144
    outcomes: list[Any] = []
    with served(tls_url(proxy, ssl_ca_file=pki["ca"]), names) as (peer, server, _):
        client = client_of(peer, names, timeout=30)

        def calls() -> None:
            for _ in range(40):
                try:
                    outcomes.append(client.call({}, "echo", value=value) == value)
                except Exception as exc:  # noqa: BLE001 - listed by the assertion
                    outcomes.append(exc)

        threads = [threading.Thread(target=calls) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert outcomes == [True] * 160
        assert generations(server, peer) == (1, 1)
        assert proxy.stream_errors == []


def test_oslo_client_calls_a_bridge_server_over_tls(tls_proxy, pki, names, tmp_path):
    """A real oslo.messaging RPCClient, mutual TLS: options in its URL, then in its conf.

    oslo.messaging reads the URL's query as overrides of ``[oslo_messaging_rabbit]``,
    so the same ``rabbit://...?ssl=true&ssl_ca_file=...`` serves both libraries.
    """
    import oslo_messaging

    proxy = tls_proxy(client_ca=pki["ca"])
    cert, key = pki["client"]
    files = {"ssl_ca_file": pki["ca"], "ssl_cert_file": cert, "ssl_key_file": key}
    conf_file = tmp_path / "oslo.conf"
    conf_file.write_text("[oslo_messaging_rabbit]\nssl = true\n" + "".join(
        f"{name} = {value}\n" for name, value in files.items()))
    oslo = Peer("oslo", tls_url(proxy, **files))
    transport = oslo_messaging.get_rpc_transport(
        oslo_conf(str(conf_file)), url=f"rabbit://guest:guest@localhost:{proxy.port}/")
    try:
        with served(tls_url(proxy, **files), names) as (_, _, events):
            round_trip(oslo, names, events)
            client = oslo.client(*names, transport=transport, timeout=10)
            assert client.call({}, "echo", value="from conf") == "from conf"
            client.cast({}, "record", token="conf cast")
            assert drain(events, 1) == [("s1", "conf cast")]
    finally:
        oslo.close()
        transport.cleanup()
    # Every connection, oslo.messaging's too, was a mutual TLS one through the proxy.
    assert set(proxy.client_names) == {"client"} and len(proxy.client_names) >= 3


def test_reconnects_over_tls(tls_proxy, pki, names):
    """The proxy cuts every connection: server and client come back over TLS."""
    proxy = tls_proxy(client_ca=pki["ca"])
    cert, key = pki["client"]
    url = tls_url(proxy, ssl_ca_file=pki["ca"], ssl_cert_file=cert, ssl_key_file=key)
    with served(f"{url}&{FAST_RECONNECT}", names) as (peer, server, events):
        client = client_of(peer, names, timeout=30)
        assert client.call({}, "echo", value=1) == 1
        thread, outcome = call_in_thread(client, "slow", seconds=2)
        assert drain(events, 1) == [("s1", "started")]
        proxy.stop()
        assert wait_for(lambda: not server.healthy, 10)
        proxy.start()
        assert wait_for(lambda: server.healthy, 20)
        thread.join(30)
        assert outcome == {"result": 2}  # taken before the cut, answered after it
        assert client.call({}, "echo", value="again") == "again"
        client.cast({}, "record", token="after")
        assert drain(events, 1) == [("s1", "after")]
        assert min(generations(server, peer)) >= 2
    assert set(proxy.client_names) == {"client"} and len(proxy.client_names) >= 4


def test_reset_over_tls_closes_the_old_socket(tls_proxy, pki, names):
    """server.reset() cuts the TLS connection: the old socket is closed, not left to the GC."""
    url = tls_url(tls_proxy(), ssl_ca_file=pki["ca"])
    with served(f"{url}&{FAST_RECONNECT}", names) as (peer, server, _):
        conn = server.listeners[0]._conn
        old = conn._transport.sock
        server.reset()
        assert wait_for(lambda: conn.generation == 2 and conn.connected, 10)
        assert old.fileno() == -1
        assert client_of(peer, names).call({}, "echo", value=4) == 4
