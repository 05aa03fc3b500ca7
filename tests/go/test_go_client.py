"""The Go client tests/go/client.go (grpc-go and protoc-gen-go, nothing but proto/),
built and run against a live bridge gRPC server; docs/grpc.md's Go examples are excerpts
of it.

The client is built offline in GOPATH mode from Debian's Go packages (sources under
/usr/share/gocode), its code generated from proto/bridge/v1/bridge.proto into a
temporary directory. The binary is cached in
${BRIDGE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/rpc-bridge}/go-client (scripts/rabbitmq's
rule), keyed by the client, the proto file and the toolchain, so a build happens once.
Without the toolchain the live test skips with the reason, except under CI=true, where
that fails.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import textwrap

import pytest
from grpc_helpers import default_endpoints_served

GO_DIR = pathlib.Path(__file__).resolve().parent
ROOT = GO_DIR.parent.parent
CLIENT = GO_DIR / "client.go"
PROTO = ROOT / "proto" / "bridge" / "v1" / "bridge.proto"
GUIDE = ROOT / "docs" / "grpc.md"
GOCODE = pathlib.Path("/usr/share/gocode/src")

#: The Debian packages of the toolchain (scripts/test installs them).
PACKAGES = ("golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc "
            "golang-google-grpc-dev golang-google-protobuf-dev golang-google-genproto-dev "
            "golang-github-golang-protobuf-1-5-dev")
#: The commands of the build, and their Debian packages.
TOOLS = {"go": "golang-go", "protoc": "protobuf-compiler", "protoc-gen-go": "protoc-gen-go",
         "protoc-gen-go-grpc": "protoc-gen-go-grpc"}
#: The Go sources the client imports (directly or through the generated code).
SOURCES = {"google.golang.org/grpc": "golang-google-grpc-dev",
           "google.golang.org/protobuf": "golang-google-protobuf-dev",
           "google.golang.org/genproto/googleapis/rpc/status": "golang-google-genproto-dev",
           "github.com/golang/protobuf": "golang-github-golang-protobuf-1-5-dev"}
#: What the client prints, line by line (its "// prints:" comments say the same).
EXPECTED = ['result {"count": 1, "name": "ü", "ratio": 1.0}',
            "Unknown REASON_ENDPOINT_ERROR builtins ValueError no"]


def toolchain_missing() -> str | None:
    """What the build lacks, with the packages to install; None when nothing."""
    missing = [f"{tool} ({package})" for tool, package in TOOLS.items()
               if shutil.which(tool) is None]
    missing += [f"{GOCODE / path} ({package})" for path, package in SOURCES.items()
                if not (GOCODE / path).is_dir()]
    if (GOCODE / "github.com/golang/protobuf/proto/table_marshal.go").exists():
        # grpc-go marshals with github.com/golang/protobuf; 1.3 panics on the oneofs of
        # protoc-gen-go 1.28's messages.
        missing.append("github.com/golang/protobuf 1.4 or later, not 1.3 "
                       "(golang-github-golang-protobuf-1-5-dev)")
    if not missing:
        return None
    return f"the Go toolchain lacks {', '.join(missing)}: apt-get install {PACKAGES}"


def require_toolchain() -> None:
    """Skip without the toolchain; under CI=true, fail."""
    missing = toolchain_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; CI=true requires the Go client")
        pytest.skip(missing)


def _run(argv: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def cache_root() -> pathlib.Path:
    """The suite's cache directory, as scripts/rabbitmq finds it."""
    if os.environ.get("BRIDGE_CACHE_DIR"):
        return pathlib.Path(os.environ["BRIDGE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(xdg) / "rpc-bridge"


def build_key() -> str:
    """A hash of what the binary is made of: client.go, bridge.proto, the tools' versions
    and the modification times of the Go sources it imports."""
    key = hashlib.sha256(CLIENT.read_bytes() + PROTO.read_bytes())
    for argv in (["go", "version"], ["protoc", "--version"], ["protoc-gen-go", "--version"],
                 ["protoc-gen-go-grpc", "--version"]):
        key.update(_run(argv, ROOT).encode())
    for path in SOURCES:
        key.update(str((GOCODE / path).stat().st_mtime_ns).encode())
    return key.hexdigest()[:16]


def build_client() -> pathlib.Path:
    """The client's binary: generate bridge.proto's Go code, build, cache; reuse the cache."""
    cache = cache_root() / "go-client"
    binary = cache / build_key() / "client"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        gopath = pathlib.Path(tmp)
        main = gopath / "src" / "client"
        main.mkdir(parents=True)
        shutil.copy(CLIENT, main / "client.go")
        out = gopath / "src"  # files land in src/ + the go_package import path
        _run(["protoc", f"-I{ROOT / 'proto'}", f"--go_out={out}", f"--go-grpc_out={out}",
              "bridge/v1/bridge.proto"], ROOT)
        env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}{os.pathsep}{GOCODE.parent}",
                   GOCACHE=str(cache / "go-build"), GOPROXY="off", GOFLAGS="")
        _run(["go", "build", "-o", str(gopath / "client"), "."], main, env)
        binary.parent.mkdir(exist_ok=True)
        os.replace(gopath / "client", binary)
    return binary


@pytest.mark.go
@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_go_client(flavour: str) -> None:
    """A Call of echo with a map returns it; a Call of fail gives UNKNOWN with the
    bridge.v1.Failure decoded from the grpc-status-details-bin trailer."""
    require_toolchain()  # skip (or fail under CI=true) before starting anything
    binary = build_client()
    with default_endpoints_served(f"grpc://127.0.0.1:0?server_flavour={flavour}", "bridge",
                                  "go") as address:
        done = subprocess.run([str(binary), address], capture_output=True, encoding="utf-8",
                              timeout=30)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.splitlines() == EXPECTED


def _excerpt_lines(code: str) -> list[str]:
    """The lines of Go code with tabs as 4 spaces and the common indentation removed."""
    return textwrap.dedent(code.expandtabs(4)).strip("\n").splitlines()


def test_guide_go_examples_are_excerpts_of_the_client() -> None:
    """Each Go block of docs/grpc.md is a run of lines of tests/go/client.go, and the
    outputs the client's comments show are the ones the live test expects."""
    blocks = re.findall(r"^```go\n(.*?)^```", GUIDE.read_text(), re.M | re.S)
    assert len(blocks) >= 2
    client = CLIENT.read_text()
    lines = client.splitlines()
    for block in blocks:
        excerpt = _excerpt_lines(block)
        assert any(_excerpt_lines("\n".join(lines[start:start + len(excerpt)])) == excerpt
                   for start in range(len(lines))), f"not in tests/go/client.go:\n{block}"
    assert re.findall(r"// prints: (.*)", client) == EXPECTED
