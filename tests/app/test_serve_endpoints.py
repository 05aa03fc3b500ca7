"""``--endpoint`` as a user gives it: modules in the current directory, added to the
shipped endpoints (or alone with --no-default-endpoints), clear one-line failures, and
the hint ``serve`` prints works as printed."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest
from serving import ROOT, ServeProcess, source_env

MODULE = textwrap.dedent('''
    class MyEndpoint:
        def hello(self, ctx, name="world"):
            return "hello " + name
''')

#: Runs the command as its console script does: sys.path[0] is the script's directory,
#: not the current one (python -m would add the current directory by itself).
LAUNCHER = "import sys\nfrom bridge.app.cli import main\nsys.exit(main())\n"


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "mymodule.py").write_text(MODULE)
    (tmp_path / "broken.py").write_text("def f(:\n    pass\n")
    (tmp_path / "needy.py").write_text("class Needy:\n    def __init__(self, db):\n"
                                       "        self.db = db\n")
    (tmp_path / "raising.py").write_text("class Boom:\n    def __init__(self):\n"
                                         "        raise RuntimeError('no database')\n")
    launcher = tmp_path / "bin" / "launch.py"
    launcher.parent.mkdir()
    launcher.write_text(LAUNCHER)
    return tmp_path


def bridge_command(workdir) -> list[str]:
    return [sys.executable, str(workdir / "bin" / "launch.py")]


def run_command(workdir, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*bridge_command(workdir), *argv], capture_output=True, text=True,
                          cwd=workdir, env=source_env(), timeout=60)


def serve(workdir, *argv: str) -> ServeProcess:
    return ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", "none", *argv],
                        command=bridge_command(workdir), cwd=workdir)


def call(workdir, url: str, *argv: str) -> subprocess.CompletedProcess:
    return run_command(workdir, "call", url, "bridge", *argv)


def test_an_endpoint_from_the_current_directory_adds_to_the_shipped_ones(workdir):
    proc = serve(workdir, "--endpoint", "mymodule:MyEndpoint")
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        done = call(workdir, url, "hello", 'name="you"')
        assert (done.returncode, json.loads(done.stdout)) == (0, "hello you"), done.stderr
        shipped = call(workdir, url, "increment", "--namespace", "counter")
        assert (shipped.returncode, shipped.stdout.strip()) == (0, "1"), shipped.stderr
        hint = shlex.split(proc.line_starting("bridge: try: "))
        done = subprocess.run(hint, capture_output=True, text=True, cwd=workdir,
                              env=source_env(), timeout=60)
        assert (done.returncode, json.loads(done.stdout)) == (0, "hello"), done.stderr
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()


def test_no_default_endpoints_serves_only_the_named_ones_and_the_hint_follows(workdir):
    proc = serve(workdir, "--endpoint", "mymodule:MyEndpoint", "--no-default-endpoints")
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        assert "with 1 endpoints" in proc.line_starting("bridge: serving")
        hint = shlex.split(proc.line_starting("bridge: try: "))
        assert hint[-1] == "hello"
        done = subprocess.run(hint, capture_output=True, text=True, cwd=workdir,
                              env=source_env(), timeout=60)
        assert (done.returncode, json.loads(done.stdout)) == (0, "hello world"), done.stderr
        gone = call(workdir, url, "echo", "value=1", "--timeout", "5")
        assert gone.returncode == 1 and "NoSuchMethod" in gone.stderr
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()


@pytest.mark.parametrize("spec, words", [
    ("broken:f", ["syntax error", "broken.py:1"]),
    ("needy:Needy", ["needs argument(s) db", "give them defaults"]),
    ("raising:Boom", ["RuntimeError: no database", "raising.py:3"]),
    ("nowhere:Thing", ["no module named 'nowhere'", "current directory"]),
    ("mymodule:Missing", ["has no 'Missing'", "MyEndpoint"]),
])
def test_endpoint_failures_are_one_line_with_exit_2(workdir, spec, words):
    done = run_command(workdir, "serve", "--grpc-url", "grpc://127.0.0.1:0", "--amqp-url",
                       "none", "--endpoint", spec)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "Traceback" not in line]
    assert lines == done.stderr.splitlines() and len(lines) <= 2, done.stderr
    assert all(word in done.stderr for word in words), done.stderr


def test_check_lists_every_problem_without_serving(workdir):
    cert = workdir / "cert.pem"
    cert.write_text("not a certificate\n")
    done = run_command(workdir, "check", "--endpoint", "broken:f", "--endpoint", "needy:Needy",
                       "--amqp-url", "rabbit://u:secret@127.0.0.1:1/?heartbeat_rate=x",
                       "--grpc-url", "grpcs://127.0.0.1:0", "--tls-cert-file", str(cert),
                       "--tls-key-file", str(workdir / "missing.key"), "--pool-size", "0",
                       "--route", "t=grpc://127.0.0.1:1")
    assert done.returncode == 2 and done.stdout == ""
    problems = [line for line in done.stderr.splitlines() if ": problem: " in line]
    text = "\n".join(problems)
    for words in ("--pool-size", "heartbeat_rate", "broken.py:1", "needs argument(s) db",
                  "tls_cert_file", "tls_key_file", "route"):
        assert words in text, (words, done.stderr)
    assert "secret" not in done.stderr
    assert len(problems) >= 7


def test_check_and_print_settings_pass_a_good_configuration(workdir):
    done = run_command(workdir, "check", "--endpoint", "mymodule:MyEndpoint")
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    done = run_command(workdir, "serve", "--print-settings", "--endpoint", "mymodule:MyEndpoint")
    assert done.returncode == 0 and json.loads(done.stdout)["settings"]["endpoints"] == \
        ["mymodule:MyEndpoint"]
    done = run_command(workdir, "serve", "--print-settings", "--endpoint", "needy:Needy")
    assert done.returncode == 2 and done.stdout == "" and "needy" in done.stderr


def test_python_dash_m_bridge_and_the_second_name(workdir):
    done = subprocess.run([sys.executable, "-m", "bridge", "--version"], capture_output=True,
                          text=True, cwd=ROOT, env=source_env(), timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("bridge ")
    from bridge.app.announce import command_name

    assert command_name("/nowhere/rpc-bridge") == "/nowhere/rpc-bridge"
    assert command_name("/nowhere/__main__.py").endswith("-m bridge")
