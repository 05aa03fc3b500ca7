"""Fixtures of the gRPC tests: servers on both flavours, clients of them."""

from __future__ import annotations

import pytest

import bridge
from tests.grpc_helpers import make_endpoints


@pytest.fixture(params=["sync", "aio"])
def grpc_server(request):
    """Start servers on grpc://127.0.0.1:0: ``start(topic=..., server=..., url=...)``.

    Every test using it runs on both server flavours (grpc.server and grpc.aio).
    """
    started = []

    def start(topic="topic", server="server1", url="grpc://127.0.0.1:0", endpoints=None,
              conf=None):
        conf = dict(conf or {})
        conf["grpc"] = {**conf.get("grpc", {}), "server_flavour": request.param}
        transport = bridge.get_transport(conf, url)
        srv = bridge.get_rpc_server(transport, bridge.Target(topic=topic, server=server),
                                    endpoints or make_endpoints())
        srv.start()
        started.append((srv, transport))
        return srv

    yield start
    for srv, transport in started:
        srv.stop()
        srv.wait()
        transport.cleanup()


@pytest.fixture
def client_for():
    transports = []

    def make(srv, allowed=None, conf=None, **kwargs):
        transport = bridge.get_transport(conf, srv.addresses[0],
                                         allowed_remote_exmods=allowed)
        transports.append(transport)
        kwargs.setdefault("timeout", 10)
        return bridge.get_rpc_client(transport, bridge.Target(topic="topic"), **kwargs)

    yield make
    for transport in transports:
        transport.cleanup()
