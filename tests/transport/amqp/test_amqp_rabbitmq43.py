"""rpc-bridge on RabbitMQ 4.3 with upstream defaults.

RabbitMQ 4.3 refuses queues that are neither durable nor exclusive (541, deprecated
feature ``transient_nonexcl_queues``). With no options at all the bridge still works
bridge-to-bridge there: its own queues are durable and expire, its topic queues fall
back to durable; a cast never waits for a reply queue; a permanent refusal (a login, a
conflicting declaration) is reported at once, once, naming what to set. Quorum queue
options are declared as oslo.messaging declares them, and a poison message is dropped
(or dead-lettered) after the delivery limit instead of being redelivered for ever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import time
import uuid

import brokers
import kombu
import pytest
from amqp_support import (
    FAST_RECONNECT,
    Peer,
    broker_url,
    delete_queues,
    drain,
    list_queues,
    rabbitmqctl,
    unique,
    wait_for,
)
from tcp_proxy import TcpProxy

import bridge
from bridge.transport.amqp.refusals import BrokerRefused

pytestmark = [pytest.mark.broker43]
B43 = brokers.BROKER43
#: A refusal is reported long before any call's own timeout (30 s here) would end it.
REFUSAL_BOUND = 15.0


@pytest.fixture
def names(broker43_available):
    exchange, topic = unique("bx"), unique("r43")
    created: list[str] = []
    yield exchange, topic, created
    delete_queues([topic, f"{topic}.s1", f"{topic}.s2", f"{topic}_fanout", *created],
                  [exchange, f"{topic}_fanout"], broker=B43)


def _raw() -> kombu.Connection:
    conn = kombu.Connection(f"amqp://guest:guest@127.0.0.1:{B43.port}//", connect_timeout=5)
    conn.connect()
    return conn


def test_default_options_bridge_to_bridge(names, caplog):
    """No options: casts, calls, fanout and failures work bridge-to-bridge on 4.3."""
    exchange, topic, _ = names
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge", broker_url(B43))
    caplog.set_level(logging.WARNING, logger="bridge.transport.amqp")
    try:
        # A cast before any server exists: nothing to wait for, not even a reply queue.
        casting = peer.transport()
        peer.client(exchange, topic, transport=casting).cast({}, "record", token="nobody")
        assert casting.driver.client.replies._claim is None  # no reply queue declared

        server = peer.server(exchange, topic, "s1", events)
        client = peer.client(exchange, topic, transport=casting, timeout=10)
        assert client.call({}, "whoami") == "s1"
        client.cast({}, "record", token="cast")
        client.prepare(fanout=True).cast({}, "record", token="fanout")
        assert sorted(token for _, token in drain(events, 2)) == ["cast", "fanout"]
        with pytest.raises(ValueError, match="bad value"):
            client.call({}, "fail")

        queues = list_queues(broker=B43)
        # Topic queues: durable (as amqp_durable_queues=true declares them), since the broker
        # refused oslo's transient form; said once in the log, naming the option.
        for name in (topic, f"{topic}.s1"):
            assert queues[name]["durable"] == "true" and queues[name]["type"] == "classic"
        warned = [r for r in caplog.records if "declared durable" in r.getMessage()]
        assert len(warned) == 1 and "amqp_durable_queues=true" in warned[0].getMessage()
        # The bridge's own queues: durable classic queues that expire.
        fanout = queues[server.listeners[0].fanout_queue]
        reply = queues[casting.driver.reply_queue]
        assert fanout["exclusive"] == reply["exclusive"] == "false"
        assert fanout["durable"] == reply["durable"] == "true"
        assert fanout["type"] == reply["type"] == "classic"
        assert server.healthy
        # A second server of the topic finds the queues durable, and joins them.
        peer.server(exchange, topic, "s2", events)
        assert {client.call({}, "whoami") for _ in range(8)} == {"s1", "s2"}
    finally:
        peer.close()


def test_a_cast_goes_while_the_reply_queue_is_refused(names, caplog):
    """The reply queue refused (a stable queue-manager name that exists with other flags):
    calls fail at once naming what to set; casts are not held up by it."""
    exchange, topic, created = names
    processname = unique("refused")
    reply_q = f"reply_{socket.gethostname()}:{processname}:1"
    created.append(reply_q)
    with _raw() as conn:  # what another configuration of the service left: a classic queue
        conn.channel().queue_declare(reply_q, durable=True, auto_delete=False,
                                     arguments={"x-expires": 1800000})
    events: queue.Queue = queue.Queue()
    options = ("rabbit_transient_quorum_queue=true&use_queue_manager=true"
               f"&processname={processname}")
    servers, clients = Peer("bridge", broker_url(B43)), Peer("bridge", broker_url(B43, options))
    caplog.set_level(logging.ERROR, logger="bridge.transport.amqp")
    try:
        servers.server(exchange, topic, "s1", events)
        client = clients.client(exchange, topic, timeout=30)
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(BrokerRefused) as info:
                client.call({}, "whoami")
            assert time.monotonic() - started < REFUSAL_BOUND
            text = str(info.value)
            assert reply_q in text and "x-queue-type" in text
            assert "rabbit_transient_quorum_queue" in text
        client.cast({}, "record", token="cast")
        assert drain(events, 1) == [("s1", "cast")]
        refusals = [r for r in caplog.records if reply_q in r.getMessage()]
        assert len(refusals) == 1  # logged once, however many calls
    finally:
        clients.close()
        servers.close()


def test_a_wrong_password_is_reported_at_once_and_once(names, caplog):
    exchange, topic, _ = names
    url = f"rabbit://guest:wrong@127.0.0.1:{B43.port}/"
    caplog.set_level(logging.INFO, logger="bridge.transport.amqp")
    transport = bridge.get_transport(None, url)
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(exchange=exchange, topic=topic),
                                       timeout=30)
        for send in (lambda: client.call({}, "echo", value=1),
                     lambda: client.cast({}, "echo", value=1),
                     lambda: client.call({}, "echo", value=2)):
            started = time.monotonic()
            with pytest.raises(BrokerRefused, match="check the user name and password"):
                send()
            assert time.monotonic() - started < REFUSAL_BOUND
    finally:
        transport.cleanup()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "refused the login" in m]) == 1
    assert not [m for m in messages if "unreachable" in m]
    peer = Peer("bridge", url)
    try:
        with pytest.raises(bridge.ServerListenError, match="check the user name and password"):
            peer.server(exchange, topic, "s1", queue.Queue())
    finally:
        peer.close()


def test_a_conflicting_declaration_names_the_options_to_set(names):
    """oslo.messaging services with quorum queues declared the topic first; a bridge with
    default options is refused at once (start and first call), told what to set."""
    exchange, topic, _ = names
    with _raw() as conn:
        channel = conn.channel()
        channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        channel.queue_declare(topic, durable=True, auto_delete=False,
                              arguments={"x-queue-type": "quorum"})
    peer = Peer("bridge", broker_url(B43))
    try:
        with pytest.raises(bridge.ServerListenError) as info:
            peer.server(exchange, topic, "s1", queue.Queue())
        assert "rabbit_quorum_queue" in str(info.value) or "amqp_durable_queues" in str(
            info.value)
        client = peer.client(exchange, topic, timeout=30)
        started = time.monotonic()
        with pytest.raises(BrokerRefused, match="amqp_durable_queues"):
            client.call({}, "echo", value=1)
        assert time.monotonic() - started < REFUSAL_BOUND
    finally:
        peer.close()
    # With the options the services use, it joins them.
    quorum = Peer("bridge", broker_url(B43, "rabbit_quorum_queue=true"))
    try:
        quorum.server(exchange, topic, "s1", queue.Queue())
        assert quorum.client(exchange, topic, timeout=10).call({}, "whoami") == "s1"
    finally:
        quorum.close()


def test_quorum_options_are_declared_as_oslo_declares_them(names):
    """Delivery limit and the (4.x: stored, not applied) memory limits, oslo first."""
    exchange, topic, _ = names
    options = ("rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true"
               "&rabbit_quorum_delivery_limit=3&rabbit_quorum_max_memory_length=100"
               "&rabbit_quorum_max_memory_bytes=100000")
    events: queue.Queue = queue.Queue()
    oslo = Peer("oslo", broker_url(B43, options))
    ours = Peer("bridge", broker_url(B43, options))
    try:
        oslo.server(exchange, topic, "s1", events)
        ours.server(exchange, topic, "s2", events)  # no 406: the same arguments
        for client in (ours.client(exchange, topic, timeout=10),
                       oslo.client(exchange, topic, timeout=10)):
            assert {client.call({}, "whoami") for _ in range(6)} == {"s1", "s2"}
        queues = list_queues(broker=B43)
        for name in (topic, f"{topic}.s2"):
            assert queues[name]["type"] == "quorum"
            for argument in ('"x-delivery-limit",3', '"x-max-in-memory-length",100',
                             '"x-max-in-memory-bytes",100000'):
                assert argument in queues[name]["arguments"], (name, queues[name])
    finally:
        ours.close()
        oslo.close()


class PoisonProxy(TcpProxy):
    """Cuts the connection whenever the broker delivers a body containing ``marker``: the
    consumer's connection dies while handling that message, every time, before any ack."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        super().__init__(upstream)
        self.marker = marker
        self.cuts = 0

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool = False) -> None:
        from_broker = not up
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_broker and self.marker in data:
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(names):
    exchange, topic, created = names
    limit = 2
    dlx, dead = unique("dlx"), unique("dead")
    created.append(dead)
    policy = unique("poison")
    with _raw() as conn:
        channel = conn.channel()
        channel.exchange_declare(dlx, "fanout", durable=True, auto_delete=False)
        channel.queue_declare(dead, durable=True, auto_delete=False)
        channel.queue_bind(dead, dlx, "")
    rabbitmqctl("set_policy", policy, f"^{topic}$", json.dumps({"dead-letter-exchange": dlx}),
                "--apply-to", "quorum_queues", broker=B43)
    marker = f"POISON-{uuid.uuid4().hex}".encode()
    proxy = PoisonProxy(("127.0.0.1", B43.port), marker)
    proxy.start()
    options = ("rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true"
               f"&rabbit_quorum_delivery_limit={limit}&rabbit_qos_prefetch_count=1&"
               + FAST_RECONNECT)
    events: queue.Queue = queue.Queue()
    servers = Peer("bridge", f"rabbit://guest:guest@127.0.0.1:{proxy.port}/?{options}")
    clients = Peer("bridge", broker_url(B43, options))
    try:
        server = servers.server(exchange, topic, "s1", events)
        client = clients.client(exchange, topic, timeout=10)
        client.cast({}, "record", token=marker.decode())
        # Delivered, the connection cut, redelivered ``limit`` times; then RabbitMQ gives up.
        assert wait_for(lambda: proxy.cuts == limit + 1, 60)
        with _raw() as conn:
            channel = conn.channel()
            assert wait_for(lambda: channel.queue_declare(dead, passive=True).message_count
                            == 1, 20)
            message = channel.basic_get(dead, no_ack=True)
        assert marker in (message.body if isinstance(message.body, bytes)
                          else message.body.encode())
        # The server goes on with the next message; the poison never reached the endpoint.
        assert wait_for(lambda: server.healthy, 30)
        client.cast({}, "record", token="after")
        assert drain(events, 2, timeout=10) == [("s1", "after")]
        assert proxy.cuts == limit + 1
    finally:
        servers.close()
        clients.close()
        proxy.stop()
        rabbitmqctl("clear_policy", policy, broker=B43)
        delete_queues([], [dlx], broker=B43)
