"""bridge.auth: policies, tokens, JWTs and the server's admission step (memory:// peers).

The wires' own credentials are tested with real peers in test_auth_grpc.py (Node and
Python gRPC clients) and test_auth_amqp.py (oslo.messaging on RabbitMQ).
"""

from __future__ import annotations

import base64
import json
import logging
import string

import pytest
from auth_support import AUDIENCE, ISSUER, Signer, unsigned_token, write, write_tokens
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge
from bridge import stats
from bridge.auth import (
    IDENTITY_KEY,
    AuthConfig,
    AuthConfigError,
    Credentials,
    Guard,
    Identity,
    PolicyError,
    Request,
    bearer_credentials,
)
from bridge.auth.jwt_auth import JwtAuthenticator, JwtConfigError
from bridge.auth.policy import parse_policy
from bridge.auth.tokens import TokenFileError, load_tokens, parse_tokens, token_hash
from bridge.exceptions import PermissionDenied, Unauthenticated
from endpoints import EchoEndpoint

POLICY = """
[groups]
operators = ["spiffe://example.org/ns/ops/*", "carol"]

[[deny]]
name = "no control over amqp"
wire = "amqp"
namespace = "control"

[[allow]]
name = "operators control"
principals = ["group:operators"]
namespace = "control"

[[allow]]
name = "alice echoes"
principals = ["alice", "bob-*"]
kind = ["call", "cast"]
topic = "topic"
namespace = ""
method = ["echo", "echo_context"]

[[allow]]
name = "anyone pings"
principals = ["anonymous", "*"]
method = "ping"
"""


def request(**fields) -> Request:
    values = dict(wire="grpc", kind="call", exchange="openstack", topic="topic",
                  server="server1", namespace="", method="echo")
    values.update(fields)
    return Request(**values)


# -- the policy --------------------------------------------------------------------------------

@pytest.mark.parametrize("identity, fields, allowed, rule", [
    (Identity("alice", "token"), {}, True, "alice echoes"),
    (Identity("bob-2", "jwt"), {"kind": "cast"}, True, "alice echoes"),
    (Identity("bob-2", "jwt"), {"kind": "fanout"}, False, None),
    (Identity("alice", "token"), {"method": "fail"}, False, None),
    (Identity("alice", "token"), {"namespace": "counter"}, False, None),
    (Identity("alice", "token"), {"topic": "other"}, False, None),
    (Identity("mallory", "token"), {}, False, None),
    (Identity("carol", "token"), {"namespace": "control", "method": "stop"}, True,
     "operators control"),
    (Identity("spiffe://example.org/ns/ops/sa/x", "mtls"),
     {"namespace": "control", "method": "stop"}, True, "operators control"),
    (Identity("dave", "jwt", ("operators",)), {"namespace": "control"}, True,
     "operators control"),
    (Identity("carol", "broker"), {"namespace": "control", "wire": "amqp"}, False,
     "no control over amqp"),
    (Identity("anonymous", "anonymous"), {"method": "ping"}, True, "anyone pings"),
    (Identity("anonymous", "anonymous"), {}, False, None),
    # A principal literally named "anonymous" is not the anonymous caller.
    (Identity("anonymous", "token"), {"method": "ping"}, True, "anyone pings"),
])
def test_deny_rules_then_allow_rules_then_deny(identity, fields, allowed, rule):
    decision = parse_policy(__import__("tomllib").loads(POLICY)).decide(identity,
                                                                        request(**fields))
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_anonymous_matches_only_the_anonymous_caller():
    policy = parse_policy({"allow": [{"principals": ["anonymous"], "method": "x"}]})
    assert policy.decide(Identity("anonymous", "anonymous"), request(method="x")).allowed
    assert not policy.decide(Identity("anonymous", "token"), request(method="x")).allowed
    star = parse_policy({"allow": [{"principals": ["*"]}]})
    assert not star.decide(Identity("anonymous", "anonymous"), request()).allowed
    assert star.decide(Identity("x", "mtls"), request()).allowed


