"""Every failure of the command line: one line, a documented exit code, no traceback
unless --debug (docs/configuration.md, "Exit codes")."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys

import pytest
from serving import ROOT, source_env

import bridge
from bridge.app import cli
from bridge.app.calls import to_json
from endpoints import default_endpoints


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def command(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """``python -m bridge`` as a user runs it; ``timeout`` bounds how long a failure may
    take to be reported (a call's own --timeout is longer)."""
    return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                          text=True, env=source_env(), cwd=ROOT, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(memory_url, serve):
    return serve(default_endpoints())


@pytest.mark.parametrize("argv, words", [
    (["--version", "abc"], "--version"),
    (["--version", "1"], "--version"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "-1"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--context", "[1]"], "--context"),
    (["--bogus"], "unrecognized"),
])
def test_usage_errors_are_one_line_with_exit_2(capsys, memory_url, argv, words):
    code, out, err = run(capsys, "call", memory_url, "topic", "echo", *argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_missing_arguments_are_one_line(capsys):
    code, _, err = run(capsys, "call")
    assert code == 2 and len(err.splitlines()) == 1 and "--help" in err


def test_an_unknown_namespace_is_named(capsys, memory_url, served):
    code, _, err = run(capsys, "call", memory_url, "topic", "get", "--namespace", "nope",
                       "--timeout", "5")
    assert code == 1 and len(err.splitlines()) == 1
    assert "namespace 'nope'" in err and "version 1.0" not in err.split("(")[0]
    code, _, err = run(capsys, "call", memory_url, "topic", "get", "--namespace", "counter",
                       "--version", "9.0", "--timeout", "5")
    assert code == 1 and "UnsupportedVersion" in err and "--version" in err


def test_remote_failures_are_exit_1_with_a_hint(capsys, memory_url, served):
    code, _, err = run(capsys, "call", memory_url, "topic", "no_such", "--timeout", "5")
    assert code == 1 and "NoSuchMethod" in err and "check the method name" in err
    assert len(err.splitlines()) == 1


def test_a_traceback_only_with_debug(capsys, memory_url, served):
    code, _, err = run(capsys, "call", memory_url, "topic", "fail", "--timeout", "5")
    assert code == 1 and "Traceback" not in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "--debug", "call", memory_url, "topic", "fail", "--timeout", "5")
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize("value, text", [
    (math.nan, '"NaN"'), (math.inf, '"Infinity"'), (-math.inf, '"-Infinity"'),
    ([1.5, {"x": math.nan}], '[1.5, {"x": "NaN"}]'), (2**70, str(2**70)),
])
def test_results_print_as_valid_json(value, text):
    assert to_json(value) == text
    json.loads(to_json(value))


def test_nan_from_an_endpoint_prints_as_json(capsys, memory_url, served):
    code, out, _ = run(capsys, "call", memory_url, "topic", "echo", "value=NaN", "--timeout", "5")
    assert code == 0 and json.loads(out) == "NaN"


def test_a_stopped_grpc_server_is_exit_3_at_once():
    done = command("call", f"grpc://127.0.0.1:{closed_port()}", "bridge", "ping",
                   "--timeout", "60")
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "cannot reach" in done.stderr
    assert done.stdout == ""


def test_a_host_that_never_answers_is_exit_3_within_the_connect_probe():
    # A listening socket that never completes the HTTP/2 handshake.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        done = command("call", f"grpc://127.0.0.1:{port}", "bridge", "ping", "--timeout", "60")
    assert done.returncode == 3 and "cannot reach" in done.stderr, done.stderr


@pytest.mark.broker
def test_a_stopped_broker_is_exit_3_at_once():
    done = command("call", f"rabbit://guest:guest@127.0.0.1:{closed_port()}/", "bridge", "ping",
                   "--timeout", "60")
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "guest:***@" in done.stderr


@pytest.mark.broker
def test_a_wrong_password_is_exit_3_at_once_and_never_printed(broker_available):
    done = command("call", "rabbit://guest:not-the-password@127.0.0.1:5672/", "bridge", "ping",
                   "--timeout", "60")
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "ACCESS_REFUSED" in done.stderr
    assert "not-the-password" not in done.stderr


def test_health_exit_codes(capsys):
    transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                   default_endpoints())
    server.start()
    try:
        url = server.addresses[0]
        assert run(capsys, "health", url)[0] == 0
        code, out, err = run(capsys, "health", url, "--service", "no-such-service")
        assert (code, out.strip()) == (1, "SERVICE_UNKNOWN") and "liveness" in err
        assert run(capsys, "health", url, "--timeout", "0")[0] == 2
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    assert run(capsys, "health", f"grpc://127.0.0.1:{closed_port()}", "--timeout", "2")[0] == 3
