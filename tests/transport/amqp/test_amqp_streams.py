"""``rabbit_stream_fanout``: fanout through one stream per topic.

Interop with oslo.messaging servers and clients on the same stream is in
test_amqp_interop.py (the 4.3 variants run with stream fanout); here: the declarations on
the broker, the prefetch a stream needs, a server's place in the stream across a lost
connection, and a server started late reading only what comes after it.
"""

from __future__ import annotations

import queue

import brokers
import pytest
from amqp_support import (
    FAST_RECONNECT,
    KOLLA_OPTIONS,
    Peer,
    broker_url,
    delete_queues,
    drain,
    list_queues,
    unique,
    wait_for,
)
from tcp_proxy import TcpProxy

import bridge

B43 = brokers.BROKER43
pytestmark = [pytest.mark.broker43, pytest.mark.usefixtures("broker43_available")]
OPTIONS = KOLLA_OPTIONS.replace("rabbit_qos_prefetch_count=10", "rabbit_qos_prefetch_count=1")


@pytest.fixture
def names():
    exchange, topic = unique("bx"), unique("streamed")
    yield exchange, topic
    delete_queues([topic, f"{topic}_fanout", *(f"{topic}.s{n}" for n in range(1, 4)),
                   *(name for name in list_queues(broker=B43) if name.startswith(topic))],
                  [exchange, f"{topic}_fanout"], broker=B43)


def test_stream_fanout_needs_transient_quorum_queues_and_a_prefetch():
    for query in ("rabbit_stream_fanout=true&rabbit_qos_prefetch_count=5",
                  "rabbit_stream_fanout=true&rabbit_transient_quorum_queue=true"):
        with pytest.raises(bridge.InvalidTransportURL, match="rabbit_stream_fanout needs"):
            bridge.get_transport(None, f"rabbit://h/?{query}")


def test_one_stream_per_topic_read_in_order_with_a_prefetch_of_one(names):
    """Every server reads the one stream; with a prefetch of 1 each gets all 30 casts, in
    order and once (its acks give the broker the credit to deliver the next)."""
    exchange, topic = names
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge", broker_url(B43, OPTIONS + "&processname=tests-streams"))
    try:
        peer.server(exchange, topic, "s1", events)
        peer.server(exchange, topic, "s2", events)
        fanout = peer.client(exchange, topic).prepare(fanout=True)
        for n in range(30):
            fanout.cast({}, "record", token=n)
        got = drain(events, 60)
        for server in ("s1", "s2"):
            assert [token for name, token in got if name == server] == list(range(30))
        queues = list_queues(broker=B43)
        stream = queues[f"{topic}_fanout"]
        assert stream["type"] == "stream" and stream["durable"] == "true"
        assert '"x-max-age","1800s"' in stream["arguments"]
        assert not [name for name in queues if name.startswith(f"{topic}_fanout_")]
    finally:
        peer.close()
    assert f"{topic}_fanout" in list_queues(broker=B43)  # shared: left for the others


def test_a_server_resumes_its_place_after_a_lost_connection(names):
    exchange, topic = names
    proxy = TcpProxy(("127.0.0.1", B43.port))
    proxy.start()
    events: queue.Queue = queue.Queue()
    options = OPTIONS + "&processname=tests-streams&" + FAST_RECONNECT
    behind = Peer("bridge", f"rabbit://guest:guest@127.0.0.1:{proxy.port}/?{options}")
    direct = Peer("bridge", broker_url(B43, options))
    try:
        server = behind.server(exchange, topic, "s1", events)
        fanout = direct.client(exchange, topic).prepare(fanout=True)
        for n in range(3):
            fanout.cast({}, "record", token=f"before-{n}")
        assert [token for _, token in drain(events, 3)] == [f"before-{n}" for n in range(3)]
        proxy.stop()  # the server's connection is gone, and stays gone for a while
        assert wait_for(lambda: not server.healthy, 20)
        for n in range(4):
            fanout.cast({}, "record", token=f"during-{n}")
        proxy.start()
        # Back: exactly the casts written meanwhile, none of the earlier ones again.
        got = [token for _, token in drain(events, 4, timeout=30)]
        assert got == [f"during-{n}" for n in range(4)]
        assert wait_for(lambda: server.healthy, 20)
        fanout.cast({}, "record", token="after")
        assert drain(events, 2, timeout=10) == [("s1", "after")]
    finally:
        behind.close()
        direct.close()
        proxy.stop()


def test_a_server_started_later_reads_only_what_follows(names):
    exchange, topic = names
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge", broker_url(B43, OPTIONS + "&processname=tests-streams"))
    try:
        peer.server(exchange, topic, "s1", events)
        fanout = peer.client(exchange, topic).prepare(fanout=True)
        fanout.cast({}, "record", token="early")
        assert drain(events, 1) == [("s1", "early")]
        peer.server(exchange, topic, "s2", events)
        fanout.cast({}, "record", token="late")
        assert sorted(drain(events, 3, timeout=5)) == [("s1", "late"), ("s2", "late")]
    finally:
        peer.close()