@pytest.mark.parametrize("data, message", [
    ({"allow": [{"metod": "x"}]}, "unknown key(s) metod"),
    ({"allow": {"method": "x"}}, "array of tables"),
    ({"allow": [{"method": []}]}, "non-empty list"),
    ({"allow": [{"method": 3}]}, "string or a non-empty list"),
    ({"allow": [{"kind": "calls"}]}, "matches none of call, cast, fanout"),
    ({"allow": [{"principals": ["group:"]}]}, "empty group"),
    ({"rules": []}, "unknown key(s) rules"),
    ({"groups": {"ops": 1}}, "groups.ops"),
])
def test_invalid_policies_say_why(data, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_policy(data)


def test_names_callers_of_needs_named_principals_and_nobody_else():
    control = request(namespace="control", method="stop")
    named = parse_policy({"allow": [{"principals": ["ops"], "namespace": "control"}]})
    assert named.names_callers_of(control)
    everyone = parse_policy({"allow": [{"principals": ["ops"], "namespace": "control"},
                                       {"method": "*"}]})
    assert not everyone.names_callers_of(control)
    identified = parse_policy({"allow": [{"principals": ["*"], "namespace": "control"}]})
    assert not identified.names_callers_of(control)
    assert not parse_policy({}).names_callers_of(control)


# -- static tokens -----------------------------------------------------------------------------

def test_tokens_are_configured_by_hash_and_identify_their_principal(tmp_path):
    path = write_tokens(tmp_path / "tokens.toml", [("s3cret-token-for-ops-0001", "ops",
                                                    ["operators"])])
    assert "s3cret" not in (tmp_path / "tokens.toml").read_text()
    tokens = load_tokens(path)
    assert tokens.identify("s3cret-token-for-ops-0001") == Identity("ops", "token",
                                                                    ("operators",))
    assert tokens.identify("s3cret-token-for-ops-0002") is None
    assert tokens.identify("short") is None
    assert tokens.identify("x" * 100_000) is None


@pytest.mark.parametrize("entry, message", [
    ({"principal": "ops", "token": "clear"}, "never in clear"),
    ({"principal": "ops", "sha256": "abc"}, "64 hex digits"),
    ({"principal": "", "sha256": "0" * 64}, "principal must be"),
    ({"principal": "anonymous", "sha256": "0" * 64}, "other than 'anonymous'"),
    ({"principal": "ops", "sha256": "0" * 64, "groups": "ops"}, "groups must be"),
])
def test_invalid_token_files_say_why(entry, message):
    with pytest.raises(TokenFileError, match=message):
        parse_tokens({"tokens": [entry]})


def test_the_token_tool_prints_a_token_once_and_only_its_hash_to_stdout(capsys):
    from bridge.auth.tokens import main

    assert main(["ops", "operators"]) == 0
    out, err = capsys.readouterr()
    token = err.strip().splitlines()[-1]
    assert token not in out and token_hash(token) in out
    assert load_from_text(out).identify(token) == Identity("ops", "token", ("operators",))


def load_from_text(text: str):
    import tomllib

    return parse_tokens(tomllib.loads(text))


# -- JWTs --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def jwt_auth(signer, tmp_path_factory) -> JwtAuthenticator:
    path = tmp_path_factory.mktemp("jwt") / "key.pem"
    path.write_bytes(signer.public_pem())
    return JwtAuthenticator(ISSUER, AUDIENCE, key_file=str(path), algorithms=["ES256"])


def test_a_valid_jwt_gives_its_subject_and_groups(signer, jwt_auth):
    identity = jwt_auth.identify(signer.token("alice", groups=["operators", 7]))
    assert identity == Identity("alice", "jwt", ("operators",))


def test_a_jwks_file_selects_the_key_by_kid(signer, tmp_path):
    other = Signer("key-2")
    jwks = {"keys": signer.jwks()["keys"] + other.jwks()["keys"]}
    path = write(tmp_path / "jwks.json", json.dumps(jwks))
    auth = JwtAuthenticator(ISSUER, [AUDIENCE, "other"], key_file=path, algorithms=["ES256"])
    assert auth.identify(other.token("bob")).principal == "bob"
    stranger = Signer("key-3")
    with pytest.raises(Unauthenticated, match="key id"):
        auth.identify(stranger.token("eve"))


@pytest.mark.parametrize("make, why", [
    (lambda s: s.token(lifetime=-120), "expired"),
    (lambda s: s.token(audience="someone-else"), "audience"),
    (lambda s: s.token(issuer="https://evil.example.org"), "issuer"),
    (lambda s: s.token(nbf=int(__import__("time").time()) + 3600), "not valid yet"),
    (lambda s: s.token(exp=None), "'exp' claim"),
    (lambda s: s.token(sub=None), "'sub' claim"),
    (lambda s: Signer().token(), "signature"),
    (lambda s: unsigned_token(), "algorithm is not allowed"),
])
def test_bad_jwts_are_refused_with_a_reason(signer, jwt_auth, make, why):
    with pytest.raises(Unauthenticated, match=why):
        jwt_auth.identify(make(signer))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


jwt_parts = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60),
    st.binary(max_size=60).map(_b64),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(
        max_size=10), st.lists(st.integers(), max_size=3)), max_size=4).map(
        lambda d: _b64(json.dumps(d).encode())),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=jwt_parts, payload=jwt_parts, signature=jwt_parts,
       alg=st.sampled_from(["none", "None", "HS256", "ES256", "RS256", "", "ES512"]))
