"""Real oslo.messaging peers against rpc-bridge over RabbitMQ.

Each direction runs the same list: ``oslo->bridge`` is a real oslo.messaging
RPCClient calling three rpc-bridge servers, ``bridge->oslo`` the rpc-bridge client
calling three real oslo.messaging servers (threading executor), ``bridge->bridge``
rpc-bridge on both sides. Every module run uses its own exchange and topic.

Each runs on both brokers: the machine's RabbitMQ 3.10 with default options, and
RabbitMQ 4.3 with upstream defaults, where both kinds of peer are configured as
kolla-ansible configures oslo.messaging (``KOLLA_OPTIONS``: quorum queues, transient
quorum queues, stream fanout, the queue manager, a prefetch): oslo.messaging 18.3 with
its default options hangs on 4.3, which refuses its transient queues.
"""

from __future__ import annotations

import queue
import uuid

import brokers
import pytest
from amqp_support import Peer, broker_url, delete_queues, drain, peer_options, unique

DIRECTIONS = ["oslo->bridge", "bridge->oslo", "bridge->bridge"]
SERVERS = ["s1", "s2", "s3"]
BROKER_MARKS = {"rabbitmq-3.10": pytest.mark.broker, "rabbitmq-4.3": pytest.mark.broker43}


def _broker(request, name: str):
    """The broker ``name``, started if needed (4.3), skipped (or failed under CI) if absent."""
    request.getfixturevalue("broker43_available" if name == "rabbitmq-4.3"
                            else "broker_available")
    return brokers.BROKERS[name]


class Setup:
    def __init__(self, direction: str, broker) -> None:
        client_kind, server_kind = direction.split("->")
        self.broker = broker
        self.exchange = unique("bx")
        self.topic = unique("interop")
        self.events: queue.Queue = queue.Queue()
        self.server_peer = Peer(server_kind, broker_url(broker, peer_options(broker, server_kind)))
        self.client_peer = Peer(client_kind, broker_url(broker, peer_options(broker, client_kind)))
        self.lib = self.client_peer.lib
        self.server_lib = self.server_peer.lib
        transport = self.server_peer.transport()
        for name in SERVERS:
            self.server_peer.server(self.exchange, self.topic, name, self.events,
                                    transport=transport if server_kind == "oslo" else None)
        self.transport = self.client_peer.transport()
        self._allowed = None

    def client(self, **kwargs):
        kwargs.setdefault("timeout", 10)
        return self.client_peer.client(self.exchange, self.topic, transport=self.transport,
                                       **kwargs)

    def allowed_client(self, **kwargs):
        """A client whose transport may rebuild oslo.messaging's dispatcher exceptions."""
        if self._allowed is None:
            self._allowed = self.client_peer.transport(["oslo_messaging.rpc.dispatcher"])
        kwargs.setdefault("timeout", 10)
        return self.client_peer.client(self.exchange, self.topic, transport=self._allowed,
                                       **kwargs)

    def close(self) -> None:
        # Servers first: a call still running (the timeout test) can then still reply,
        # instead of an oslo server retrying for 60 s towards a deleted reply queue.
        self.server_peer.close()
        self.client_peer.close()
        delete_queues([self.topic, f"{self.topic}_fanout"]
                      + [f"{self.topic}.{name}" for name in SERVERS],
                      [self.exchange, f"{self.topic}_fanout"], broker=self.broker)


@pytest.fixture(scope="module", params=[
    pytest.param((direction, name), id=f"{direction}-{name}", marks=mark)
    for name, mark in BROKER_MARKS.items() for direction in DIRECTIONS])
def setup(request):
    direction, name = request.param
    item = Setup(direction, _broker(request, name))
    yield item
    item.close()


def test_call_with_context(setup):
    client = setup.client()
    assert client.call({"user": "u1", "request_id": "req-1"}, "echo",
                       value={"a": [1, 2.5, None, "x"]}) == {"a": [1, 2.5, None, "x"]}
    ctxt = client.call({"user": "u1", "request_id": "req-1"}, "context")
    assert ctxt["user"] == "u1" and ctxt["request_id"] == "req-1"
    assert "client_timeout" in ctxt and ctxt["client_timeout"] is None


def test_cast(setup):
    token = uuid.uuid4().hex
    setup.client().cast({}, "record", token=token)
    assert [item[1] for item in drain(setup.events, 1)] == [token]


def test_server_direct(setup):
    client = setup.client().prepare(server="s2")
    assert {client.call({}, "whoami") for _ in range(6)} == {"s2"}


def test_fanout_reaches_every_server(setup):
    token = uuid.uuid4().hex
    setup.client().prepare(fanout=True).cast({}, "record", token=token)
    got = drain(setup.events, len(SERVERS))
    assert sorted(got) == sorted((name, token) for name in SERVERS)


def test_round_robin(setup):
    client = setup.client()
    seen = [client.call({}, "whoami") for _ in range(12)]
    assert set(seen) == set(SERVERS)


def test_namespace_and_version(setup):
    client = setup.client()
    assert client.prepare(version="1.3").call({}, "echo", value=1) == 1
    assert client.prepare(namespace="ns", version="2.1").call({}, "which") == "ns-2.3"
    assert client.prepare(namespace="ns", version="1.0").call({}, "which") == "ns-1.1"
    with pytest.raises(setup.lib.RemoteError) as info:
        client.prepare(namespace="ns", version="2.4").call({}, "which")
    assert info.value.exc_type == "UnsupportedVersion"
    with pytest.raises(setup.lib.RemoteError) as info:
        client.prepare(namespace="other").call({}, "which")
    assert info.value.exc_type == "UnsupportedVersion"


