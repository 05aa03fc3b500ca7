"""Running the Node.js gRPC clients under tests/node (@grpc/grpc-js, loading proto/).

Without ``node`` or tests/node/node_modules a test skips with the reason, except
under CI=true, where that fails.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"


def node_binary() -> str:
    """The ``node`` executable, once tests/node's packages are installed."""
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


def run_node(script: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``tests/node/<script>`` with ``args``; bounded by ``timeout``."""
    return subprocess.run([node_binary(), str(NODE_DIR / script), *args], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=timeout)