def test_garbage_and_forged_jwts_are_refusals_never_crashes(jwt_auth, header, payload,
                                                            signature, alg):
    forged_header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    for token in (f"{header}.{payload}.{signature}", f"{forged_header}.{payload}.{signature}",
                  f"{forged_header}.{payload}."):
        with pytest.raises(Unauthenticated):
            jwt_auth.identify(token)


@settings(max_examples=100, deadline=None)
@given(claims=st.fixed_dictionaries({}, optional={
    "sub": st.one_of(st.text(max_size=5), st.integers()),
    "aud": st.one_of(st.just(AUDIENCE), st.text(max_size=5), st.lists(st.text(max_size=3))),
    "iss": st.one_of(st.just(ISSUER), st.text(max_size=5)),
    "exp": st.one_of(st.integers(-2**40, 2**40), st.text(max_size=3)),
    "nbf": st.one_of(st.integers(-2**40, 2**40), st.text(max_size=3))}))
def test_well_signed_jwts_with_generated_claims_never_crash(signer, jwt_auth, claims):
    import jwt as pyjwt

    token = pyjwt.encode(claims, signer.key, algorithm="ES256", headers={"kid": "key-1"})
    try:
        identity = jwt_auth.identify(token)
    except Unauthenticated:
        return
    assert identity.mechanism == "jwt" and identity.principal == claims["sub"]


@pytest.mark.parametrize("kwargs, message", [
    ({"algorithms": ["none"]}, "not allowed"),
    ({"algorithms": ["HS256"]}, "not allowed"),
    ({"key_file": None}, "exactly one"),
    ({"jwks_url": "https://x/jwks"}, "exactly one"),
])
def test_jwt_settings_that_would_be_unsafe_are_refused(signer, tmp_path, kwargs, message):
    path = tmp_path / "key.pem"
    path.write_bytes(signer.public_pem())
    args = {"key_file": str(path), "algorithms": ["ES256"], **kwargs}
    with pytest.raises(JwtConfigError, match=message):
        JwtAuthenticator(ISSUER, AUDIENCE, **args)


