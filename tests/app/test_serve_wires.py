"""bridge serve on real wires: gRPC sockets and the RabbitMQ broker, one process, one dispatcher.

The command-line client runs as a subprocess (``python -m bridge call ...``), the way
a user runs it; health is polled in-process with a bounded number of tries.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
import time
import uuid

import pytest
from serving import ROOT, ServeProcess, cli, scrape, source_env
from tcp_proxy import TcpProxy
from tls_certs import make_pki

import bridge
from bridge.app.cli import check_health

BROKER = ("127.0.0.1", 5672)
FAST_RECONNECT = "kombu_reconnect_delay=0.2&rabbit_retry_interval=1&rabbit_interval_max=2"


def rabbit_url(port: int = 5672, query: str = "") -> str:
    return f"rabbit://guest:guest@127.0.0.1:{port}/" + (f"?{query}" if query else "")


def wait_health(url: str, wanted: str, tries: int = 150) -> str:
    """Poll the gRPC health service until it says ``wanted`` (bounded); return the last."""
    status = "UNKNOWN"
    for _ in range(tries):
        try:
            status = check_health(url, timeout=2)
        except Exception as exc:  # noqa: BLE001 - unreachable counts as not yet
            status = type(exc).__name__
        if status == wanted:
            return status
        time.sleep(0.1)
    return status


@pytest.fixture(scope="module")
def grpc_server():
    """bridge serve on gRPC (a free port) and memory://, shipped endpoints, metrics on."""
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--metrics-port", "0",
                         "--health-interval", "0.2"])
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()


def test_announces_addresses_and_a_working_call_command(grpc_server):
    grpc_url = grpc_server.address("grpc")
    assert grpc_url.startswith("grpc://127.0.0.1:") and not grpc_url.endswith(":0")
    assert any(a.startswith("memory://") for a in grpc_server.addresses)
    hint = grpc_server.line_starting("bridge: try: ")
    argv = shlex.split(hint)  # run as printed: the command this process was started as
    assert argv[argv.index("call") + 1] == grpc_url
    done = subprocess.run(argv, capture_output=True, text=True, env=source_env(), cwd=ROOT,
                          timeout=60)
    assert (done.returncode, json.loads(done.stdout)) == (0, "hello"), done.stderr


def test_call_cast_and_failures_over_grpc(grpc_server):
    url = grpc_server.address("grpc")
    done = cli("call", url, "bridge", "echo",
               'value={"n": [1, 2.0, null], "big": 9223372036854775807}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"n": [1, 2.0, None], "big": 9223372036854775807}
    failed = cli("call", url, "bridge", "fail", 'message="grpc boom"')
    assert failed.returncode == 1 and failed.stdout == ""
    assert "ValueError: grpc boom" in failed.stderr
    name = f"c-{uuid.uuid4().hex[:8]}"
    cast = cli("cast", url, "bridge", "increment", "--namespace", "counter", f'name="{name}"',
               "by=4")
    assert (cast.returncode, cast.stdout) == (0, ""), cast.stderr
    client = bridge.get_rpc_client(bridge.get_transport(None, url),
                                   bridge.Target(topic="bridge", namespace="counter"), timeout=10)
    value = None
    for _ in range(100):  # the cast runs on the server's pool: wait for it, boundedly
        value = client.call({}, "get", name=name)
        if value == 4:
            break
        time.sleep(0.05)
    assert value == 4
    wrong_topic = cli("call", url, "not-served", "ping", "--timeout", "5")
    assert wrong_topic.returncode == 1 and wrong_topic.stderr


def test_health_command_and_metrics(grpc_server):
    url = grpc_server.address("grpc")
    done = cli("health", url)
    assert (done.returncode, done.stdout.strip()) == (0, "SERVING"), done.stderr
    assert cli("call", url, "bridge", "ping").returncode == 0
    metrics = scrape(grpc_server.line_starting("bridge: metrics on "))
    ok = ("bridge_requests_total", (("method", "ping"), ("outcome", "ok"), ("topic", "bridge"),
                                    ("wire", "grpc")))
    assert metrics[ok] >= 1
    assert metrics[("bridge_healthy", ())] == 1


# -- with the broker ---------------------------------------------------------------------------

def test_both_wires_in_one_process(broker_available):
    topic = f"serve_{uuid.uuid4().hex[:10]}"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", rabbit_url(),
                         "--topic", topic, "--server", "s1", "--metrics-port", "0"])
    try:
        proc.wait_ready()
        grpc_url, amqp = proc.address("grpc"), rabbit_url()
        for url in (grpc_url, amqp):
            done = cli("call", url, topic, "increment", "--namespace", "counter", "by=2")
            assert done.returncode == 0, done.stderr
        # One dispatcher, one counter: the second call saw the first one's increment.
        assert json.loads(done.stdout) == 4
        direct = cli("call", amqp, topic, "echo_context", "--server", "s1",
                     "--context", '{"request_id": "req-cli"}')
        assert direct.returncode == 0 and json.loads(direct.stdout)["request_id"] == "req-cli"
        failed = cli("call", amqp, topic, "fail", 'message="amqp boom"')
        assert failed.returncode == 1 and "ValueError: amqp boom" in failed.stderr
        assert cli("cast", amqp, topic, "ping").returncode == 0
        metrics_url = proc.line_starting("bridge: metrics on ")
        metrics = scrape(metrics_url)
        wires = {dict(labels).get("wire") for name, labels in metrics
                 if name == "bridge_requests_total"}
        assert {"grpc", "amqp"} <= wires
        # SIGHUP: the AMQP listener renews its connection and serves on.
        reconnect_key = ("bridge_reconnects_total", (("wire", "amqp"),))
        before = metrics.get(reconnect_key, 0)
        proc.signal(signal.SIGHUP)
        after = before
        for _ in range(100):  # bounded wait for the new connection
            after = scrape(metrics_url).get(reconnect_key, 0)
            if after > before:
                break
            time.sleep(0.1)
        assert after == before + 1
        again = cli("call", amqp, topic, "increment", "--namespace", "counter")
        assert (again.returncode, again.stdout.strip()) == (0, "5"), again.stderr
    finally:
        proc.signal(signal.SIGTERM)
        code = proc.wait()
        proc.close()
    assert code == 0


