"""At most once on the server side, against the real broker: a request is acknowledged
before it runs, and one the broker delivers again is never run twice.

A listener's connection goes through ``tcp_proxy.TcpProxy``: ``pause()`` holds back what
it sends (its acknowledgements), ``drop()``/``stop()`` then cut it, so the broker
delivers the request again, marked redelivered, as when a node stops or a connection
closes right after the acknowledgement left.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from types import SimpleNamespace

import pytest
from amqp_support import (
    BROKER_URL,
    FAST_RECONNECT,
    RawWire,
    call_in_thread,
    delete_queues,
    rabbitmqctl,
    unique,
    wait_for,
)
from tcp_proxy import TcpProxy

import bridge
from bridge.transport.amqp.incoming import parse_request

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker_available")]


class Work:
    """Counts each token's runs, by server."""

    def __init__(self, name: str, runs: Counter, ran: threading.Event) -> None:
        self.name, self.runs, self.ran = name, runs, ran

    def work(self, ctxt, token):
        self.runs[(self.name, token)] += 1
        self.ran.set()
        return token


class Setup:
    def __init__(self) -> None:
        self.exchange, self.topic = unique("bx"), unique("redeliver")
        self.runs: Counter = Counter()
        self.ran = threading.Event()
        self.proxy = TcpProxy(("127.0.0.1", 5672))
        self.proxy.start()
        self.transports: list = []
        self.servers: list = []

    def url(self, proxied: bool) -> str:
        port = self.proxy.port if proxied else 5672
        return f"rabbit://guest:guest@127.0.0.1:{port}/?{FAST_RECONNECT}"

    def server(self, name: str, proxied: bool, executor: str = "threading"):
        transport = bridge.get_transport(None, self.url(proxied))
        self.transports.append(transport)
        server = bridge.get_rpc_server(
            transport, bridge.Target(exchange=self.exchange, topic=self.topic, server=name),
            [Work(name, self.runs, self.ran)], executor=executor)
        server.start()
        self.servers.append(server)
        return server

    def client(self):
        transport = bridge.get_transport(None, BROKER_URL)
        self.transports.append(transport)
        return bridge.get_rpc_client(
            transport, bridge.Target(exchange=self.exchange, topic=self.topic), timeout=20)

    def ran_total(self, token: str) -> int:
        return sum(count for (_, item), count in self.runs.items() if item == token)

    def close(self) -> None:
        self.proxy.resume()
        if not self.proxy.listening:
            self.proxy.start()  # let a cut-off server send what it still owes, and stop
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.wait()
        for transport in self.transports:
            transport.cleanup()
        self.proxy.stop()
        delete_queues([self.topic] + [f"{self.topic}.{n}" for n in ("s1", "s2")],
                      [self.exchange])


@pytest.fixture
def setup():
    setup = Setup()
    yield setup
    setup.close()


def _queue_count(queue: str, column: str) -> int | None:
    for line in rabbitmqctl("list_queues", "-q", "--no-table-headers", "name",
                            column).splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return None


def _unacknowledged(queue: str) -> int | None:
    return _queue_count(queue, "messages_unacknowledged")


def pause_once_consuming(setup: Setup) -> None:
    """Pause s1's proxied connection once the broker has its consumer: ``start()`` sends
    ``basic.consume`` without waiting for the answer, and a pause that held it back would
    leave the request in the queue."""
    assert wait_for(lambda: (_queue_count(f"{setup.topic}.s1", "consumers") or 0) >= 1, 15)
    setup.proxy.pause()


def test_a_request_is_acknowledged_before_it_runs(setup):
    """With the blocking executor the method runs on the listener's own thread; the broker
    has the acknowledgement before it starts."""
    release, started = threading.Event(), threading.Event()

    class Hold:
        def hold(self, ctxt):
            started.set()
            release.wait(30)
            return "done"

    transport = bridge.get_transport(None, BROKER_URL)
    setup.transports.append(transport)
    server = bridge.get_rpc_server(
        transport, bridge.Target(exchange=setup.exchange, topic=setup.topic, server="s1"),
        [Hold()], executor="blocking")
    server.start()
    setup.servers.append(server)
    thread, outcome = call_in_thread(setup.client(), "hold")
    try:
        assert started.wait(10)
        assert wait_for(lambda: _unacknowledged(setup.topic) == 0, 15)
    finally:
        release.set()
        thread.join(20)
    assert outcome == {"result": "done"}


