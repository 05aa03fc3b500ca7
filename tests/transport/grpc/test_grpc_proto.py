"""bridge/_proto is what scripts/gen-proto makes from proto/ (fails when stale)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_generated_code_is_not_stale(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
                   check=True, capture_output=True, timeout=60)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    committed_dir = ROOT / "bridge" / "_proto"
    committed = {p.relative_to(committed_dir): p.read_bytes() for p in committed_dir.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), \
        "bridge/_proto has other files than scripts/gen-proto makes; run scripts/gen-proto"
    stale = [str(name) for name, data in fresh.items() if committed[name] != data]
    assert not stale, f"bridge/_proto is stale against proto/ ({stale}); run scripts/gen-proto"


def test_generated_modules_import_from_the_package():
    from bridge._proto.bridge.v1 import bridge_pb2, bridge_pb2_grpc

    assert bridge_pb2.DESCRIPTOR.package == "bridge.v1"
    assert hasattr(bridge_pb2_grpc, "BridgeStub")
    text = (ROOT / "bridge/_proto/bridge/v1/bridge_pb2_grpc.py").read_text()
    assert "from bridge._proto.bridge.v1 import bridge_pb2" in text


def test_contract_options():
    text = (ROOT / "proto/bridge/v1/bridge.proto").read_text()
    for option in ("go_package", "java_package", "java_multiple_files", "csharp_namespace"):
        assert f"option {option}" in text
