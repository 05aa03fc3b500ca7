"""A Node.js client (@grpc/grpc-js + @grpc/proto-loader, loading proto/ directly).

Skipped with a reason when ``node`` or tests/node/node_modules is missing, except
under CI=true, where that fails.
"""

from __future__ import annotations

import pytest
from grpc_helpers import default_endpoints_served
from node_support import node_binary, run_node

CHECKS = ["call-exact-value", "cast-accepted", "unimplemented-detail", "deadline-exceeded",
          "call-stream-1000"]

pytestmark = pytest.mark.node


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_node_client(flavour):
    node_binary()  # skip (or fail under CI=true) before starting anything
    with default_endpoints_served(f"grpc://127.0.0.1:0?server_flavour={flavour}", "topic",
                                  "node") as address:
        done = run_node("client.js", address)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == [word for check in CHECKS for word in ("ok", check)]


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_node_client_gets_failures_of_any_size(flavour):
    """A failure message of up to 4 MB reaches a Node client as its status, class, module
    and a readable message; the channel serves the next call."""
    node_binary()
    conf = {"grpc": {"server_flavour": flavour, "include_traceback": True}}
    with default_endpoints_served("grpc://127.0.0.1:0", "topic", "node", conf) as address:
        done = run_node("failures.js", address)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == [word for size in (100, 6000, 30000, 300000, 2000000)
                                   for word in ("ok", f"failure-{size}")]
