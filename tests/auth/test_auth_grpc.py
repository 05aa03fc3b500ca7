"""Authentication and authorization on the gRPC wire, with real peers: the Node client
(@grpc/grpc-js) with a token, a JWT and a client certificate, and Python grpcio clients
sending generated bad JWTs."""

from __future__ import annotations

import json

import grpc
import pytest
from auth_support import (
    AUDIENCE,
    ISSUER,
    Signer,
    issue_client,
    unsigned_token,
    write,
    write_tokens,
)
from grpc_helpers import envelope, failure_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from node_support import node_binary, run_node
from tls_certs import make_pki

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.auth import IDENTITY_KEY, AuthConfig, Guard
from endpoints import default_endpoints

TOKEN = "node-token-0123456789abcdef"
SPIFFE = "spiffe://example.org/ns/test/sa/node"
POLICY = f"""
[[allow]]
name = "the test clients echo"
principals = ["node-token", "node-jwt", "{SPIFFE}"]
topic = "topic"
method = ["echo", "echo_context"]
"""


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def guard(tmp_path_factory, signer) -> Guard:
    work = tmp_path_factory.mktemp("auth")
    key = work / "key.pem"
    key.write_bytes(signer.public_pem())
    return Guard(AuthConfig(
        token_file=write_tokens(work / "tokens.toml", [(TOKEN, "node-token", [])]),
        jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,), jwt_key_file=str(key),
        jwt_algorithms=("ES256",), policy_file=write(work / "policy.toml", POLICY)))


def serving(url: str, guard: Guard | None, conf: dict | None = None):
    transport = bridge.get_transport(conf, url)
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="auth"),
                                   default_endpoints(), guard=guard)
    server.start()
    return transport, server


def stop(transport, server) -> None:
    server.stop()
    server.wait()
    transport.cleanup()


