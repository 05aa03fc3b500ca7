"""Server lifecycle on the AMQP wire, against the real brokers (3.10, and 4.3 with its
defaults)."""

from __future__ import annotations

import threading

from amqp_support import delete_queues, unique

import bridge


class ServerControlEndpoint:
    """oslo.messaging's server example: a ``control`` endpoint that stops its own server."""

    target = bridge.Target(namespace="control", version="2.0")

    def __init__(self) -> None:
        self.server = None

    def stop(self, ctx):
        if self.server:
            self.server.stop()


class TestEndpoint:
    __test__ = False  # oslo's example's name, not a pytest class

    def test(self, ctx, arg):
        return arg


def test_a_blocking_server_stopped_by_its_own_endpoint(amqp_broker):
    """executor='blocking': the method runs on the listener's I/O thread and stops the
    server from there; the call returns and wait() returns."""
    exchange, topic = unique("bx"), unique("selfstop")
    transport = bridge.get_transport(None, amqp_broker.url)
    control = ServerControlEndpoint()
    server = bridge.get_rpc_server(transport,
                                   bridge.Target(exchange=exchange, topic=topic, server="s1"),
                                   [control, TestEndpoint()], executor="blocking")
    control.server = server
    waited = threading.Event()
    try:
        server.start()
        client = bridge.get_rpc_client(transport, bridge.Target(exchange=exchange, topic=topic),
                                       timeout=15)
        assert client.call({}, "test", arg="before") == "before"
        assert client.prepare(namespace="control", version="2.0").call({}, "stop") is None
        waiter = threading.Thread(target=lambda: (server.wait(), waited.set()), daemon=True)
        waiter.start()
        waiter.join(30)
        assert waited.is_set(), "wait() did not return after the endpoint stopped its server"
        assert not server.running and server.in_flight == 0
    finally:
        if not waited.is_set():
            server.stop()
        transport.cleanup()
        delete_queues([topic, f"{topic}.s1"], [exchange], broker=amqp_broker)
