"""The examples of the README and of docs/configuration.md, docs/deploy.md and
docs/gateway.md's worked example, extracted from the files and run.

Commands run as written, with two substitutions a shared machine needs: a server the
test started on a free port stands for ``127.0.0.1:50051`` (and its metrics port for
``9100``), and a topic of the test's own for the shared ``bridge`` and ``compute``
topics. ``docker`` lines and commands that start servers are not run (the test starts
the equivalent server itself).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
import uuid

import pytest
from serving import ROOT, ServeProcess, source_env

BROKER = "rabbit://guest:guest@127.0.0.1:5672/"


def fenced(path: pathlib.Path, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a Markdown file."""
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.M | re.S)


def indented_commands(text: str, programs: tuple[str, ...]) -> list[str]:
    """Command lines of 4-space indented blocks that start with one of ``programs``,
    without their trailing ``# comment``."""
    commands = []
    for line in text.splitlines():
        if not line.startswith("    "):
            continue
        words = line.strip()
        if words.split(" ", 1)[0] in programs:
            commands.append(re.sub(r"\s+#\s.*$", "", words))
    return commands


def section(path: pathlib.Path, heading: str) -> str:
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else len(text)]


def run(argv: list[str], cwd: pathlib.Path | str = ROOT, **env: str,
        ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                          env=source_env(**env), timeout=90)


def bridge_argv(line: str, url: str, topic: str, topics: tuple[str, ...] = ("bridge",),
                ) -> list[str]:
    """A documented ``bridge``/``rpc-bridge`` command line, for this test's server."""
    argv = shlex.split(line.replace("127.0.0.1:50051", url.split("://", 1)[1]))
    assert argv[0] in ("bridge", "rpc-bridge"), line
    argv = [sys.executable, "-m", "bridge", *argv[1:]]
    if argv[3] in ("call", "cast") and argv[5] in topics:
        argv[5] = topic
    return argv


def test_the_readme_quick_start_prints_3():
    (code,) = fenced(ROOT / "README.md", "python")
    done = run([sys.executable, "-c", code])
    assert (done.returncode, done.stdout.strip()) == (0, "3"), done.stderr


@pytest.mark.broker
def test_the_readme_commands_run_as_written(broker_available, tmp_path):
    readme = section(ROOT / "README.md", "## The server and the command line")
    commands = indented_commands(readme, ("rpc-bridge", "bridge"))
    assert len(commands) >= 6, commands
    (tmp_path / "mymodule.py").write_text(
        "class MyEndpoint:\n    def hello(self, ctx):\n        return 'hello'\n")
    topic = f"readme_{uuid.uuid4().hex[:10]}"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", BROKER,
                         "--topic", topic])
    ran = []
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        for line in commands:
            argv = bridge_argv(line, url, topic)
            if argv[3] == "serve":
                continue
            done = run(argv, cwd=tmp_path, BRIDGE_GRPC_URL=url)
            assert done.returncode == 0, (line, done.stderr)
            ran.append(argv[3])
        answer = run(bridge_argv(f"bridge call {BROKER} bridge get --namespace counter", url,
                                 topic))
        assert answer.stdout.strip() == "2", answer.stderr  # the README's increment by=2
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        proc.close()
    assert {"call", "health", "check"} <= set(ran)


def test_the_configuration_example_passes_bridge_check(tmp_path):
    (example,) = fenced(ROOT / "docs" / "configuration.md", "toml")
    config = tmp_path / "bridge.toml"
    config.write_text(example)
    package = tmp_path / "myservice"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rpc.py").write_text("class OrderEndpoint:\n    def get(self, ctx, id=0):\n"
                                    "        return id\n")
    done = run([sys.executable, "-m", "bridge", "check", "--config", str(config)], cwd=tmp_path)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert "secret" not in done.stdout + done.stderr


def test_the_deploy_examples_run_against_a_local_server():
    deploy = ROOT / "docs" / "deploy.md"
    for code in fenced(deploy, "python"):
        done = run([sys.executable, "-c", code])
        assert done.returncode == 0, (code, done.stderr)
    shell = fenced(deploy, "sh")[1]  # docker run: the commands that talk to the container
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--metrics-port", "0"])
    topic_free = ("bridge",)
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        metrics = proc.line_starting("bridge: metrics on ")
        port = metrics.rsplit(":", 1)[1].split("/")[0]
        ran = 0
        for line in shell.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())
            if line.startswith("bridge "):
                argv = bridge_argv(line, url, "bridge", topic_free)
            elif line.startswith("curl "):
                target = re.search(r"http://\S+", line).group(0).replace(":9100", f":{port}")
                with urllib.request.urlopen(target, timeout=5) as response:
                    assert response.status == 200, line
                ran += 1
                continue
            else:
                continue
            done = run(argv)
            assert done.returncode == 0, (line, done.stderr)
            ran += 1
        assert ran >= 4
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        proc.close()


@pytest.mark.broker
def test_the_gateway_worked_example_runs(broker_available, tmp_path):
    example = section(ROOT / "docs" / "gateway.md", "## Worked example")
    (legacy,) = fenced_in(example, "python")
    config = fenced_in(example, "toml")[0]
    (call,) = [line for line in indented_commands(example, ("bridge",)) if " call " in line]
    topic = f"compute_{uuid.uuid4().hex[:10]}"
    legacy_file = tmp_path / "legacy.py"
    legacy_file.write_text(legacy.replace('topic="compute"', f'topic="{topic}"'))
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(config.replace('"compute"', f'"{topic}"')
                           .replace("grpc://0.0.0.0:50051", "grpc://127.0.0.1:0"))
    service = subprocess.Popen([sys.executable, str(legacy_file)], cwd=tmp_path,
                               env={**os.environ}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    proc = ServeProcess(["--config", str(config_file), "--topic", f"gw_{topic}"])
    try:
        proc.wait_ready()
        argv = bridge_argv(call, proc.address("grpc"), topic, ("compute",))
        for _ in range(12):  # the legacy service declares its queue once it has started
            if run([*argv, "--timeout", "5"]).returncode == 0 or service.poll() is not None:
                break
        done = run(argv)
        assert done.returncode == 0, (done.stderr, service.poll())
        assert json.loads(done.stdout) == {"name": "vm1", "flavor": {"ram": 512},
                                           "state": "ACTIVE"}
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()
        service.kill()
        service.wait(10)


def fenced_in(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)