@pytest.mark.parametrize("kind", ["call", "cast"])
def test_a_request_whose_acknowledgement_was_lost_is_not_run_again(setup, kind, caplog):
    """s1 ran it, its acknowledgement never reached the broker: s2 gets it again and refuses
    it (a call gets RequestRedelivered, a cast is dropped with one log line)."""
    setup.server("s1", proxied=True)
    client = setup.client()
    pause_once_consuming(setup)
    caplog.set_level(logging.WARNING, logger="bridge.transport.amqp")
    if kind == "call":
        thread, outcome = call_in_thread(client, "work", token="t")
    else:
        client.cast({}, "work", token="t")
    assert setup.ran.wait(10)
    setup.server("s2", proxied=False)
    setup.proxy.stop()  # s1 is cut off: the broker delivers the request to s2
    refused = f"Refused a {kind} of 'work'"
    assert wait_for(lambda: any(refused in r.getMessage() for r in caplog.records), 20)
    if kind == "call":
        thread.join(20)
        assert outcome["error"].exc_type == "RequestRedelivered", outcome
    assert setup.runs == Counter({("s1", "t"): 1})
    assert sum(refused in r.getMessage() for r in caplog.records) == 1


def test_a_request_redelivered_to_the_server_that_ran_it_is_answered_once(setup):
    setup.server("s1", proxied=True)
    client = setup.client()
    pause_once_consuming(setup)
    thread, outcome = call_in_thread(client, "work", token="t")
    assert setup.ran.wait(10)
    setup.proxy.drop()  # s1 reconnects and gets it again: it knows it ran it
    thread.join(25)
    assert outcome == {"result": "t"}
    assert setup.runs == Counter({("s1", "t"): 1})


def test_requests_taken_by_a_stopping_server_run_on_another(setup, caplog):
    """Taken after stop(): published again as new messages, so s2 runs them (a requeued
    message would come back marked redelivered)."""
    first = setup.server("s1", proxied=True)
    setup.server("s2", proxied=False)
    client = setup.client()
    pause_once_consuming(setup)  # s1's cancel and what it does next wait here
    first.stop()
    tokens = [f"t{i}" for i in range(20)]
    for token in tokens:
        client.cast({}, "work", token=token)
    # Every cast is either run by s2 or taken by s1, which holds it unacknowledged.
    assert wait_for(lambda: len(setup.runs) + (_unacknowledged(setup.topic) or 0) == 20, 20)
    setup.proxy.resume()
    assert wait_for(lambda: all(setup.ran_total(t) == 1 for t in tokens), 20), setup.runs
    assert all(name == "s2" for name, _ in setup.runs)
    assert not any("Refused" in r.getMessage() for r in caplog.records)


def test_a_request_taken_as_its_server_stops_is_put_back(setup):
    """Stopped between the acknowledgement and the hand-over: the request goes back to its
    queue as a new message, and another server runs it."""
    first = setup.server("s1", proxied=False)
    listener = first.listeners[0]
    first.stop()
    setup.server("s2", proxied=False)
    wire = RawWire()
    try:
        body = wire.envelope({"method": "work", "args": {"token": "late"}, "_msg_id": "m1",
                              "_reply_q": wire.reply_q, "_timeout": None, "_unique_id": "u1"})
        msg = SimpleNamespace(body=body, properties={"content_type": "application/json"},
                              delivery_info={"consumer_tag": "1", "redelivered": False})
        incoming, unique_id = parse_request(msg, listener.replies, 1 << 20)
        listener._run(msg, incoming, unique_id)  # as the I/O thread would, after the ack
        assert wire.wait_replies(["m1"])
        assert wire.replies["m1"][0]["result"] == "late"
        assert setup.runs == Counter({("s2", "late"): 1})
    finally:
        wire.close()
