"""End to end: one ``bridge serve`` process, both wires, two foreign clients, one counter.

A real oslo.messaging RPCClient calls the counter endpoint over AMQP (RabbitMQ) and
the Node.js gRPC client (@grpc/grpc-js, loading proto/) calls it over gRPC; each sees
the increments the other made, because one dispatcher serves the same endpoint
objects on both wires.
"""

from __future__ import annotations

import signal
import subprocess
import uuid

import pytest
from node_support import NODE_DIR, node_binary
from serving import ServeProcess

pytestmark = [pytest.mark.broker, pytest.mark.node]


def node_counter(node: str, address: str, topic: str, name: str, *call: str) -> int:
    done = subprocess.run([node, str(NODE_DIR / "counter.js"), address, topic, name, *call],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_oslo_messaging_over_amqp_and_node_over_grpc_share_one_counter(broker_available):
    import oslo_messaging
    from amqp_support import oslo_transport

    node = node_binary()
    topic = f"e2e_{uuid.uuid4().hex[:10]}"
    url = "rabbit://guest:guest@127.0.0.1:5672/"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", url,
                         "--topic", topic, "--server", "e2e"])
    transport = None
    try:
        proc.wait_ready()
        grpc_address = proc.address("grpc").split("://", 1)[1]
        transport = oslo_transport(url)
        oslo = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=topic, namespace="counter", version="1.0"),
            timeout=30)
        name = "shared"
        assert oslo.call({}, "increment", name=name, by=1) == 1
        # Node sees oslo's increment and adds its own ...
        assert node_counter(node, grpc_address, topic, name, "increment", "10") == 11
        # ... which oslo sees in turn.
        assert oslo.call({}, "get", name=name) == 11
        assert oslo.call({}, "increment", name=name, by=100) == 111
        assert node_counter(node, grpc_address, topic, name, "get") == 111
    finally:
        if transport is not None:
            transport.cleanup()
        proc.signal(signal.SIGTERM)
        code = proc.wait()
        proc.close()
    assert code == 0