def test_a_private_key_is_not_a_jwt_key_file(signer, tmp_path):
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "private.pem"
    path.write_bytes(signer.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    with pytest.raises(JwtConfigError, match="does not belong"):
        JwtAuthenticator(ISSUER, AUDIENCE, key_file=str(path))


def test_the_jwks_url_is_fetched_once_and_cached(signer):
    import http.server
    import threading

    body = json.dumps(signer.jwks()).encode()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/jwks.json"
        auth = JwtAuthenticator(ISSUER, AUDIENCE, jwks_url=url, algorithms=["ES256"])
        for name in ("a", "b", "c"):
            assert auth.identify(signer.token(name)).principal == name
        # An unknown key id refreshes at most once per cooldown, then refuses.
        for _ in range(3):
            with pytest.raises(Unauthenticated, match="key id"):
                auth.identify(Signer("unknown").token())
        assert len(hits) <= 2
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- credentials ---------------------------------------------------------------------------------

@pytest.mark.parametrize("header, bearer, malformed", [
    (None, None, None),
    ("Bearer abc", "abc", None),
    ("bearer   abc  ", "abc", None),
    (b"Bearer abc", "abc", None),
    ("Basic dXNlcjpwYXNz", None, "not 'Bearer <token>'"),
    ("Bearer", None, "not 'Bearer <token>'"),
    ("Bearer a b", None, "not 'Bearer <token>'"),
    ("Bearer " + "x" * 20000, None, "over"),
    (b"Bearer \xff", None, "not ASCII"),
])
def test_bearer_credentials(header, bearer, malformed):
    credentials = bearer_credentials("grpc", header)
    assert credentials.bearer == bearer
    assert (credentials.malformed is None) == (malformed is None)
    if malformed:
        assert malformed in credentials.malformed
    assert "abc" not in repr(credentials)


# -- the admission step on a server (memory://) --------------------------------------------------

@pytest.fixture
def guard(tmp_path, signer) -> Guard:
    key = tmp_path / "key.pem"
    key.write_bytes(signer.public_pem())
    return Guard(AuthConfig(
        token_file=write_tokens(tmp_path / "tokens.toml",
                                [("token-of-alice-000001", "alice", [])]),
        jwt_issuer=ISSUER, jwt_audience=(AUDIENCE,), jwt_key_file=str(key),
        jwt_algorithms=("ES256",), policy_file=write(tmp_path / "policy.toml", POLICY)))


def client(url: str, identity: str | None = None, **target):
    query = f"?identity={identity}" if identity else ""
    transport = bridge.get_transport(None, url + query,
                                     allowed_remote_exmods=["bridge.exceptions"])
    return transport, bridge.get_rpc_client(transport, bridge.Target(topic="topic", **target),
                                            timeout=5)


def test_the_server_admits_identified_callers_by_policy(memory_url, serve, guard, caplog):
    serve([EchoEndpoint()], guard=guard)
    before = stats.refusal_counts()
    transport, alice = client(memory_url, "alice")
    _, stranger = client(memory_url, "mallory")
    _, nobody = client(memory_url)
    try:
        forged = {IDENTITY_KEY: {"principal": "root", "mechanism": "token", "groups": []},
                  "user": "u"}
        seen = alice.call(forged, "echo_context")
        assert seen[IDENTITY_KEY] == {"principal": "alice", "mechanism": "broker",
                                      "groups": []}
        assert seen["user"] == "u"
        with caplog.at_level(logging.WARNING, logger="bridge.audit"):
            with pytest.raises(PermissionDenied, match="alice may not call 'fail'"):
                alice.call({}, "fail")
            with pytest.raises(PermissionDenied):
                stranger.call({}, "echo", value=1)
            with pytest.raises(Unauthenticated, match="credentials are needed"):
                nobody.call(forged, "echo", value=1)
        assert nobody.call({}, "ping") == "pong"
    finally:
        transport.cleanup()
    after = stats.refusal_counts()
    assert after.get(("memory", "permission_denied"), 0) - \
        before.get(("memory", "permission_denied"), 0) == 2
    assert after.get(("memory", "unauthenticated"), 0) - \
        before.get(("memory", "unauthenticated"), 0) == 1
    audit = [r.getMessage() for r in caplog.records if r.name == "bridge.audit"]
    assert len(audit) == 3
    assert "principal='alice' mechanism=broker wire=memory kind=call " \
           "target=openstack/topic/* namespace=- method=fail" in audit[0]


def test_a_forged_identity_is_dropped_even_without_any_auth(serve, memory_url):
    serve([EchoEndpoint()])
    transport, anyone = client(memory_url)
    try:
        seen = anyone.call({IDENTITY_KEY: {"principal": "root"}}, "echo_context")
        assert IDENTITY_KEY not in seen
        _, named = client(memory_url, "alice")
        assert named.call({}, "echo_context")[IDENTITY_KEY]["principal"] == "alice"
    finally:
        transport.cleanup()


def test_a_trusted_gateway_forwards_its_callers_identity(tmp_path):
    forwarded = {IDENTITY_KEY: {"principal": "alice", "mechanism": "jwt", "groups": ["ops"]}}
    trusting = Guard(AuthConfig(trusted_forwarders=("gateway-*",)))
    seen = admitted(trusting, Credentials("memory", broker_user="gateway-1"), forwarded)
    assert seen == {"principal": "alice", "mechanism": "jwt", "groups": ["ops"],
                    "via": "gateway-1"}
    # Anyone else's claim is dropped; a malformed one falls back to the gateway itself.
    assert admitted(trusting, Credentials("memory", broker_user="eve"), forwarded)[
        "principal"] == "eve"
    assert admitted(trusting, Credentials("memory", broker_user="gateway-1"),
                    {IDENTITY_KEY: {"principal": "", "mechanism": "jwt"}})["principal"] == \
        "gateway-1"
    assert admitted(trusting, None, forwarded) is None


def admitted(guard: Guard, credentials, ctxt):
    incoming = _Incoming(dict(ctxt), credentials)
    assert guard.admit(incoming, bridge.Target(topic="t"), "openstack") is None
    return incoming.ctxt.get(IDENTITY_KEY)


class _Incoming(bridge.transport.base.IncomingMessage):
    wire = "memory"

    def __init__(self, ctxt, credentials):
        self.ctxt, self.message, self.credentials = ctxt, {"method": "m"}, credentials

    def reply(self, result=None, failure=None):
        pass


def test_tokens_without_a_policy_admit_identified_callers_only(tmp_path):
    guard = Guard(AuthConfig(token_file=write_tokens(tmp_path / "t.toml",
                                                     [("token-of-alice-000001", "alice", [])])))
    ok = _Incoming({}, bearer_credentials("grpc", "Bearer token-of-alice-000001"))
    assert guard.admit(ok, bridge.Target(topic="t"), "x") is None
    assert ok.identity == Identity("alice", "token")
    assert isinstance(guard.admit(_Incoming({}, Credentials("grpc")),
                                  bridge.Target(topic="t"), "x"), Unauthenticated)
    bad = _Incoming({}, bearer_credentials("grpc", "Bearer token-of-alice-000002"))
    assert isinstance(guard.admit(bad, bridge.Target(topic="t"), "x"), Unauthenticated)
    assert bad.refusal is not None
    # Broker messages without user_id take the configured identity.
    brokered = Guard(AuthConfig(token_file=guard.config.token_file, amqp_identity="legacy"))
    amqp = _Incoming({}, Credentials("amqp", brokered=True))
    assert brokered.admit(amqp, bridge.Target(topic="t"), "x") is None
    assert amqp.identity == Identity("legacy", "broker")


def test_an_invalid_file_at_start_is_an_error_and_on_reload_keeps_the_old(tmp_path, caplog):
    bad = write(tmp_path / "bad.toml", "[[allow]]\nmetod = 'x'\n")
    with pytest.raises(AuthConfigError, match="unknown key"):
        Guard(AuthConfig(policy_file=bad))
    path = tmp_path / "policy.toml"
    write(path, '[[allow]]\nprincipals = ["alice"]\n')
    guard = Guard(AuthConfig(policy_file=str(path)))
    alice, bob = Identity("alice", "token"), Identity("bob", "token")
    assert guard.policy.decide(alice, request()).allowed
    write(path, "[[allow]\nbroken")
    with caplog.at_level(logging.ERROR):
        assert guard.reload() is False
    assert "not valid TOML" in caplog.text and "keeping the previous policy" in caplog.text
    assert guard.policy.decide(alice, request()).allowed
    write(path, '[[allow]]\nprincipals = ["bob"]\n')
    assert guard.reload() is True
    assert guard.policy.decide(bob, request()).allowed
    assert not guard.policy.decide(alice, request()).allowed


def test_a_failing_guard_refuses(serve, memory_url):
    class Broken(Guard):
        def admit(self, incoming, server_target, default_exchange):
            raise RuntimeError("boom")

    serve([EchoEndpoint()], guard=Broken())
    transport, anyone = client(memory_url)
    try:
        with pytest.raises(bridge.MessagingServerError, match="could not check"):
            anyone.call({}, "echo", value=1)
    finally:
        transport.cleanup()


# -- secrets masked ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, secret", [
    ("connecting to rabbit://nova:s3cr3t@rabbit:5672/", "s3cr3t"),
    ("rabbit://a:p1@h1:5672,b:p2@h2:5672,c:p3@h3/vhost", "p2"),
    ("rabbit://a:p1@h1,b:p2@h2/", "p2"),
    ("authorization: Bearer abcdefgh0123456789", "abcdefgh0123456789"),
    ("got eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJl in a message", "c2lnbmF0dXJl"),
    ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----", "MIGHAgEAMBMG"),
    ('{"password": "hunter2hunter2"}', "hunter2hunter2"),
    ("url?password=hunter2hunter2&x=1", "hunter2hunter2"),
])
def test_secrets_are_masked_in_text(text, secret):
    from bridge.auth.redact import redact_text

    masked = redact_text(text)
    assert secret not in masked and "***" in masked


def test_text_without_secrets_is_kept():
    from bridge.auth.redact import redact_text

    for text in ("grpc://0.0.0.0:50051", "at 12:30:00 http://host:80/x",
                 "cannot read token file '/etc/bridge/tokens.toml'",
                 "Require bearer tokens (auth_token_file)"):
        assert redact_text(text) == text


def test_the_log_formatter_masks_every_line_and_traceback(capsys):
    from bridge.app.logs import configure_logging

    handler = configure_logging("INFO", "json")
    try:
        log = logging.getLogger("bridge.test.redact")
        log.info("connecting to %s", "rabbit://u:pw-123456@h/")
        try:
            raise ValueError("token=abcdef123456 rejected")
        except ValueError:
            log.exception("failed with Bearer abcdefgh0123456789")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "pw-123456" not in err and "abcdef123456" not in err
    assert "abcdefgh0123456789" not in err and err.count("***") >= 3
