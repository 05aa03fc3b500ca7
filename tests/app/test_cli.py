"""The bridge call / cast / health commands, run in-process against a memory:// server."""

from __future__ import annotations

import json
import time

import pytest

import bridge
from bridge.app import cli
from endpoints import default_endpoints


@pytest.fixture
def served(memory_url, serve, transport):
    """The shipped endpoints on topic 'topic' of this test's memory broker."""
    return serve(default_endpoints())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_call_prints_the_json_result(capsys, memory_url, served):
    code, out, err = run(capsys, "call", memory_url, "topic", "echo",
                         'value={"a": [1, 2.5, null, "x"], "big": 18446744073709551617}')
    assert (code, err) == (0, "")
    assert json.loads(out) == {"a": [1, 2.5, None, "x"], "big": 18446744073709551617}


def test_call_with_namespace_version_server_and_context(capsys, memory_url, served):
    code, out, _ = run(capsys, "call", memory_url, "topic", "increment", "--namespace", "counter",
                       "--version", "1.0", "--server", "server1", "by=5")
    assert (code, json.loads(out)) == (0, 5)
    code, out, _ = run(capsys, "call", memory_url, "topic", "echo_context",
                       "--context", '{"request_id": "req-7", "user": "u"}')
    assert code == 0
    ctxt = json.loads(out)
    assert ctxt["request_id"] == "req-7" and ctxt["user"] == "u"


def test_remote_failure_goes_to_stderr_with_exit_1(capsys, memory_url, served):
    code, out, err = run(capsys, "call", memory_url, "topic", "fail", 'message="boom"')
    assert (code, out) == (1, "")
    assert "ValueError: boom" in err
    code, _, err = run(capsys, "call", memory_url, "topic", "no_such_thing")
    assert code == 1 and "NoSuchMethod" in err


def test_call_timeout_is_exit_4(capsys, memory_url):
    code, _, err = run(capsys, "call", memory_url, "nobody-listens", "ping", "--timeout", "0.2")
    assert code == 4 and "no answer within 0.2 s" in err


def test_cast_returns_at_once_and_takes_effect(capsys, memory_url, served, transport):
    code, out, err = run(capsys, "cast", memory_url, "topic", "increment", "--namespace",
                         "counter", "name=\"c\"", "by=3")
    assert (code, out, err) == (0, "", "")
    client = bridge.get_rpc_client(transport, bridge.Target(topic="topic", namespace="counter"),
                                   timeout=5)
    value = None
    for _ in range(100):  # the cast runs on a worker of its own: wait for it, boundedly
        value = client.call({}, "get", name="c")
        if value == 3:
            break
        time.sleep(0.05)
    assert value == 3


@pytest.mark.parametrize("argv, message", [
    (["x"], "not key=JSON"),
    (["1x=1"], "not key=JSON"),
    (["a=1", "a=2"], "given twice"),
    (["name=bob"], "is not JSON"),
])
def test_bad_arguments_are_usage_errors(capsys, memory_url, argv, message):
    code, _, err = run(capsys, "call", memory_url, "topic", "echo", *argv)
    assert code == 2 and message in err


def test_bad_context_and_url_are_usage_errors(capsys, memory_url):
    code, _, err = run(capsys, "call", memory_url, "topic", "echo", "--context", "[1]")
    assert code == 2 and "--context" in err
    code, _, err = run(capsys, "call", "nonsense://x", "topic", "echo")
    assert code == 2 and "nonsense" in err


def test_parse_arguments_keeps_json_types():
    assert cli.parse_arguments(["a=1", "b=1.0", 'c="1"', "d=null", "e=[true]"]) == \
        {"a": 1, "b": 1.0, "c": "1", "d": None, "e": [True]}


def test_health_of_nothing_listening_is_exit_3(capsys):
    import socket

    with socket.socket() as sock:  # a port that is certainly closed once released
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run(capsys, "health", f"grpc://127.0.0.1:{port}", "--timeout", "1")
    assert code == 3 and "UNAVAILABLE" in err


def test_health_needs_a_grpc_url(capsys):
    code, _, err = run(capsys, "health", "rabbit://localhost:5672/")
    assert code == 2 and "grpc://" in err


def test_health_url_comes_from_the_serve_settings(monkeypatch):
    monkeypatch.setenv("BRIDGE_GRPC_URL", "grpc://0.0.0.0:6000")
    assert cli.health_url_from_settings() == "grpc://127.0.0.1:6000"
    monkeypatch.setenv("BRIDGE_GRPC_URL", "none")
    assert cli.health_url_from_settings() == cli.DEFAULT_HEALTH_URL


def test_cast_to_an_unreachable_broker_gives_up_after_its_timeout():
    import socket
    import subprocess
    import sys

    from serving import ROOT, source_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "bridge", "cast",
                           f"rabbit://guest:guest@127.0.0.1:{port}/", "topic", "ping",
                           "--timeout", "1"], capture_output=True, text=True, cwd=ROOT,
                          env=source_env(), timeout=60)
    assert done.returncode == 3
    assert "cannot reach" in done.stderr and len(done.stderr.splitlines()) == 1


def test_health_of_several_hosts_is_answered_by_the_first_that_connects(capsys):
    import socket

    transport = bridge.get_transport(None, "grpc://127.0.0.2:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"),
                                   default_endpoints())
    server.start()
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        live = server.addresses[0].split("://", 1)[1]
        code, out, _ = run(capsys, "health", f"grpc://127.0.0.1:{closed},{live}")
        assert code == 0 and "SERVING" in out
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
