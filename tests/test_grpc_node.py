"""A Node.js client (@grpc/grpc-js + @grpc/proto-loader, loading proto/ directly).

Skipped with a reason when ``node`` or tests/node/node_modules is missing, except
under CI=true, where that fails.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

import bridge
from endpoints import default_endpoints

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"
CHECKS = ["call-exact-value", "cast-accepted", "unimplemented-detail", "deadline-exceeded",
          "call-stream-1000"]

pytestmark = pytest.mark.node


def _node() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        missing = "tests/node/node_modules is missing (npm ci --prefix tests/node)"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; CI=true requires the Node client")
        pytest.skip(missing)
    return str(node)


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_node_client(flavour):
    node = _node()
    transport = bridge.get_transport(None, f"grpc://127.0.0.1:0?server_flavour={flavour}")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="node"),
                                   default_endpoints())
    server.start()
    try:
        address = server.addresses[0].split("://", 1)[1]
        done = subprocess.run([node, str(NODE_DIR / "client.js"), address], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=90)
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == [word for check in CHECKS for word in ("ok", check)]
