"""URLs with several hosts: a server on every address, a client failing over."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.transport.grpc.values import from_value
from tests.grpc_helpers import Named, envelope, health, make_endpoints, raw_call

# -- URLs with several hosts ------------------------------------------------------------------

def _free_port(*hosts: str) -> int:
    """A port that is free on every one of ``hosts`` right now."""
    import socket

    for _ in range(50):
        probe = socket.socket()
        probe.bind((hosts[0], 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            for host in hosts[1:]:
                other = socket.socket()
                other.bind((host, port))
                other.close()
        except OSError:
            continue
        return port
    raise AssertionError("no port free on every host")


def test_client_fails_over_to_the_next_host(grpc_server):
    srv = grpc_server()
    live = srv.addresses[0].split("://", 1)[1]
    closed = _free_port("127.0.0.1")
    transport = bridge.get_transport(None, f"grpc://127.0.0.1:{closed},{live}")
    try:
        # retry=0: the call succeeds only if the channel itself moves on to the second host.
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10,
                                       retry=0)
        assert client.call({}, "ping") == "pong"
        client.cast({}, "ping")
    finally:
        transport.cleanup()
    first_only = bridge.get_transport(None, f"grpc://127.0.0.1:{closed}")
    try:
        with pytest.raises(bridge.MessageDeliveryFailure, match="unavailable"):
            bridge.get_rpc_client(first_only, bridge.Target(topic="topic"), timeout=10,
                                  retry=0).call({}, "ping")
    finally:
        first_only.cleanup()


def test_client_moves_to_the_next_host_when_its_server_goes(grpc_server):
    first = grpc_server(url="grpc://127.0.0.1:0", server="a", endpoints=[Named("a")])
    second = grpc_server(url="grpc://127.0.0.2:0", server="b", endpoints=[Named("b")])
    hosts = [srv.addresses[0].split("://", 1)[1] for srv in (first, second)]
    transport = bridge.get_transport(None, "grpc://" + ",".join(hosts))
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10)
        assert [client.call({}, "name") for _ in range(3)] == ["a"] * 3  # pick_first
        first.stop()
        first.wait()  # its port closes
        assert [client.call({}, "name") for _ in range(3)] == ["b"] * 3
    finally:
        transport.cleanup()


@pytest.mark.parametrize("ports", ["zero", "same", "explicit"])
def test_server_listens_on_every_host(grpc_server, ports):
    if ports == "zero":
        url = "grpc://127.0.0.1:0,127.0.0.2:0"
    elif ports == "same":
        port = _free_port("127.0.0.1", "127.0.0.2")
        url = f"grpc://127.0.0.1:{port},127.0.0.2:{port}"
    else:
        url = f"grpc://127.0.0.1:{_free_port('127.0.0.1')},127.0.0.2:{_free_port('127.0.0.2')}"
    srv = grpc_server(url=url)
    (address,) = srv.addresses
    first, second = address.removeprefix("grpc://").split(",")
    assert first.startswith("127.0.0.1:") and second.startswith("127.0.0.2:")
    assert all(int(item.rsplit(":", 1)[1]) > 0 for item in (first, second))
    if ports == "zero":
        assert first.rsplit(":", 1)[1] != second.rsplit(":", 1)[1]
    else:
        assert address == url
    for host in (first, second):
        chan = grpc.insecure_channel(host)
        reply = raw_call(chan, pb.CallRequest(envelope=envelope()).SerializeToString())
        assert from_value(pb.CallResponse.FromString(reply).result) == "pong"
        assert health(chan) == health_pb2.HealthCheckResponse.SERVING
        chan.close()
    # The reported address is a URL a client can use, and another listener shares it.
    transport = bridge.get_transport(None, address)
    other = bridge.get_rpc_server(transport, bridge.Target(topic="t2", server="s"),
                                  make_endpoints())
    other.start()
    try:
        assert other.addresses == [address]
        assert bridge.get_rpc_client(transport, bridge.Target(topic="t2"),
                                     timeout=10).call({}, "ping") == "pong"
    finally:
        other.stop()
        other.wait()
        transport.cleanup()
    srv.stop()
    srv.wait()
    for host in (first, second):  # both ports are released with the last listener
        chan = grpc.insecure_channel(host)
        with pytest.raises(grpc.RpcError) as info:
            health(chan)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        chan.close()


def test_several_hosts_refused_where_they_make_no_sense(grpc_server):
    with pytest.raises(bridge.InvalidTransportURL, match="listed twice"):
        bridge.get_transport(None, "grpc://127.0.0.1:5000,127.0.0.1:5000")
    srv = grpc_server()
    # Part of the addresses of a running server: neither shared nor silently split.
    transport = bridge.get_transport(None, f"{srv.addresses[0]},127.0.0.2:0")
    other = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                  make_endpoints())
    try:
        with pytest.raises(bridge.ServerListenError, match="same hosts"):
            other.start()
    finally:
        transport.cleanup()
    # A second host whose port is taken: nothing is left listening on the first.
    import socket

    free = _free_port("127.0.0.2")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        transport = bridge.get_transport(
            None, f"grpc://127.0.0.2:{free},127.0.0.1:{busy.getsockname()[1]}")
        other = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                      make_endpoints())
        try:
            with pytest.raises(bridge.ServerListenError, match="cannot listen on 127.0.0.1"):
                other.start()
        finally:
            transport.cleanup()
    assert _bindable("127.0.0.2", free)


def test_a_client_whose_hosts_all_fail_to_resolve(monkeypatch):
    import socket

    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    transport = bridge.get_transport(None, "grpc://calc-1:1,calc-2:2")
    try:
        with pytest.raises(bridge.MessageDeliveryFailure, match="calc-2"):
            bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=5).call(
                {}, "ping")
    finally:
        transport.cleanup()


def _bindable(host: str, port: int) -> bool:
    import socket

    probe = socket.socket()
    try:
        probe.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_channel_target(monkeypatch):
    import socket

    from bridge.transport.grpc import channel_target

    assert channel_target([("0.0.0.0", 5)]) == "127.0.0.1:5"
    assert channel_target([("::", 5)]) == "[::1]:5"
    assert channel_target([("calc-host", 5)]) == "calc-host:5"  # gRPC's DNS resolver
    table = {
        "v4": [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 5))],
        "both": [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", 6, 0, 0)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.2", 6))],
    }

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [(f, t, p, c, (a[0], port, *a[2:])) for f, t, p, c, a in table[host]]
        if host in ("127.0.0.1", "127.0.0.2"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert channel_target([("0.0.0.0", 1), ("v4", 2), ("127.0.0.2", 3)]) == (
        "ipv4:127.0.0.1:1,10.0.0.1:2,127.0.0.2:3")
    assert channel_target([("v4", 1), ("nowhere", 2), ("v4", 1)]) == "ipv4:10.0.0.1:1"
    assert channel_target([("v4", 1), ("both", 2)]) == (
        "ipv6:[::ffff:10.0.0.1]:1,[fd00::2]:2,[::ffff:10.0.0.2]:2")
    with pytest.raises(OSError, match="nowhere"):
        channel_target([("nowhere", 1), ("nowhere", 2)])
