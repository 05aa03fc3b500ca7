"""The HTTP/JSON wire, in process: routes, values, errors (the same codes as gRPC), limits,
the timeout header, streaming, describe, health, the gateway and the Python client."""

from __future__ import annotations

import http.client
import json
import math
import threading
import uuid

import grpc
import pytest
from google.protobuf import json_format
from grpc_helpers import channel, envelope, failure_of, raw_call
from http_endpoints import ENDPOINTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_for

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.auth.identity import Credentials
from bridge.gateway import Forwarder, gateway_server
from bridge.gateway.routes import Route
from bridge.transport.http.status import CODES, HTTP_STATUS
from endpoints import default_endpoints


class Slow:
    """Methods that wait for the test."""

    target = bridge.Target(namespace="slow")

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def hold(self, ctx: dict) -> str:
        self.entered.set()
        self.release.wait(10)
        return "released"

    def context(self, ctx: dict) -> dict:
        return dict(ctx)

    def whoami(self, ctx: dict) -> None:
        return None


class Http:
    """A tiny client for raw requests to one server."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            conn.close()

    def post(self, path: str, value=None, raw: bytes | None = None, **headers: str):
        body = raw if raw is not None else json.dumps(value).encode()
        status, data, _ = self.request("POST", path, body,
                                       {k.replace("_", "-"): v for k, v in headers.items()})
        return status, json.loads(data) if data else None


@pytest.fixture(scope="module")
def wires():
    """One server on gRPC and HTTP (port 0 each): shipped, test and slow endpoints."""
    grpc_transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    http_transport = bridge.get_transport(
        {"http": {"max_message_size": 4096, "max_concurrent_calls": 4}}, "http://127.0.0.1:0")
    slow = Slow()
    server = bridge.get_rpc_server([grpc_transport, http_transport],
                                   bridge.Target(topic="t", server="s1"),
                                   [*ENDPOINTS, slow, *default_endpoints()])
    server.start()
    addresses = dict(item.split("://", 1)[0:1] + [item] for item in server.addresses)
    try:
        yield {"server": server, "grpc": addresses["grpc"], "http": addresses["http"],
               "client": Http(addresses["http"]), "slow": slow,
               "http_transport": http_transport}
    finally:
        slow.release.set()
        server.stop()
        server.wait()
        grpc_transport.cleanup()
        http_transport.cleanup()


def test_call_cast_and_shorthand(wires):
    client = wires["client"]
    body = {"target": {"topic": "t"}, "namespace": "calc", "version": "1.1", "method": "add",
            "args": {"a": 2, "b": 3}, "context": {"request_id": "r1"}}
    assert client.post("/v1/call", body) == (200, {"result": 5})
    assert client.post("/v1/cast", body) == (202, {})
    assert client.post("/v1/t/add?namespace=calc", {"a": 1, "b": 2}) == (200, {"result": 3})
    assert client.post("/v1/t/greet", {"name": "Ada"}) == (200, {"result": "Hello, Ada!"})
    assert client.post("/v1/t/greet?server=s1&version=1.0", {"name": "B"})[0] == 200
    assert client.post("/v1/t/ping", raw=b"") == (200, {"result": "pong"})
    status, body = client.post("/v1/t/greet?server=other", {"name": "B"})
    assert (status, body["code"]) == (404, CODES["NOT_FOUND"])


def _echo(client: Http, raw: bytes) -> tuple[int, bytes]:
    status, data, _ = client.request("POST", "/v1/t/echo", raw)
    return status, data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_values_cross_exactly(wires, value):
    status, data = _echo(wires["client"], json.dumps({"value": value}).encode())
    assert status == 200
    back = json.loads(data)["result"]
    assert back == value and _types(back) == _types(value)


def _types(value):
    if isinstance(value, list):
        return [_types(item) for item in value]
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    return type(value)


def test_big_integers_floats_nan_and_infinity(wires):
    client = wires["client"]
    big = 2**200 + 1
    assert _echo(client, b'{"value": %d}' % big) == (200, b'{"result":%d}' % big)
    assert _echo(client, b'{"value": 1.0}') == (200, b'{"result":1.0}')
    assert _echo(client, b'{"value": -0.0}') == (200, b'{"result":-0.0}')
    # JSON has no NaN or infinity: the bare words Python's json writes, both ways.
    status, data = _echo(client, b'{"value": [NaN, Infinity, -Infinity, 1e400]}')
    assert (status, data) == (200, b'{"result":[NaN,Infinity,-Infinity,Infinity]}')
    result = json.loads(data)["result"]
    assert math.isnan(result[0]) and result[1:] == [math.inf, -math.inf, math.inf]
    # The same values as gRPC carries: NaN from gRPC reaches an HTTP caller as NaN.
    client_grpc = bridge.get_rpc_client(bridge.get_transport(None, wires["grpc"]),
                                        bridge.Target(topic="t"))
    assert math.isinf(client_grpc.call({}, "echo", value=math.inf))


def _grpc_failure(address: str, **kwargs) -> tuple[grpc.StatusCode, pb.Failure]:
    data = pb.CallRequest(envelope=envelope(**kwargs)).SerializeToString()
    chan = channel(address)
    try:
        raw_call(chan, data, timeout=kwargs.pop("timeout", 10) if "timeout" in kwargs else 10)
    except grpc.RpcError as err:
        return err.code(), failure_of(err)
    finally:
        chan.close()
    raise AssertionError("the gRPC call succeeded")


@pytest.mark.parametrize("call, reason", [
    ({"topic": "t", "method": "fail"}, "REASON_ENDPOINT_ERROR"),
    ({"topic": "t", "method": "lookup", "key": "green"}, "REASON_EXPECTED_ERROR"),
    ({"topic": "t", "method": "nope"}, "REASON_NO_SUCH_METHOD"),
    ({"topic": "t", "method": "add", "namespace": "calc", "version": "2.0"},
     "REASON_UNSUPPORTED_VERSION"),
    ({"topic": "t", "method": "add", "namespace": "calc", "version": "x"},
     "REASON_INVALID_ARGUMENT"),
    ({"topic": "nobody", "method": "ping"}, "REASON_TARGET_NOT_FOUND"),
])
def test_errors_have_the_grpc_code_and_failure(wires, call, reason):
    code, failure = _grpc_failure(wires["grpc"], **call)
    args = {k: v for k, v in call.items() if k not in ("topic", "method", "namespace", "version")}
    body = {"target": {"topic": call["topic"]}, "method": call["method"], "args": args}
    for key in ("namespace", "version"):
        if key in call:
            body[key] = call[key]
    status, error = wires["client"].post("/v1/call", body)
    assert failure.reason == pb.Failure.Reason.Value(reason)
    assert error["code"] == code.value[0]
    assert status == HTTP_STATUS[code.name]
    detail = error["details"][0]
    expected = json_format.MessageToDict(failure)
    if "message" in expected and "at grpc://" in expected["message"]:  # names the address
        expected["message"] = detail["message"]
    assert {k: v for k, v in detail.items() if k != "@type"} == expected
    assert detail["@type"] == "type.googleapis.com/bridge.v1.Failure"
    if failure.class_name:
        assert error["message"] == f"{failure.class_name}: {failure.message}"


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"target": {"topic": "t"}, "method": "echo", "colour": 1}', "unknown field(s) 'colour'"),
    (b'{"target": {"topic": "t", "shard": 1}, "method": "echo"}', "unknown field(s) 'shard'"),
    (b'{"target": {"topic": 5}, "method": "echo"}', "'target.topic' must be a non-empty"),
    (b'{"target": {"topic": "t"}, "method": ""}', "'method' must be a non-empty string"),
    (b'{"target": {"topic": "t"}, "method": "echo", "args": [1]}', "'args' must be a JSON obj"),
    (b'{"target": {"topic": "t"}, "method": "echo", "namespace": 3}', "'namespace' must be"),
    (b'{"target": {"topic": "t", "fanout": "yes"}, "method": "echo"}', "'target.fanout' must"),
    (b'{"target": {"topic": "t", "fanout": true}, "method": "echo"}', "cannot be used with fan"),
    (b'{"target": {"topic": "t"}, "method": "echo", "args": {"value": "\\ud800"}}',
     "lone surrogate"),
    (b'{"target": {"topic": "t"}, "method": "echo", "args": {"value": ' + b"[" * 70 + b"]" * 70
     + b"}}", "nests deeper than 32"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bad_requests_are_clear_400s(wires, raw, words):
    status, error = wires["client"].post("/v1/call", raw=raw)
    assert (status, error["code"]) == (400, CODES["INVALID_ARGUMENT"]), error
    assert words in error["message"], error["message"]
    assert error["details"][0]["reason"] == "REASON_INVALID_ARGUMENT"
    assert wires["client"].post("/v1/t/ping", raw=b"")[0] == 200  # and the server goes on


def test_bad_shorthand_requests(wires):
    client = wires["client"]
    for path, raw, words in [("/v1/t/echo?colour=red", b"{}", "unknown query parameter"),
                             ("/v1/t/echo?server=a&server=b", b"{}", "given twice"),
                             ("/v1/t/echo", b"[1]", "must be a JSON object"),
                             ("/v1/t/echo", b"{", "not valid JSON")]:
        status, error = client.post(path, raw=raw)
        assert status == 400 and words in error["message"], (path, error)
    status, error = client.post("/v1/t/echo", raw=b"{}", X_Bridge_Timeout="soon")
    assert status == 400 and "X-Bridge-Timeout" in error["message"]
    status, error = client.post("/v1/t/echo", raw=b"{}", X_Bridge_Context="[]")
    assert status == 400 and "X-Bridge-Context" in error["message"]


def test_oversized_bodies_and_replies_are_refused(wires):
    client = wires["client"]
    status, error = client.post("/v1/t/echo", {"value": "x" * 5000})
    assert (status, error["code"]) == (429, CODES["RESOURCE_EXHAUSTED"])
    assert error["details"][0]["limitName"] == "max_message_size"
    assert error["details"][0]["limitValue"] == "4096"
    # A reply over the limit: the same failure the gRPC wire sends.
    status, error = client.post("/v1/t/join", {"words": ["x" * 1000] * 5})
    assert status == 429 and "over max_message_size" in error["message"]
    assert client.post("/v1/t/ping", raw=b"")[0] == 200


def test_http_errors_outside_rpc(wires):
    client = wires["client"]
    status, data, _ = client.request("GET", "/v1/nothing")
    assert status == 404 and json.loads(data)["code"] == CODES["NOT_FOUND"]
    status, data, headers = client.request("GET", "/v1/call")
    assert status == 405 and headers.get("allow") == "POST"
    status, data, headers = client.request("POST", "/v1/describe", b"")
    assert status == 405 and headers.get("allow") == "GET"


def test_the_timeout_header_is_the_deadline(wires):
    client = wires["client"]
    status, body = client.post("/v1/t/context?namespace=slow", {}, X_Bridge_Timeout="7.5")
    assert status == 200 and 7.0 < body["result"]["client_timeout"] <= 7.5
    status, body = client.post("/v1/t/context?namespace=slow", {},
                               X_Bridge_Context='{"request_id": "req-9"}')
    assert body["result"] == {"request_id": "req-9", "client_timeout": None}
    slow = wires["slow"]
    slow.release.clear()
    try:
        status, error = client.post("/v1/t/hold?namespace=slow", {}, X_Bridge_Timeout="0.2")
        assert (status, error["code"]) == (504, CODES["DEADLINE_EXCEEDED"])
        assert error["details"][0]["reason"] == "REASON_DEADLINE_EXCEEDED"
    finally:
        slow.release.set()


def test_over_max_concurrent_calls_is_429(wires):
    client, slow = wires["client"], wires["slow"]
    slow.release.clear()
    slow.entered.clear()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(
        client.post("/v1/t/hold?namespace=slow", {}))) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        assert wait_for(lambda: wires["server"].in_flight >= 4)
        status, error = client.post("/v1/t/ping", raw=b"")
        assert (status, error["details"][0]["limitName"]) == (429, "max_concurrent_calls")
    finally:
        slow.release.set()
        for thread in threads:
            thread.join(10)
    assert [status for status, _ in results] == [200] * 4


def test_stream_pipelines_calls_in_completion_order(wires):
    client, slow = wires["client"], wires["slow"]
    slow.release.clear()
    lines = [{"id": 1, "target": {"topic": "t"}, "namespace": "slow", "method": "hold"},
             {"id": "two", "target": {"topic": "t"}, "method": "echo", "args": {"value": 2**70}},
             {"id": 3, "target": {"topic": "t"}, "method": "fail"},
             {"id": 4, "target": {"topic": "t"}, "namespace": "slow", "method": "hold",
              "timeout": 0.2}]
    body = "".join(json.dumps(line) + "\n" for line in lines) + "{oops\n" + \
        json.dumps({"id": 6, "target": {"topic": "t"}, "method": "ping", "extra": 1})
    threading.Timer(1.0, slow.release.set).start()
    status, data, headers = client.request("POST", "/v1/stream", body)
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    replies = [json.loads(line) for line in data.splitlines()]
    by_id = {reply["id"]: reply for reply in replies}
    assert len(replies) == 6
    assert by_id["two"]["result"] == 2**70
    assert by_id[3]["error"]["details"][0]["className"] == "ValueError"
    assert by_id[4]["error"]["code"] == CODES["DEADLINE_EXCEEDED"]
    assert by_id[6]["error"]["code"] == CODES["INVALID_ARGUMENT"]
    assert by_id[None]["error"]["code"] == CODES["INVALID_ARGUMENT"]
    assert by_id[1]["result"] == "released"
    assert replies[-1]["id"] == 1  # the slow call ends last: completion order


def test_describe_health_and_set_serving(wires):
    client = wires["client"]
    status, data, _ = client.request("GET", "/v1/describe")
    description = json.loads(data)
    assert status == 200 and description == wires["server"].describe()
    status, data, _ = client.request("GET", "/v1/health")
    assert (status, json.loads(data)) == (200, {"status": "SERVING"})
    transport = bridge.get_transport(None, wires["http"])
    try:
        assert transport.check_health() == "SERVING"
        wires["server"].set_serving(False)
        status, data, _ = client.request("GET", "/v1/health")
        assert (status, json.loads(data)) == (503, {"status": "NOT_SERVING"})
        assert transport.check_health() == "NOT_SERVING"
    finally:
        wires["server"].set_serving(True)
        transport.cleanup()


def test_the_python_client_over_http(wires):
    transport = bridge.get_transport(None, wires["http"])
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=10)
        assert client.call({}, "echo", value={"big": 2**90, "f": 1.0}) == {"big": 2**90, "f": 1.0}
        assert client.prepare(namespace="calc", version="1.2").call({}, "mul", a=6, b=7) == 42
        with pytest.raises(ValueError, match="boom"):
            client.call({}, "fail", message="boom")
        wires["slow"].release.clear()
        with pytest.raises(bridge.MessagingTimeout):
            client.prepare(namespace="slow", timeout=0.2).call({}, "hold")
        wires["slow"].release.set()
        with pytest.raises(bridge.MessageDeliveryFailure):
            bridge.get_rpc_client(transport, bridge.Target(topic="nobody")).call({}, "ping")
        client.cast({}, "echo", value=1)
    finally:
        wires["slow"].release.set()
        transport.cleanup()


def test_authorization_reaches_the_incoming_message(wires):
    seen = []

    class Observer:
        def on_start(self, incoming):
            seen.append((incoming.wire, incoming.credentials))

        def on_finish(self, incoming, outcome, seconds):
            pass

    wires["server"].add_observer(Observer())
    status, _ = wires["client"].post("/v1/t/ping", raw=b"", Authorization="Bearer s3cret")
    assert status == 200
    wire, credentials = seen[-1]
    assert wire == "http" and credentials.wire == "http"
    assert credentials.bearer == "s3cret" and credentials.peer_names == ()
    wires["client"].post("/v1/t/ping", raw=b"", Authorization="Basic x")
    assert seen[-1][1].malformed and seen[-1][1].bearer is None
    wires["client"].post("/v1/t/ping", raw=b"")
    assert seen[-1][1] == Credentials("http")


def test_routed_topics_are_forwarded_over_http():
    upstream_url = f"memory://http-gw-{uuid.uuid4().hex}"
    upstream = bridge.get_transport(None, upstream_url)
    backend = bridge.get_rpc_server(upstream, bridge.Target(topic="compute", server="b"),
                                    default_endpoints())
    backend.start()
    local = bridge.get_transport(None, "http://127.0.0.1:0")
    server = bridge.get_rpc_server(local, bridge.Target(topic="front", server="f"), ENDPOINTS)
    server.start()
    gateway = gateway_server([], bridge.Target(topic="gateway", server="f"),
                             Forwarder([Route(topic="compute", url=upstream_url)]))
    gateway.start()
    gateway.serve_unrouted(local)
    try:
        client = Http(server.addresses[0])
        assert client.post("/v1/compute/echo", {"value": [1, 2**70]}) == (
            200, {"result": [1, 2**70]})
        status, error = client.post("/v1/compute/nope", {})
        assert (status, error["details"][0]["reason"]) == (501, "REASON_NO_SUCH_METHOD")
        status, data, _ = client.request("GET", "/v1/describe")
        targets = json.loads(data)["targets"]
        assert [(t["topic"], t["routed"]) for t in targets] == [("front", False),
                                                               ("compute", True)]
    finally:
        gateway.stop()
        gateway.wait()
        server.stop()
        server.wait()
        backend.stop()
        backend.wait()
        local.cleanup()
        upstream.cleanup()


def test_https_with_mutual_tls_hands_the_client_certificate_over(tmp_path):
    from tls_certs import make_pki

    pki = make_pki(tmp_path)
    cert, key = pki["server"]
    client_cert, client_key = pki["client"]
    server_tls = {"tls_cert_file": cert, "tls_key_file": key, "tls_ca_file": pki["ca"],
                  "tls_client_auth": True}
    transport = bridge.get_transport({"http": server_tls}, "https://127.0.0.1:0")
    seen = []

    class Observer:
        def on_start(self, incoming):
            seen.append(incoming.credentials)

        def on_finish(self, incoming, outcome, seconds):
            pass

    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), ENDPOINTS)
    server.add_observer(Observer())
    server.start()
    url = server.addresses[0]
    try:
        assert url.startswith("https://")
        client_tls = {"tls_ca_file": pki["ca"], "tls_cert_file": client_cert,
                      "tls_key_file": client_key, "tls_server_name": "localhost"}
        client_transport = bridge.get_transport({"http": client_tls}, url)
        try:
            client = bridge.get_rpc_client(client_transport, bridge.Target(topic="t"))
            assert client.call({}, "greet", name="TLS") == "Hello, TLS!"
        finally:
            client_transport.cleanup()
        # The verified certificate's names, as on gRPC: DNS SANs before the CN.
        assert seen[-1].peer_names and seen[-1].peer_names[-1] == "client"
        # Without a client certificate the handshake is refused.
        anonymous = bridge.get_transport({"http": {"tls_ca_file": pki["ca"],
                                                   "tls_server_name": "localhost"}}, url)
        try:
            with pytest.raises(bridge.MessageDeliveryFailure):
                bridge.get_rpc_client(anonymous, bridge.Target(topic="t"),
                                      timeout=5).call({}, "greet", name="x")
        finally:
            anonymous.cleanup()
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def test_the_guard_judges_http_callers_and_describe_lists_what_they_may_call(tmp_path):
    from auth_support import write, write_tokens

    from bridge.auth import AuthConfig, Guard

    token = "alice-token-0123456789abcdef"
    guard = Guard(AuthConfig(
        token_file=write_tokens(tmp_path / "tokens.toml", [(token, "alice", [])]),
        policy_file=write(tmp_path / "policy.toml", '[[allow]]\nprincipals = ["alice"]\n'
                          'wire = "http"\ntopic = "t"\nmethod = ["greet", "add"]\n')))
    transport = bridge.get_transport(None, "http://127.0.0.1:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), ENDPOINTS,
                                   guard=guard)
    server.start()
    client = Http(server.addresses[0])
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        status, error = client.post("/v1/t/greet", {"name": "x"})
        assert (status, error["code"]) == (401, CODES["UNAUTHENTICATED"])
        assert error["details"][0]["reason"] == "REASON_UNAUTHENTICATED"
        status, error = client.post("/v1/t/greet", {"name": "x"}, Authorization="Bearer nope")
        assert status == 401
        assert client.post("/v1/t/greet", {"name": "x"}, **bearer) == (200, {"result":
                                                                              "Hello, x!"})
        status, error = client.post("/v1/t/echo", {"value": 1}, **bearer)
        assert (status, error["details"][0]["reason"]) == (403, "REASON_PERMISSION_DENIED")
        # A refused cast is reported, not accepted.
        cast = {"target": {"topic": "t"}, "method": "echo", "args": {"value": 1}}
        assert client.post("/v1/cast", cast)[0] == 401
        assert client.post("/v1/cast", cast, **bearer)[0] == 403
        # Describe lists what this caller may call, and nothing to an anonymous one.
        _, data, _ = client.request("GET", "/v1/describe", headers=bearer)
        listed = {(e["namespace"], m["name"]) for t in json.loads(data)["targets"]
                  for e in t["endpoints"] for m in e["methods"]}
        assert listed == {("calc", "add"), (None, "greet")}
        _, data, _ = client.request("GET", "/v1/describe")
        assert all(not t["endpoints"] for t in json.loads(data)["targets"])
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
