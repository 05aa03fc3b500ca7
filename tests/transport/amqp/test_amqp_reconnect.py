"""Reconnection against the real broker.

Each test runs in a vhost of its own, so closing its connections never touches
anyone else's. The connection-close test runs on both brokers (on RabbitMQ 4.3 with
kolla-style options, which the oslo.messaging client there needs); the single
stop_app/start_app test, short and bounded, on the 3.10 broker only.
"""

from __future__ import annotations

import queue

import pytest
from amqp_support import (
    FAST_RECONNECT,
    Peer,
    broker_url,
    call_in_thread,
    drain,
    peer_options,
    rabbitmqctl,
    unique,
    wait_for,
)


def _vhost(broker):
    vhost = unique("bridge-reconnect")
    rabbitmqctl("add_vhost", vhost, broker=broker)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*", broker=broker)
    return vhost


@pytest.fixture
def vhost_url(broker_available):
    vhost = _vhost(None)
    yield f"rabbit://guest:guest@127.0.0.1:5672/{vhost}?{FAST_RECONNECT}", vhost
    rabbitmqctl("delete_vhost", vhost)


def test_close_all_connections(amqp_broker):
    vhost = _vhost(amqp_broker)
    events: queue.Queue = queue.Queue()

    def url(kind):
        options = "&".join(filter(None, [peer_options(amqp_broker, kind), FAST_RECONNECT]))
        return broker_url(amqp_broker, options, vhost)

    ours, oslo = Peer("bridge", url("bridge")), Peer("oslo", url("oslo"))
    exchange, topic = "openstack", unique("reconnect")
    try:
        server = ours.server(exchange, topic, "s1", events)
        client = ours.client(exchange, topic, timeout=20)
        oslo_client = oslo.client(exchange, topic, timeout=20)
        assert client.call({}, "echo", value=1) == 1
        assert oslo_client.call({}, "echo", value=2) == 2

        thread, outcome = call_in_thread(client, "slow", seconds=2)
        assert drain(events, 1) == [("s1", "started")]
        rabbitmqctl("close_all_connections", "-p", vhost, "bridge reconnect test",
                    broker=amqp_broker)
        thread.join(30)
        # The server had taken the call: its reply goes out once it is back.
        assert outcome == {"result": 2}
        for _ in range(3):
            assert client.call({}, "echo", value="again") == "again"
            assert oslo_client.call({}, "echo", value="oslo again") == "oslo again"
        client.prepare(fanout=True).cast({}, "record", token="fanout-after")
        assert drain(events, 1) == [("s1", "fanout-after")]
        assert server.healthy
        listener = server.listeners[0]
        assert listener._conn.generation >= 2  # it did reconnect, in the same process
    finally:
        ours.close()
        oslo.close()
        rabbitmqctl("delete_vhost", vhost, broker=amqp_broker)


@pytest.mark.broker
def test_broker_app_restart(vhost_url):
    url, _ = vhost_url
    events: queue.Queue = queue.Queue()
    ours = Peer("bridge", url)
    exchange, topic = "openstack", unique("restart")
    try:
        server = ours.server(exchange, topic, "s1", events)
        client = ours.client(exchange, topic, timeout=30)
        assert client.call({}, "echo", value=1) == 1
        rabbitmqctl("stop_app")
        try:
            assert wait_for(lambda: not server.healthy, 20)
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup", timeout=120)
        # Queues were not durable: the listener re-declares them when it is back.
        assert wait_for(lambda: server.healthy, 30)
        assert client.call({}, "echo", value="after restart") == "after restart"
        client.cast({}, "record", token="cast-after")
        assert drain(events, 1) == [("s1", "cast-after")]
    finally:
        ours.close()


@pytest.mark.broker
def test_call_fails_clearly_when_the_broker_stays_away(broker_available):
    """retry=0 towards a port nobody listens on: MessageDeliveryFailure, not a hang."""
    import bridge

    transport = bridge.get_transport(
        None, "rabbit://guest:guest@127.0.0.1:1/?rabbit_retry_interval=0.2&kombu_reconnect_delay=0")
    try:
        client = bridge.get_rpc_client(transport, bridge.Target(topic="nowhere"), timeout=5,
                                       retry=0)
        with pytest.raises(bridge.MessageDeliveryFailure):
            client.call({}, "echo", value=1)
        with pytest.raises(bridge.MessagingTimeout):
            bridge.get_rpc_client(transport, bridge.Target(topic="nowhere"),
                                  timeout=1).call({}, "echo", value=1)
    finally:
        transport.cleanup()
