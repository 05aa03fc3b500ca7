"""Identities on the AMQP wire and through the gateway, with real peers on RabbitMQ.

oslo.messaging (18.3) publishes with kombu's ``Producer.publish`` and passes it no
``user_id``, and has no option to: its messages take the configured identity of
broker messages (``auth_amqp_identity``). A message with ``user_id`` is published here
with kombu, in oslo.messaging's wire format, as any client that sets it would.
"""

from __future__ import annotations

import json
import queue
import uuid

import grpc
import pytest
from amqp_support import BROKER_URL, Peer, unique
from auth_support import write, write_tokens
from grpc_helpers import envelope, failure_of

import bridge
from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.auth import IDENTITY_KEY, AuthConfig, Guard
from bridge.gateway import Forwarder, Route, gateway_server
from bridge.transport.amqp.envelope import decode_body, encode_envelope
from endpoints import default_endpoints
from tests.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker_available")]

TOKEN = "gateway-caller-token-000001"


def policy_file(tmp_path, text: str) -> str:
    return write(tmp_path / "policy.toml", text)


@pytest.fixture
def amqp_server(tmp_path):
    """A bridge server on RabbitMQ: guest (by user_id) may read its context, 'legacy'
    (AMQP messages without user_id) may echo, nobody may do anything else."""
    guard = Guard(AuthConfig(amqp_identity="legacy", policy_file=policy_file(tmp_path, """
        [[allow]]
        principals = ["guest"]
        method = ["echo_context", "echo"]

        [[allow]]
        principals = ["legacy"]
        method = "echo"
        """)))
    exchange, topic = unique("auth_exchange"), unique("auth_topic")
    transport = bridge.get_transport(None, BROKER_URL)
    server = bridge.get_rpc_server(transport, bridge.Target(exchange=exchange, topic=topic,
                                                            server="s1"),
                                   default_endpoints(), guard=guard)
    server.start()
    yield {"exchange": exchange, "topic": topic}
    server.stop()
    server.wait()
    transport.cleanup()


def kombu_call(exchange: str, topic: str, method: str, user_id: str | None,
               ctxt: dict | None = None) -> dict:
    """An oslo.messaging-format call published with kombu (``user_id`` set when given);
    the reply's dict (``result``, ``failure``)."""
    import kombu

    reply_q = unique("reply")
    inner = {"method": method, "args": {}, "version": "1.0", "_msg_id": uuid.uuid4().hex,
             "_reply_q": reply_q, "_unique_id": uuid.uuid4().hex,
             **{f"_context_{key}": value for key, value in (ctxt or {}).items()}}
    properties = {"user_id": user_id} if user_id else {}
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//", connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_declare(reply_q, auto_delete=True)
        kombu.Producer(channel).publish(encode_envelope(inner), exchange=exchange,
                                        routing_key=topic, content_type="application/json",
                                        content_encoding="utf-8", **properties)
        box: list = []

        def replied() -> bool:
            message = channel.basic_get(reply_q, no_ack=True)
            if message is not None:
                box.append(decode_body(message.body, message.properties, 1 << 20))
            return bool(box) and box[-1].get("ending")

        wait_for(replied, timeout=10)
        return box[-1]


def test_a_user_id_validated_by_the_broker_is_the_identity(amqp_server):
    reply = kombu_call(amqp_server["exchange"], amqp_server["topic"], "echo_context", "guest",
                       {IDENTITY_KEY: {"principal": "root", "mechanism": "mtls"}})
    assert reply["failure"] is None
    assert reply["result"][IDENTITY_KEY] == {"principal": "guest", "mechanism": "broker",
                                             "groups": []}
    denied = kombu_call(amqp_server["exchange"], amqp_server["topic"], "fail", "guest")
    failure = json.loads(denied["failure"])
    assert (failure["class"], failure["module"]) == ("PermissionDenied",
                                                     "oslo_messaging.exceptions")


def test_the_broker_refuses_a_user_id_that_is_not_the_connections(amqp_server):
    import amqp.exceptions

    with pytest.raises(amqp.exceptions.PreconditionFailed, match="user_id property set to "
                       "'root' but authenticated user was 'guest'"):
        kombu_call(amqp_server["exchange"], amqp_server["topic"], "echo_context", "root")


def test_an_oslo_messaging_caller_takes_the_configured_identity(amqp_server):
    import oslo_messaging

    oslo = Peer("oslo")
    try:
        client = oslo.client(amqp_server["exchange"], amqp_server["topic"], timeout=10)
        assert client.call({}, "echo", value=[1, "a"]) == [1, "a"]
        with pytest.raises(oslo_messaging.RemoteError) as info:
            client.call({"user": "u"}, "echo_context")
        assert info.value.exc_type == "PermissionDenied"
        assert "legacy may not call 'echo_context'" in info.value.value
    finally:
        oslo.close()


