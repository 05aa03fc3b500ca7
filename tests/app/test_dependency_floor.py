"""Dependencies: every distribution bridge/ imports is declared, and the oldest version
of each runtime dependency that pyproject.toml accepts really runs it.

The floor environment is built once per set of floors and Python version, and kept in
~/.cache/rpc-bridge (the first build downloads about 40 MB from the package index). It
skips without the index, except under CI=true.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import pytest
from serving import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / \
    "rpc-bridge"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*?)\s*(?:;\s*(.*))?$")


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(items: list[str]) -> dict[str, tuple[str, str | None]]:
    """name -> (version specifier, environment marker)."""
    result = {}
    for item in items:
        match = _REQUIREMENT.match(item)
        assert match, item
        result[_normal(match.group(1))] = (match.group(3), match.group(4))
    return result


def applies(marker: str | None) -> bool:
    if not marker:
        return True
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    text = marker.replace("python_version", repr(python))
    return bool(eval(text, {}))  # noqa: S307 - our own pyproject's markers


def floors() -> dict[str, str]:
    """The runtime dependencies that apply here, pinned to their floors."""
    pins = {}
    for name, (spec, marker) in requirements(project()["dependencies"]).items():
        if not applies(marker):
            continue
        match = re.fullmatch(r">=\s*([0-9][0-9a-zA-Z.]*)", spec)
        assert match, f"{name}: a runtime dependency needs a floor (>=X), not {spec!r}"
        pins[name] = match.group(1)
    return pins


def imported_top_level_modules() -> set[str]:
    """The top-level modules that bridge/ and endpoints/ import (generated code aside)."""
    names = set()
    for base in ("bridge", "endpoints"):
        for path in (ROOT / base).rglob("*.py"):
            if "_proto" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names - {"bridge", "endpoints"} - set(sys.stdlib_module_names)


def test_every_imported_distribution_is_declared():
    project_data = project()
    runtime = set(requirements(project_data["dependencies"]))
    extras = {name for items in project_data["optional-dependencies"].values()
              for name in requirements(items)}
    owners = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(imported_top_level_modules()):
        if module == "tomli":
            continue  # declared for Python < 3.11 only
        dists = {_normal(dist) for dist in owners.get(module, [])}
        assert dists, f"{module} is imported but no installed distribution provides it"
        if module == "opentelemetry":
            assert dists & extras, "opentelemetry comes from the tracing extra"
            continue
        if module == "google":
            dists &= {"protobuf", "googleapis-common-protos"}
        if not dists & runtime:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not runtime dependencies: {undeclared}"


def test_what_only_the_tests_import_is_not_a_runtime_dependency():
    runtime = requirements(project()["dependencies"])
    assert "grpcio-status" not in runtime
    assert "grpcio-status" in requirements(project()["optional-dependencies"]["test"])


def test_generated_code_has_no_runtime_version_checks():
    for name in ("bridge_pb2.py", "bridge_pb2_grpc.py"):
        text = (ROOT / "bridge/_proto/bridge/v1" / name).read_text()
        assert "ValidateProtobufRuntimeVersion" not in text
        assert "GRPC_GENERATED_VERSION" not in text and "_registered_method" not in text


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the floor check")
    pytest.skip(reason)


def floor_venv() -> pathlib.Path:
    """A virtual environment with the floors, made once and kept."""
    pins = floors()
    key = hashlib.sha256(repr((sorted(pins.items()), sys.version_info[:2])).encode())
    venv = CACHE / f"floor-{key.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if (venv / "ok").exists() and python.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check",
                           *[f"{name}=={version}" for name, version in pins.items()]],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        _unavailable(f"the floor versions could not be installed: {done.stderr[-500:]}")
    (venv / "ok").write_text(repr(pins))
    return venv


def _broker_url() -> str | None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return None
    return "rabbit://guest:guest@127.0.0.1:5672/"


def test_the_oldest_accepted_dependencies_run_the_bridge():
    venv = floor_venv()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIDGE_") and k not in ("PYTHONHOME",)}
    env["PYTHONPATH"] = str(ROOT)  # the project from this tree, its dependencies the floors
    amqp = _broker_url()
    if amqp:
        env["FLOOR_AMQP_URL"] = amqp
    done = subprocess.run([str(venv / "bin" / "python"), str(ROOT / "tests/app/floor_smoke.py")],
                          capture_output=True, text=True, env=env, cwd=venv, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    pins = floors()
    match = re.search(r"grpcio (\S+), protobuf (\S+)", done.stdout)
    assert match and [_release(v) for v in match.groups()] == \
        [_release(pins["grpcio"]), _release(pins["protobuf"])], done.stdout


def _release(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