@pytest.mark.node
@pytest.mark.parametrize("flavour", ["sync", "aio"])
@pytest.mark.parametrize("mode", ["token", "jwt"])
def test_node_client_with_a_bearer_token(monkeypatch, guard, signer, flavour, mode):
    node_binary()
    bearer = TOKEN if mode == "token" else signer.token("node-jwt")
    monkeypatch.setenv("BRIDGE_TEST_BEARER", bearer)
    transport, server = serving(f"grpc://127.0.0.1:0?server_flavour={flavour}", guard)
    try:
        address = server.addresses[0].split("://", 1)[1]
        done = run_node("auth.js", address, mode, f"node-{mode}")
    finally:
        stop(transport, server)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == ["ok", "allowed-identified", "ok", "permission-denied",
                                   "ok", "stream-admitted-per-call", "ok", "unauthenticated"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    pki = make_pki(directory)
    pki["spiffe"] = issue_client(directory, "spiffe", pki["ca_key"], pki["ca_cert"],
                                 uris=(SPIFFE,), dns=("node.example.org",))
    return pki


def tls_conf(pki, client_auth: bool = True) -> dict:
    cert, key = pki["server"]
    return {"grpc": {"tls_cert_file": cert, "tls_key_file": key, "tls_ca_file": pki["ca"],
                     "tls_client_auth": client_auth}}


@pytest.mark.node
@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_node_client_with_a_client_certificate(pki, guard, flavour):
    node_binary()
    transport, server = serving(f"grpcs://127.0.0.1:0?server_flavour={flavour}", guard,
                                tls_conf(pki))
    try:
        address = server.addresses[0].split("://", 1)[1]
        cert, key = pki["spiffe"]
        done = run_node("auth.js", address, "cert", SPIFFE, pki["ca"], cert, key)
    finally:
        stop(transport, server)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.split() == ["ok", "allowed-identified", "ok", "permission-denied",
                                   "ok", "stream-admitted-per-call", "ok",
                                   "no-certificate-refused"]


def _secure_channel(server, pki, name: str) -> grpc.Channel:
    cert, key = pki[name]
    address = server.addresses[0].split("://", 1)[1]
    credentials = grpc.ssl_channel_credentials(open(pki["ca"], "rb").read(),
                                               open(key, "rb").read(), open(cert, "rb").read())
    return grpc.secure_channel(address, credentials)


def _context_seen(chan: grpc.Channel) -> dict:
    data = pb.CallRequest(envelope=envelope(method="echo_context")).SerializeToString()
    reply = pb.CallResponse.FromString(chan.unary_unary("/bridge.v1.Bridge/Call")(data,
                                                                                  timeout=10))
    from bridge.transport.grpc.values import from_value

    return from_value(reply.result)


def test_certificate_names_in_order_spiffe_then_dns_then_cn(pki, tmp_path):
    dns_only = issue_client(tmp_path, "dns", pki["ca_key"], pki["ca_cert"],
                            dns=("svc.example.org",), common_name="cn-name")
    pki = {**pki, "dns": dns_only}
    transport, server = serving("grpcs://127.0.0.1:0", None, tls_conf(pki))
    try:
        for name, principal in (("spiffe", SPIFFE), ("dns", "svc.example.org"),
                                ("client", "client")):
            with _secure_channel(server, pki, name) as chan:
                seen = _context_seen(chan)
            assert seen[IDENTITY_KEY] == {"principal": principal, "mechanism": "mtls",
                                          "groups": []}
    finally:
        stop(transport, server)


def test_an_unverified_certificate_identifies_nobody(pki):
    # Client certificates requested but not required: grpcio does not verify them, so a
    # self-signed one must not name the caller.
    transport, server = serving("grpcs://127.0.0.1:0", None, tls_conf(pki, client_auth=False))
    try:
        with _secure_channel(server, pki, "rogue") as chan:
            assert IDENTITY_KEY not in _context_seen(chan)
    finally:
        stop(transport, server)


@pytest.fixture(scope="module")
def token_server(guard):
    transport, server = serving("grpc://127.0.0.1:0", guard)
    yield server
    stop(transport, server)


def _call_with(server, authorization: str | None, method: str = "echo",
               rpc: str = "Call") -> grpc.RpcError | None:
    metadata = [("authorization", authorization)] if authorization is not None else []
    request = (pb.CallRequest if rpc == "Call" else pb.CastRequest)(
        envelope=envelope(method=method, value=1))
    address = server.addresses[0].split("://", 1)[1]
    with grpc.insecure_channel(address) as chan:
        try:
            chan.unary_unary(f"/bridge.v1.Bridge/{rpc}")(request.SerializeToString(),
                                                         metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err
    return None


@pytest.mark.parametrize("make, why", [
    (lambda s: s.token("node-jwt", lifetime=-120), "expired"),
    (lambda s: unsigned_token("node-jwt"), "algorithm is not allowed"),
    (lambda s: s.token("node-jwt", audience="another-service"), "audience"),
    (lambda s: Signer().token("node-jwt"), "key id|signature"),
])
def test_bad_jwts_are_unauthenticated(token_server, signer, make, why):
    err = _call_with(token_server, f"Bearer {make(signer)}")
    assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert failure_of(err).reason == pb.Failure.REASON_UNAUTHENTICATED
    import re

    assert re.search(why, err.details())
    assert _call_with(token_server, f"Bearer {signer.token('node-jwt')}") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}",
              *[st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_=", max_size=80)
                for _ in range(3)]),
    st.builds(lambda n: "Bearer eyJ" + "A" * n, st.integers(0, 40_000))))
def test_generated_authorization_headers_are_refusals_never_crashes(token_server, value):
    err = _call_with(token_server, value.strip() or "x")
    assert err is not None
    # Past 8 KiB of metadata grpcio itself refuses the request (RESOURCE_EXHAUSTED).
    refusals = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) + (
        (grpc.StatusCode.RESOURCE_EXHAUSTED,) if len(value) > 8000 else ())
    assert err.code() in refusals, (err.code(), err.details())
    assert value.strip() not in err.details() or len(value.strip()) < 2