def test_an_oslo_caller_nobody_identified_is_unauthenticated(tmp_path):
    import oslo_messaging

    guard = Guard(AuthConfig(policy_file=policy_file(tmp_path, """
        [[allow]]
        principals = ["*"]
        """)))
    exchange, topic = unique("auth_exchange"), unique("auth_topic")
    transport = bridge.get_transport(None, BROKER_URL)
    server = bridge.get_rpc_server(transport, bridge.Target(exchange=exchange, topic=topic,
                                                            server="s1"),
                                   default_endpoints(), guard=guard)
    server.start()
    oslo = Peer("oslo")
    try:
        with pytest.raises(oslo_messaging.RemoteError) as info:
            oslo.client(exchange, topic, timeout=10).call({}, "echo", value=1)
        assert info.value.exc_type == "Unauthenticated"
        # A bridge caller that allows the module gets the class itself.
        client = bridge.get_rpc_client(
            bridge.get_transport(None, BROKER_URL, allowed_remote_exmods=[
                "oslo_messaging.exceptions"]), bridge.Target(exchange=exchange, topic=topic),
            timeout=10)
        with pytest.raises(bridge.exceptions.Unauthenticated):
            client.call({}, "echo", value=1)
        client.transport.cleanup()
    finally:
        oslo.close()
        server.stop()
        server.wait()
        transport.cleanup()


# -- the gateway, both ways ----------------------------------------------------------------------

def test_the_gateway_forwards_what_the_policy_allows_to_a_real_oslo_server(tmp_path):
    events: queue.Queue = queue.Queue()
    oslo = Peer("oslo")
    exchange, topic = unique("gw_exchange"), unique("compute")
    oslo.server(exchange, topic, "compute-1", events)
    guard = Guard(AuthConfig(
        token_file=write_tokens(tmp_path / "tokens.toml", [(TOKEN, "console", [])]),
        policy_file=policy_file(tmp_path, f"""
            [[deny]]
            name = "nobody records"
            method = "record"

            [[allow]]
            name = "the console reads compute"
            principals = ["console"]
            topic = "{topic}"
            method = ["echo", "context", "record"]
            """)))
    transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    forwarder = Forwarder([Route(topic=topic, url=BROKER_URL)])
    gateway = gateway_server([], bridge.Target(topic="gateway", server="front"), forwarder,
                             guard=guard)
    gateway.start()
    gateway.serve_unrouted(transport)
    # serve_unrouted needs a listening gRPC server: a local server on the same transport.
    local = bridge.get_rpc_server(transport, bridge.Target(topic="local", server="front"),
                                  default_endpoints(), guard=guard)
    local.start()
    address = local.addresses[0].split("://", 1)[1]

    def call(method: str, bearer: str | None = TOKEN, rpc: str = "Call", **args):
        request = (pb.CallRequest if rpc == "Call" else pb.CastRequest)(envelope=envelope(
            topic=topic, exchange=exchange, method=method, version="1.5",
            ctxt={"user": "u", IDENTITY_KEY: {"principal": "root", "mechanism": "jwt"}},
            **args))
        metadata = [("authorization", f"Bearer {bearer}")] if bearer else []
        with grpc.insecure_channel(address) as chan:
            data = chan.unary_unary(f"/bridge.v1.Bridge/{rpc}")(
                request.SerializeToString(), metadata=metadata, timeout=10)
        return pb.CallResponse.FromString(data) if rpc == "Call" else None

    try:
        from bridge.transport.grpc.values import from_value

        assert from_value(call("echo", value=7).result) == 7
        # The oslo.messaging server sees the caller's identity, as established by the gateway.
        seen = from_value(call("context").result)
        assert seen[IDENTITY_KEY] == {"principal": "console", "mechanism": "token",
                                      "groups": []}
        assert seen["user"] == "u"
        for method, rpc, args in (("record", "Cast", {"token": "t"}),
                                  ("sleep", "Call", {"seconds": 0})):
            with pytest.raises(grpc.RpcError) as info:
                call(method, rpc=rpc, **args)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert failure_of(info.value).reason == pb.Failure.REASON_PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            call("echo", bearer=None, value=1)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The refused cast never reached the legacy server (an allowed call after it did).
        assert from_value(call("echo", value=8).result) == 8
        assert events.empty()
    finally:
        oslo.close()
        gateway.stop()
        gateway.wait()
        forwarder.close()
        local.stop()
        local.wait()
        transport.cleanup()


def test_the_gateway_admits_amqp_callers_before_forwarding_to_grpc(tmp_path):
    backend_transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    backend = bridge.get_rpc_server(backend_transport, bridge.Target(topic="backend",
                                                                     server="b1"),
                                    default_endpoints())
    backend.start()
    guard = Guard(AuthConfig(amqp_identity="legacy", policy_file=policy_file(tmp_path, """
        [[allow]]
        principals = ["legacy"]
        kind = "call"
        method = "echo_context"
        """)))
    amqp_transport = bridge.get_transport(None, BROKER_URL)
    exchange, topic = unique("gw_exchange"), unique("images")
    forwarder = Forwarder([Route(topic=topic, url=backend.addresses[0],
                                 upstream_topic="backend")])
    gateway = gateway_server(amqp_transport, bridge.Target(exchange=exchange, topic=topic,
                                                          server="gw"), forwarder, guard=guard)
    gateway.start()
    oslo = Peer("oslo")
    try:
        import oslo_messaging

        client = oslo.client(exchange, topic, timeout=10)
        seen = client.call({"user": "o"}, "echo_context")
        # The upstream bridge trusts no forwarder: it drops the identity the gateway sent.
        assert IDENTITY_KEY not in seen and seen["user"] == "o"
        with pytest.raises(oslo_messaging.RemoteError) as info:
            client.call({}, "echo", value=1)
        assert info.value.exc_type == "PermissionDenied"
    finally:
        oslo.close()
        gateway.stop()
        gateway.wait()
        forwarder.close()
        amqp_transport.cleanup()
        backend.stop()
        backend.wait()
        backend_transport.cleanup()
