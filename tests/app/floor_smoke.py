"""A smoke test run by tests/app/test_dependency_floor.py in a virtual environment that
holds the oldest version of each runtime dependency pyproject.toml accepts."""

from __future__ import annotations

import os
import sys
import uuid

import bridge
from bridge.app.cli import check_health
from endpoints import default_endpoints

TOPIC = f"floor-{uuid.uuid4().hex[:10]}"


def serve_and_call(url: str, conf: dict) -> None:
    transport = bridge.get_transport(conf, url)
    server = bridge.get_rpc_server(transport, bridge.Target(topic=TOPIC, server="s1"),
                                   default_endpoints())
    server.start()
    try:
        address = server.addresses[0]
        remote = not address.startswith("memory")
        client_url = url if url.startswith("rabbit") else address
        client_transport = bridge.get_transport(None, client_url) if remote else transport
        try:
            client = bridge.get_rpc_client(client_transport, bridge.Target(topic=TOPIC),
                                           timeout=30)
            assert client.call({}, "echo", value={"n": [1, 2.5, None, "x"]}) == \
                {"n": [1, 2.5, None, "x"]}
            try:
                client.call({}, "fail", message="boom")
            except ValueError as exc:
                assert "boom" in str(exc)
            else:
                raise AssertionError("no remote failure")
        finally:
            if remote:
                client_transport.cleanup()
        if address.startswith("grpc"):
            assert check_health(address, timeout=10) == "SERVING"
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def main() -> int:
    serve_and_call("grpc://127.0.0.1:0", {})
    serve_and_call("grpc://127.0.0.1:0", {"grpc": {"server_flavour": "aio"}})
    serve_and_call("memory://floor", {})
    serve_and_call("http://127.0.0.1:0", {})
    amqp = os.environ.get("FLOOR_AMQP_URL")
    if amqp:
        serve_and_call(amqp, {})
    from bridge.app.metrics import ServerMetrics

    transport = bridge.get_transport(None, "memory://metrics")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="m", server="s"), [])
    assert b"bridge_requests_in_flight" in ServerMetrics(server).render()
    transport.cleanup()
    import google.protobuf
    import grpc

    print(f"floor smoke ok: grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
