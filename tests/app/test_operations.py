"""Operations: liveness apart from readiness (gRPC health names, /healthz, /readyz),
the metrics port's paths, JSON-only output in JSON mode, and SIGHUP reloading routes
without dropping a call."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from serving import ROOT, ServeProcess, source_env
from tcp_proxy import TcpProxy
from waiting import wait_for

import bridge
from bridge.app.cli import check_health

BROKER = ("127.0.0.1", 5672)
FAST_RECONNECT = "kombu_reconnect_delay=0.2&rabbit_retry_interval=1&rabbit_interval_max=2"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                          text=True, env=source_env(), cwd=ROOT, timeout=60)


def health(url: str, service: str = "") -> str:
    try:
        return check_health(url, timeout=2, service=service)
    except Exception as exc:  # noqa: BLE001 - unreachable counts as not yet
        return type(exc).__name__


def stop(proc: ServeProcess) -> int:
    proc.signal(signal.SIGTERM)
    code = proc.wait()
    proc.close()
    return code


def test_the_metrics_port_serves_metrics_healthz_readyz_and_404_elsewhere():
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--metrics-port", "0"])
    try:
        proc.wait_ready()
        metrics = proc.line_starting("bridge: metrics on ")
        base = metrics.rsplit("/", 1)[0]
        status, text = get(metrics)
        assert status == 200 and "bridge_requests_in_flight" in text
        assert "process_cpu_seconds_total" in text and "python_info" in text
        assert "python_gc_objects_collected_total" in text
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz") == (200, "ok\n")
        for path in ("/", "/nope", "/metricsx", "/healthz/x"):
            assert get(base + path)[0] == 404, path
    finally:
        assert stop(proc) == 0


@pytest.mark.broker
def test_a_lost_broker_takes_readiness_away_but_not_liveness(broker_available):
    proxy = TcpProxy(BROKER)
    proxy.start()
    topic = f"ready_{uuid.uuid4().hex[:10]}"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url",
                         f"rabbit://guest:guest@127.0.0.1:{proxy.port}/?{FAST_RECONNECT}",
                         "--topic", topic, "--health-interval", "0.2", "--metrics-port", "0"])
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        base = proc.line_starting("bridge: metrics on ").rsplit("/", 1)[0]
        assert wait_for(lambda: health(url, "readiness") == "SERVING")
        assert get(base + "/readyz")[0] == 200
        proxy.stop()
        assert wait_for(lambda: get(base + "/readyz")[0] == 503, timeout=30)
        assert wait_for(lambda: health(url, "readiness") == "NOT_SERVING", timeout=30)
        assert health(url) == "NOT_SERVING"  # the whole server: as readiness
        assert get(base + "/healthz") == (200, "ok\n")
        assert health(url, "liveness") == "SERVING"
        assert cli("health", url, "--service", "liveness").returncode == 0
        assert cli("health", url, "--service", "readiness").returncode == 1
        proxy.start()
        assert wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=60)
        assert wait_for(lambda: health(url, "readiness") == "SERVING", timeout=30)
    finally:
        assert stop(proc) == 0
        proxy.stop()


def test_a_route_whose_transport_is_lost_is_not_ready(monkeypatch):
    from bridge.app.gateways import Gateways
    from bridge.transport.memory import MemoryDriver

    local = bridge.get_transport(None, "grpc://127.0.0.1:0")
    gateways = Gateways("s1", {}, [local], None, 16)
    gateways.start([{"topic": "up", "url": f"memory://route-{uuid.uuid4().hex}"}])
    try:
        assert gateways.healthy
        monkeypatch.setattr(MemoryDriver, "connected", property(lambda self: False))
        assert not gateways.healthy
    finally:
        gateways.stop()
        gateways.wait(10)
        gateways.close()
        local.cleanup()


def test_json_mode_writes_only_json_lines():
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--log-format", "json",
                         "--metrics-port", "0"])
    try:
        proc.wait_ready()
        assert cli("call", proc.address("grpc"), "bridge", "fail").returncode == 1
    finally:
        assert stop(proc) == 0
    assert proc.json_lines and len(proc.json_lines) == len(proc.stdout_lines)
    for line in proc.json_lines + proc.stderr_lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record), line
    assert any(json.loads(line)["message"] == "bridge: ready" for line in proc.json_lines)


def test_json_mode_reports_a_failure_to_start_in_json():
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--log-format", "json",
                         "--endpoint", "no_such_module_q:X"])
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        proc.close()
    assert proc.stderr_lines
    assert all(json.loads(line)["level"] == "ERROR" for line in proc.stderr_lines)


@pytest.mark.broker
def test_sighup_reloads_routes_without_dropping_a_call(broker_available, tmp_path):
    amqp = "rabbit://guest:guest@127.0.0.1:5672/"
    topic = f"up_{uuid.uuid4().hex[:10]}"
    upstream = ServeProcess(["--grpc-url", "none", "--amqp-url", amqp, "--topic", topic])
    config = tmp_path / "bridge.toml"
    config.write_text("")
    gateway = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", "none",
                            "--config", str(config), "--metrics-port", "0"])
    try:
        upstream.wait_ready()
        gateway.wait_ready()
        url = gateway.address("grpc")
        assert cli("call", url, topic, "ping", "--timeout", "5").returncode == 1  # no route
        route = f'[[routes]]\ntopic = "{topic}"\nurl = "{amqp}"\n'
        config.write_text(route)
        gateway.signal(signal.SIGHUP)
        assert wait_for(lambda: any("route(s) now served" in line
                                    for line in gateway.stderr_lines), timeout=30)
        done = cli("call", url, topic, "ping")
        assert (done.returncode, done.stdout.strip()) == (0, '"pong"'), done.stderr
        slow: dict[str, subprocess.CompletedProcess] = {}
        caller = threading.Thread(target=lambda: slow.setdefault(
            "done", cli("call", url, topic, "sleep", "seconds=2")))
        caller.start()
        metrics = gateway.line_starting("bridge: metrics on ")
        assert wait_for(lambda: "bridge_forwarded_in_flight 1.0" in get(metrics)[1],
                        timeout=30)
        config.write_text(route + '[[routes]]\ntopic = "other"\nurl = "' + amqp + '"\n')
        gateway.signal(signal.SIGHUP)
        assert wait_for(lambda: sum("route(s) now served" in line
                                    for line in gateway.stderr_lines) == 2, timeout=30)
        caller.join(60)
        assert slow["done"].returncode == 0 and slow["done"].stdout.strip() == "2.0", \
            slow["done"].stderr
        config.write_text("routes = [ not toml")
        gateway.signal(signal.SIGHUP)
        assert wait_for(lambda: any("keeping the old one" in line
                                    for line in gateway.stderr_lines), timeout=30)
        done = cli("call", url, topic, "ping")
        assert done.returncode == 0, done.stderr
    finally:
        assert stop(gateway) == 0
        assert stop(upstream) == 0


def test_json_mode_reports_bad_settings_in_json():
    done = subprocess.run([sys.executable, "-m", "bridge", "serve", "--pool-size", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=source_env(BRIDGE_LOG_FORMAT="json"))
    assert done.returncode == 2 and done.stdout == ""
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and "--pool-size" in lines[0]["message"] and lines[0]["level"] == "ERROR"