def test_no_such_method_and_unsupported_version(setup):
    with pytest.raises(setup.lib.RemoteError) as info:
        setup.client().call({}, "missing")
    assert info.value.exc_type == "NoSuchMethod"
    assert "Endpoint does not support RPC method missing" in info.value.value
    allowed = setup.allowed_client()
    with pytest.raises(setup.lib.NoSuchMethod):
        allowed.call({}, "missing")
    with pytest.raises(setup.lib.UnsupportedVersion) as info:
        allowed.prepare(version="7.0").call({}, "echo", value=1)
    assert "Endpoint does not support RPC version 7.0" in str(info.value)


def test_builtin_exception_keeps_its_class(setup):
    with pytest.raises(ValueError) as info:
        setup.client().call({}, "fail")
    assert "bad value" in str(info.value)


def test_expected_exception(setup):
    with pytest.raises(KeyError) as info:
        setup.client().call({}, "expected")
    assert "missing" in str(info.value)


def test_call_monitor_keeps_a_long_call_alive(setup):
    client = setup.client(timeout=30, call_monitor_timeout=2)
    assert client.call({}, "sleep", seconds=3.2) == 3.2


def test_plain_timeout(setup):
    client = setup.client(timeout=1)
    with pytest.raises(setup.lib.MessagingTimeout):
        client.call({}, "sleep", seconds=2.5)


def test_shared_topic_between_oslo_and_bridge_servers(amqp_broker):
    """Item 5c: an oslo server and a bridge server share the topic queue, both serve."""
    exchange, topic = unique("bx"), unique("shared")
    events: queue.Queue = queue.Queue()
    oslo = Peer("oslo", broker_url(amqp_broker, peer_options(amqp_broker, "oslo")))
    ours = Peer("bridge", broker_url(amqp_broker, peer_options(amqp_broker, "bridge")))
    try:
        ours.server(exchange, topic, "bridge-1", events)
        oslo.server(exchange, topic, "oslo-1", events)
        ours.server(exchange, topic, "bridge-2", events)
        for client in (ours.client(exchange, topic, timeout=10),
                       oslo.client(exchange, topic, timeout=10)):
            seen = {client.call({}, "whoami") for _ in range(9)}
            assert seen == {"bridge-1", "oslo-1", "bridge-2"}
            # A fanout from either kind of client reaches every server exactly once (on 4.3
            # through the topic's stream).
            token = uuid.uuid4().hex
            client.prepare(fanout=True).cast({}, "record", token=token)
            got = drain(events, 3)
            assert sorted(got) == sorted((name, token) for name in ("bridge-1", "oslo-1",
                                                                    "bridge-2"))
            assert drain(events, 1, timeout=1) == []
        assert all(server.healthy for server in ours.servers)
    finally:
        ours.close()
        oslo.close()
        delete_queues([topic, f"{topic}.bridge-1", f"{topic}.bridge-2", f"{topic}.oslo-1",
                       f"{topic}_fanout"], [exchange, f"{topic}_fanout"], broker=amqp_broker)


@pytest.mark.broker
@pytest.mark.parametrize("options", ["amqp_durable_queues=true&rabbit_transient_queues_ttl=600",
                                     "rabbit_quorum_queue=true"])
def test_oslo_declares_first_with_other_flags(broker_available, options):
    """Non-default flags under oslo's option names match oslo's declarations exactly."""
    exchange, topic = unique("bx"), unique("flags")
    url = "rabbit://guest:guest@127.0.0.1:5672/?" + options
    events: queue.Queue = queue.Queue()
    oslo, ours = Peer("oslo", url), Peer("bridge", url)
    try:
        oslo.server(exchange, topic, "oslo-1", events)
        ours.server(exchange, topic, "bridge-1", events)
        client = ours.client(exchange, topic, timeout=10)
        assert {client.call({}, "whoami") for _ in range(6)} == {"oslo-1", "bridge-1"}
        client = oslo.client(exchange, topic, timeout=10)
        assert client.prepare(server="bridge-1").call({}, "whoami") == "bridge-1"
    finally:
        ours.close()
        oslo.close()
        delete_queues([topic, f"{topic}.oslo-1", f"{topic}.bridge-1"], [exchange])


@pytest.mark.broker
@pytest.mark.parametrize("direction", ["oslo->bridge", "bridge->oslo"])
def test_compressed_requests(broker_available, direction):
    """``kombu_compression=gzip`` on the client: the other library's server reads it."""
    client_kind, server_kind = direction.split("->")
    exchange, topic = unique("bx"), unique("gzip")
    events: queue.Queue = queue.Queue()
    servers = Peer(server_kind)
    clients = Peer(client_kind, "rabbit://guest:guest@127.0.0.1:5672/?kombu_compression=gzip")
    try:
        servers.server(exchange, topic, "s1", events)
        client = clients.client(exchange, topic, timeout=10)
        value = {"text": "x" * 2000, "n": [1, 2, 3]}
        assert client.call({"user": "u"}, "echo", value=value) == value
    finally:
        servers.close()
        clients.close()
        delete_queues([topic, f"{topic}.s1"], [exchange])
