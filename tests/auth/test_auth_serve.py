"""`bridge serve` and security: nothing dangerous open by default, secrets never printed,
policy and certificates reloaded under load without losing a call."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from amqp_support import rabbitmqctl, unique
from auth_support import AUDIENCE, ISSUER, Signer, write, write_tokens
from grpc_helpers import envelope
from serving import ServeProcess, cli
from tls_certs import issue, make_pki
from tls_certs import write as write_pem

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.auth.tokens import new_token
from tests.waiting import wait_for

CONTROL = "endpoints.control:ServerControlEndpoint"


def _stop(proc: ServeProcess) -> int:
    proc.signal(signal.SIGTERM)
    try:
        return proc.wait()
    finally:
        proc.close()


# -- nothing dangerous open by default ----------------------------------------------------------

def test_the_control_endpoint_is_not_served_by_default():
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", "none"])
    try:
        proc.wait_ready()
        url = proc.address("grpc")
        done = cli("call", url, "bridge", "stop", "--namespace", "control", "--version", "2.0")
        assert done.returncode == 1 and "UnsupportedVersion" in done.stderr, done.stderr
        assert cli("call", url, "bridge", "ping").returncode == 0  # still serving
        assert not any("without authentication" in line for line in proc.stderr_lines)
    finally:
        assert _stop(proc) == 0


@pytest.mark.parametrize("urls, named", [
    (["--grpc-url", "grpc://0.0.0.0:0"], "grpc://0.0.0.0:"),
    (["--grpc-url", "grpc://127.0.0.1:0", "--http-url", "http://0.0.0.0:0"], "http://0.0.0.0:"),
], ids=["grpc", "http"])
def test_reachable_without_authentication_warns_once(urls, named):
    proc = ServeProcess([*urls, "--amqp-url", "none"])
    try:
        proc.wait_ready()
    finally:
        assert _stop(proc) == 0
    warnings = [line for line in proc.stderr_lines if "without authentication" in line]
    assert len(warnings) == 1, proc.stderr_lines
    assert named in warnings[0] and "docs/security.md" in warnings[0]
    assert "127.0.0.1" not in warnings[0]


def test_control_on_a_reachable_address_needs_a_policy_naming_its_callers(tmp_path):
    refused = cli("serve", "--grpc-url", "grpc://0.0.0.0:0", "--amqp-url", "none",
                  "--endpoint", CONTROL)
    assert refused.returncode == 1
    assert "the control endpoint" in refused.stderr and "auth_policy_file" in refused.stderr
    everyone = write(tmp_path / "everyone.toml", '[[allow]]\nprincipals = ["*"]\n')
    refused = cli("serve", "--grpc-url", "grpc://0.0.0.0:0", "--amqp-url", "none",
                  "--endpoint", CONTROL, "--auth-policy-file", everyone)
    assert refused.returncode == 1 and "the control endpoint" in refused.stderr
    token = new_token()
    tokens = write_tokens(tmp_path / "tokens.toml", [(token, "ops", [])])
    named = write(tmp_path / "named.toml", '[[allow]]\nprincipals = ["ops"]\n'
                  'namespace = "control"\n\n[[allow]]\nprincipals = ["*"]\nnamespace = ""\n')
    proc = ServeProcess(["--grpc-url", "grpc://0.0.0.0:0", "--amqp-url", "none",
                         "--endpoint", CONTROL,
                         "--auth-policy-file", named, "--auth-token-file", tokens])
    try:
        proc.wait_ready()
        url = proc.address("grpc").replace("0.0.0.0", "127.0.0.1")
        done = cli("call", url, "bridge", "stop", "--namespace", "control", "--version", "2.0")
        assert done.returncode == 1 and "Unauthenticated" in done.stderr, done.stderr
        port = url.rsplit(":", 1)[1]
        assert _raw_call(f"127.0.0.1:{port}", "stop", token, namespace="control",
                         version="2.0") is None
        assert proc.wait(30) == 0  # stopped by the operator's call
    finally:
        proc.close()


def _raw_call(address: str, method: str, token: str | None, credentials=None, **fields):
    metadata = [("authorization", f"Bearer {token}")] if token else []
    request = pb.CallRequest(envelope=envelope(topic="bridge", method=method, **fields))
    chan = (grpc.secure_channel(address, credentials) if credentials is not None
            else grpc.insecure_channel(address))
    with chan:
        try:
            chan.unary_unary("/bridge.v1.Bridge/Call")(request.SerializeToString(),
                                                       metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err
    return None


# -- secrets never printed ------------------------------------------------------------------------

@pytest.fixture
def broker_user(broker_available):
    """A RabbitMQ user of its own, with a password that appears nowhere else."""
    user, password = unique("bridge_secret"), f"pw-{uuid.uuid4().hex}"
    rabbitmqctl("add_user", user, password)
    try:
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield user, password
    finally:
        rabbitmqctl("delete_user", user)


def test_no_secret_in_any_output_of_a_serve_run(tmp_path, broker_user):
    user, password = broker_user
    amqp = f"rabbit://{user}:{password}@127.0.0.1:5672/"
    token, signer = new_token(), Signer()
    good_jwt, wrong_jwt = signer.token("ops"), signer.token("ops", audience="elsewhere")
    key = tmp_path / "jwt.pem"
    key.write_bytes(signer.public_pem())
    config = write(tmp_path / "serve.toml", f'[[routes]]\ntopic = "{unique("legacy")}"\n'
                                            f'url = "{amqp}"\n')
    args = ["--config", config, "--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", amqp,
            "--route", f"{unique('other')}={amqp}", "--topic", unique("secrets"),
            "--auth-token-file", write_tokens(tmp_path / "tokens.toml", [(token, "ops", [])]),
            "--auth-jwt-issuer", ISSUER, "--auth-jwt-audience", AUDIENCE,
            "--auth-jwt-key-file", str(key), "--auth-jwt-algorithms", "ES256",
            "--metrics-port", "0", "--log-level", "DEBUG"]
    outputs = []
    printed = cli("serve", *args, "--print-settings")
    assert printed.returncode == 0, printed.stderr
    outputs += [printed.stdout, printed.stderr]
    assert f"{user}:***@127.0.0.1" in printed.stdout
    proc = ServeProcess(args)
    try:
        proc.wait_ready()
        address = proc.address("grpc").split("://", 1)[1]
        topic = args[args.index("--topic") + 1]
        for bearer in (token, good_jwt, wrong_jwt, token + "x", f"{good_jwt}x", password):
            _call_topic(address, topic, bearer)
        metrics = proc.line_starting("bridge: metrics on ")
        with urllib.request.urlopen(metrics, timeout=5) as response:
            outputs.append(response.read().decode())
        proc.signal(signal.SIGHUP)
        wait_for(lambda: any("Reloaded authentication" in line for line in proc.stderr_lines))
    finally:
        code = _stop(proc)
    failed = cli("call", f"rabbit://{user}:{password}@127.0.0.1:1/", topic, "ping",
                 "--timeout", "2")
    assert failed.returncode != 0
    outputs += proc.stdout_lines + proc.stderr_lines + [failed.stdout, failed.stderr]
    assert code == 0
    text = "\n".join(outputs)
    assert "refused unauthenticated" in text and "Reloaded authentication" in text
    for secret in (password, token, good_jwt, wrong_jwt, good_jwt.rsplit(".", 1)[1],
                   wrong_jwt.rsplit(".", 1)[1]):
        assert secret not in text


def _call_topic(address: str, topic: str, bearer: str) -> None:
    request = pb.CallRequest(envelope=envelope(topic=topic, method="echo", value=1))
    with grpc.insecure_channel(address) as chan:
        try:
            chan.unary_unary("/bridge.v1.Bridge/Call")(
                request.SerializeToString(), metadata=[("authorization", f"Bearer {bearer}")],
                timeout=10)
        except grpc.RpcError:
            pass


# -- reload under load ---------------------------------------------------------------------------

POLICY_V1 = '[[allow]]\nprincipals = ["client"]\nmethod = "echo"\n'
POLICY_V2 = '[[allow]]\nprincipals = ["client"]\nmethod = ["echo", "echo_context"]\n'


class Load:
    """Threads calling ``echo`` without pause: on long-lived channels, and every tenth call
    on a fresh one (a new TLS handshake). Every failure is kept."""

    def __init__(self, address: str, credentials, threads: int = 4) -> None:
        self.address, self.credentials = address, credentials
        self.calls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(threads)]

    def _run(self) -> None:
        request = pb.CallRequest(envelope=envelope(topic="bridge", method="echo", value=1))
        data = request.SerializeToString()
        chan = grpc.secure_channel(self.address, self.credentials)
        count = 0
        while not self._stop.is_set():
            count += 1
            fresh = grpc.secure_channel(self.address, self.credentials) if count % 10 == 0 \
                else None
            try:
                (fresh or chan).unary_unary("/bridge.v1.Bridge/Call")(data, timeout=10)
                with self._lock:
                    self.calls += 1
            except grpc.RpcError as err:
                with self._lock:
                    self.failures.append(f"{err.code()}: {err.details()}")
            finally:
                if fresh is not None:
                    fresh.close()
        chan.close()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_calls(self, more: int) -> None:
        target = self.calls + more
        assert wait_for(lambda: self.calls >= target, timeout=30), (self.calls, self.failures)


def _credentials(ca: bytes, client: tuple[str, str]) -> grpc.ChannelCredentials:
    cert, key = client
    return grpc.ssl_channel_credentials(ca, Path(key).read_bytes(), Path(cert).read_bytes())


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_policy_and_certificate_reload_under_load_lose_no_call(tmp_path, flavour):
    pki = make_pki(tmp_path)
    server_cert, server_key = pki["server"]
    ca1 = Path(pki["ca"]).read_bytes()
    # The next server certificate, from another CA: clients trust both during the change.
    ca2_key, ca2_cert = issue("second CA", ca=True)
    ca2 = write_pem(tmp_path, "ca2", ca2_key, ca2_cert)[0]
    next_dir = tmp_path / "next"
    next_dir.mkdir()
    next_cert, next_key = write_pem(next_dir, "server", *issue(
        "server-2", ca2_key, ca2_cert.subject, server=True))
    policy = tmp_path / "policy.toml"
    write(policy, POLICY_V1)
    config = write(tmp_path / "serve.toml", f'[grpc]\nserver_flavour = "{flavour}"\n')
    proc = ServeProcess(["--config", config, "--grpc-url", "grpcs://127.0.0.1:0",
                         "--amqp-url", "none", "--tls-cert-file", server_cert,
                         "--tls-key-file", server_key, "--tls-ca-file", pki["ca"],
                         "--auth-policy-file", str(policy)])
    try:
        proc.wait_ready()
        address = proc.address("grpcs").split("://", 1)[1]
        both = _credentials(ca1 + Path(ca2).read_bytes(), pki["client"])
        only_new = _credentials(Path(ca2).read_bytes(), pki["client"])
        assert _raw_call(address, "echo_context", None, both).code() == \
            grpc.StatusCode.PERMISSION_DENIED
        with Load(address, both) as load:
            load.wait_calls(200)
            # A new policy, then a broken one (kept out), each on SIGHUP.
            write(policy, POLICY_V2)
            proc.signal(signal.SIGHUP)
            assert wait_for(lambda: _raw_call(address, "echo_context", None, both) is None)
            load.wait_calls(200)
            write(policy, "[[allow]\nnot toml")
            proc.signal(signal.SIGHUP)
            assert wait_for(lambda: any("keeping the previous policy" in line
                                        for line in proc.stderr_lines))
            assert _raw_call(address, "echo_context", None, both) is None
            load.wait_calls(200)
            # The certificate rotates: the key first, then the certificate (a moment
            # where they do not match), each replaced atomically.
            for new, old in ((next_key, server_key), (next_cert, server_cert)):
                os.replace(new, old)
            assert wait_for(lambda: _raw_call(address, "echo", None, only_new) is None,
                            timeout=15)
            load.wait_calls(200)
        assert load.failures == [], load.failures[:5]
        assert load.calls >= 800
        assert any("TLS certificate, key and CA reloaded" in line
                   for line in proc.stderr_lines)
    finally:
        assert _stop(proc) == 0


def test_a_bad_rotation_keeps_serving_the_old_certificate(tmp_path):
    from bridge.transport.grpc.tls_reload import ReloadingCredentials

    pki = make_pki(tmp_path)
    cert, key = pki["server"]
    now = [0.0]
    credentials = ReloadingCredentials(cert, key, pki["ca"], True, clock=lambda: now[0])
    assert credentials.fetch() is None  # within the interval: not even read
    now[0] += 2
    assert credentials.fetch() is None  # unchanged
    other_key, _ = issue("x")
    from cryptography.hazmat.primitives import serialization

    Path(key).write_bytes(other_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    now[0] += 2
    assert credentials.fetch() is None and credentials.reloads == 0  # mismatched: kept
    new_key, new_cert = issue("server-2", pki["ca_key"], pki["ca_cert"].subject, server=True)
    write_pem(tmp_path, "server", new_key, new_cert)
    now[0] += 2
    assert credentials.fetch() is not None and credentials.reloads == 1
    now[0] += 2
    assert credentials.fetch() is None


def test_sighup_without_auth_settings_still_resets(tmp_path):
    proc = ServeProcess(["--grpc-url", "grpc://127.0.0.1:0", "--amqp-url", "none"])
    try:
        proc.wait_ready()
        proc.signal(signal.SIGHUP)
        assert wait_for(lambda: any("Reloaded authentication" in line
                                    for line in proc.stderr_lines))
        assert cli("call", proc.address("grpc"), "bridge", "ping").returncode == 0
    finally:
        assert _stop(proc) == 0