def test_sigterm_answers_calls_in_flight_on_both_wires(broker_available):
    topic = f"drain_{uuid.uuid4().hex[:10]}"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", rabbit_url(),
                         "--topic", topic, "--grace-period", "30",
                         "--endpoint", "endpoints.control:ServerControlEndpoint"])
    results: dict[str, object] = {}
    threads = []
    try:
        proc.wait_ready()
        grpc_url = proc.address("grpc")
        for wire, url in (("grpc", grpc_url), ("amqp", rabbit_url())):
            transport = bridge.get_transport(None, url)
            client = bridge.get_rpc_client(transport, bridge.Target(topic=topic), timeout=60)

            def run(wire=wire, client=client, transport=transport):
                try:
                    results[wire] = client.call({}, "sleep", seconds=2)
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    results[wire] = exc
                finally:
                    transport.cleanup()

            threads.append(threading.Thread(target=run))
            threads[-1].start()
        control = bridge.get_rpc_client(bridge.get_transport(None, grpc_url),
                                        bridge.Target(topic=topic, namespace="control",
                                                      version="2.0"), timeout=10)
        in_flight = 0
        for _ in range(200):  # both calls taken by the server (bounded)
            in_flight = control.call({}, "status")["in_flight"]
            if in_flight >= 3:  # the two sleeps and this status call
                break
            time.sleep(0.025)
        assert in_flight >= 3
        proc.signal(signal.SIGTERM)
        code = proc.wait()
    finally:
        proc.close()
        for thread in threads:
            thread.join(30)
    assert code == 0
    assert results == {"grpc": 2, "amqp": 2}


def test_health_follows_the_amqp_broker(broker_available):
    """NOT_SERVING while the AMQP listener has lost its broker; SERVING once it is back."""
    proxy = TcpProxy(BROKER)
    proxy.start()
    topic = f"health_{uuid.uuid4().hex[:10]}"
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0",
                         "--amqp-url", rabbit_url(proxy.port, FAST_RECONNECT),
                         "--topic", topic, "--health-interval", "0.2", "--metrics-port", "0"])
    try:
        proc.wait_ready()
        grpc_url = proc.address("grpc")
        metrics_url = proc.line_starting("bridge: metrics on ")
        assert wait_health(grpc_url, "SERVING") == "SERVING"
        proxy.stop()
        assert wait_health(grpc_url, "NOT_SERVING") == "NOT_SERVING"
        assert cli("health", grpc_url).returncode == 1
        assert scrape(metrics_url)[("bridge_healthy", ())] == 0
        # gRPC itself still answers while the broker is away.
        assert json.loads(cli("call", grpc_url, topic, "ping").stdout) == "pong"
        proxy.start()
        assert wait_health(grpc_url, "SERVING", tries=300) == "SERVING"
        assert cli("health", grpc_url).returncode == 0
        reconnects = scrape(metrics_url).get(("bridge_reconnects_total", (("wire", "amqp"),)))
        assert reconnects is not None and reconnects >= 1
        done = cli("call", rabbit_url(), topic, "ping")
        assert json.loads(done.stdout) == "pong", done.stderr
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()
        proxy.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A throwaway CA with a server and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("serve-pki"))


def test_mutual_tls_from_the_settings(pki):
    cert, key = pki["server"]
    client_cert, client_key = pki["client"]
    proc = ServeProcess(["--grpc-url", "grpcs://127.0.0.1:0", "--amqp-url", "none"],
                        env=source_env(BRIDGE_TLS_CERT_FILE=cert, BRIDGE_TLS_KEY_FILE=key,
                                       BRIDGE_TLS_CA_FILE=pki["ca"]))
    try:
        proc.wait_ready()
        url = proc.address("grpcs")
        tls = ["--tls-ca", pki["ca"], "--tls-cert", client_cert, "--tls-key", client_key]
        done = cli("call", url, "bridge", "ping", *tls)
        assert (done.returncode, done.stdout.strip()) == (0, '"pong"'), done.stderr
        refused = cli("call", url, "bridge", "ping", "--tls-ca", pki["ca"], "--timeout", "5")
        assert refused.returncode == 3 and refused.stderr  # TLS refused: cannot connect
        health = cli("health", url, *tls)
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        assert cli("health", url, "--tls-ca", pki["ca"]).returncode == 3
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait()
        proc.close()


def test_no_settings_at_all_serves_grpc_50051_and_memory():
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 50051))
        except OSError:
            pytest.skip("127.0.0.1:50051 is in use by another process")
    proc = ServeProcess([])
    try:
        addresses = proc.wait_ready()
        assert addresses[0] == "grpc://127.0.0.1:50051"
        assert addresses[1].startswith("memory://")
        assert proc.line_starting("bridge: try: ").endswith(
            " call grpc://127.0.0.1:50051 bridge echo value='\"hello\"'")
        assert cli("health").returncode == 0
    finally:
        proc.signal(signal.SIGTERM)
        code = proc.wait()
        proc.close()
    assert code == 0
