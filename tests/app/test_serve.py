"""bridge serve as a process: announcements, signals and the grace period."""

from __future__ import annotations

import json
import signal

import pytest
from serving import ServeProcess, source_env


def memory_only(*extra: str) -> list[str]:
    return ["--grpc-url", "none", "--amqp-url", "memory://", *extra]


def test_sigterm_during_a_call_answers_it_then_exits_0():
    proc = ServeProcess(memory_only("--endpoint", "selfcall_endpoints:make"),
                        env=source_env(SELFCALL_SECONDS="1.5"))
    try:
        proc.wait_ready()
        proc.wait_for("selfcall: accepted")
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.close()
    assert "selfcall: result 1.5" in proc.stdout_lines
    assert "bridge: stopped" in proc.stdout_lines


def test_sigint_stops_like_sigterm():
    proc = ServeProcess(memory_only())
    try:
        proc.wait_ready()
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
    finally:
        proc.close()


def test_grace_period_over_exits_1_without_waiting():
    proc = ServeProcess(memory_only("--endpoint", "selfcall_endpoints:make",
                                    "--grace-period", "0.5"),
                        env=source_env(SELFCALL_SECONDS="60"))
    try:
        proc.wait_ready()
        proc.wait_for("selfcall: accepted")
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 1
    finally:
        proc.close()
    assert any("still running" in line for line in proc.stderr_lines)
    assert not any(line.startswith("selfcall: result") for line in proc.stdout_lines)


def test_sighup_resets_and_keeps_serving():
    proc = ServeProcess(memory_only("--endpoint", "selfcall_endpoints:make"),
                        env=source_env(SELFCALL_SECONDS="0"))
    try:
        proc.wait_ready()
        proc.wait_for("selfcall: result")
        proc.signal(signal.SIGHUP)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.close()
    assert any("SIGHUP" in line for line in proc.stderr_lines)


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "no_such_module_xyz:Thing"], "cannot import endpoint module"),
    (["--endpoint", "endpoints:NoSuchName"], "has no 'NoSuchName'"),
    (["--amqp-url", "nonsense://x"], "nonsense"),
])
def test_configuration_problems_exit_2_with_the_reason(args, message):
    proc = ServeProcess(["--grpc-url", "none", *args])
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        proc.close()
    assert any(message in line for line in proc.stderr_lines), proc.stderr_lines


def test_grpc_port_in_use_exits_1():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = ServeProcess(["--grpc-url", f"grpc://127.0.0.1:{port}", "--amqp-url", "none"])
        try:
            assert proc.wait(timeout=30) == 1
        finally:
            proc.close()
    assert any("cannot start" in line and str(port) in line for line in proc.stderr_lines), \
        proc.stderr_lines


def test_bad_setting_exits_2():
    proc = ServeProcess(["--pool-size", "0"])
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        proc.close()
    assert any("--pool-size" in line for line in proc.stderr_lines)


def test_json_logs_from_the_process_carry_the_request_id():
    proc = ServeProcess(memory_only("--endpoint", "selfcall_endpoints:make",
                                    "--log-format", "json", "--log-level", "DEBUG"),
                        env=source_env(SELFCALL_METHOD="fail"))
    try:
        proc.wait_ready()
        assert proc.wait_for("selfcall: failed ").startswith("ValueError")
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        proc.close()

    lines = [json.loads(line) for line in proc.stderr_lines if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    failure = [line for line in lines if line["level"] == "ERROR"]
    assert failure and failure[0]["request_id"] == "req-selfcall", lines
    assert "ValueError" in failure[0]["exception"]