def test_a_bridge_client_gets_the_refusal_class(token_server):
    transport = bridge.get_transport(None, token_server.addresses[0])
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10)
        with pytest.raises(bridge.exceptions.Unauthenticated, match="credentials are needed"):
            client.call({}, "echo", value=1)
        with pytest.raises(bridge.exceptions.Unauthenticated):
            client.cast({}, "echo", value=1)
    finally:
        transport.cleanup()


def test_refusals_are_counted_once_by_reason(token_server):
    from bridge import stats

    before = stats.refusal_counts()
    assert _call_with(token_server, None, rpc="Cast").code() == grpc.StatusCode.UNAUTHENTICATED
    assert _call_with(token_server, f"Bearer {TOKEN}", method="fail").code() == \
        grpc.StatusCode.PERMISSION_DENIED
    after = stats.refusal_counts()
    for reason in ("unauthenticated", "permission_denied"):
        key = ("grpc", reason)
        assert after.get(key, 0) - before.get(key, 0) == 1, (reason, before, after)
    assert json.dumps({f"{w}/{r}": n for (w, r), n in after.items()}).count(TOKEN) == 0


def test_a_gateway_passes_its_callers_identity_to_an_upstream_that_trusts_it(tmp_path,
                                                                           memory_url):
    from bridge.gateway import Forwarder, Route, gateway_server

    gateway_token, other_token = "gateway-token-0123456789", "other-token-0123456789"
    token_file = write(tmp_path / "gateway.token", gateway_token + "\n")
    other_file = write(tmp_path / "other.token", other_token)
    upstream_guard = Guard(AuthConfig(
        token_file=write_tokens(tmp_path / "tokens.toml", [(gateway_token, "gateway-1", []),
                                                            (other_token, "other-1", [])]),
        trusted_forwarders=("gateway-*",),
        policy_file=write(tmp_path / "upstream.toml",
                          '[[allow]]\nprincipals = ["alice"]\nmethod = "echo_context"\n')))
    transport, upstream = serving("grpc://127.0.0.1:0", upstream_guard)
    front = bridge.get_transport(None, memory_url)
    forwarder = Forwarder([Route(topic="topic",
                                 url=f"{upstream.addresses[0]}?token_file={token_file}")])
    gateway = gateway_server(front, bridge.Target(topic="topic", server="gw"), forwarder,
                             guard=Guard(AuthConfig(policy_file=write(
                                 tmp_path / "gateway.toml",
                                 '[[allow]]\nprincipals = ["alice", "bob"]\n'))))
    gateway.start()
    callers = []
    try:
        def client(name: str):
            caller = bridge.get_transport(None, f"{memory_url}?identity={name}",
                                          allowed_remote_exmods=["bridge.exceptions"])
            callers.append(caller)
            return bridge.get_rpc_client(caller, bridge.Target(topic="topic"), timeout=10)

        seen = client("alice").call({}, "echo_context")
        assert seen[IDENTITY_KEY] == {"principal": "alice", "mechanism": "broker",
                                      "groups": [], "via": "gateway-1"}
        # The gateway lets bob through; the upstream's policy, applied to bob, does not.
        with pytest.raises(bridge.exceptions.PermissionDenied, match="bob may not"):
            client("bob").call({}, "echo_context")
        # Any other caller's claim is dropped: it is who its own token says.
        direct = bridge.get_transport(None, f"{upstream.addresses[0]}?token_file={other_file}",
                                      allowed_remote_exmods=["bridge.exceptions"])
        callers.append(direct)
        with pytest.raises(bridge.exceptions.PermissionDenied, match="other-1 may not"):
            _context_seen_with(direct)
    finally:
        gateway.stop()
        gateway.wait()
        forwarder.close()
        for caller in callers:
            caller.cleanup()
        front.cleanup()
        stop(transport, upstream)


def _context_seen_with(transport) -> dict:
    client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=10)
    return client.call({IDENTITY_KEY: {"principal": "alice", "mechanism": "jwt"}},
                       "echo_context")
