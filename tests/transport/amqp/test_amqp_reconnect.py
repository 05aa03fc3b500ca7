"""Reconnection against the real broker (issue 4, item 4).

Each test runs in a vhost of its own, so closing its connections never touches
anyone else's. The single stop_app/start_app test is short and bounded.
"""

from __future__ import annotations

import queue

import pytest
from amqp_support import FAST_RECONNECT, Peer, call_in_thread, drain, rabbitmqctl, unique, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker_available")]


@pytest.fixture
def vhost_url(broker_available):
    vhost = unique("bridge-reconnect")
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"rabbit://guest:guest@127.0.0.1:5672/{vhost}?{FAST_RECONNECT}", vhost
    rabbitmqctl("delete_vhost", vhost)


def test_close_all_connections(vhost_url):
    url, vhost = vhost_url
    events: queue.Queue = queue.Queue()
    ours, oslo = Peer("bridge", url), Peer("oslo", url)
    exchange, topic = "openstack", unique("reconnect")
    try:
        server = ours.server(exchange, topic, "s1", events)
        client = ours.client(exchange, topic, timeout=20)
        oslo_client = oslo.client(exchange, topic, timeout=20)
        assert client.call({}, "echo", value=1) == 1
        assert oslo_client.call({}, "echo", value=2) == 2

        thread, outcome = call_in_thread(client, "slow", seconds=2)
        assert drain(events, 1) == [("s1", "started")]
        rabbitmqctl("close_all_connections", "-p", vhost, "bridge reconnect test")
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
