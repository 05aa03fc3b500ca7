"""The RabbitMQ 4.3 infrastructure (scripts/rabbitmq, tests/brokers.py) is what it claims.

RabbitMQ 4.3 with upstream defaults refuses a queue that is neither durable nor exclusive
(the deprecated feature ``transient_nonexcl_queues`` is denied: 541 INTERNAL_ERROR); the
machine's 3.10 accepts it. The 3-node cluster forms, and a quorum queue declared through
one node is seen through the others.
"""

from __future__ import annotations

import uuid

import amqp.exceptions
import brokers
import kombu
import pytest


def _name(prefix: str) -> str:
    return f"rpc-bridge-test-{prefix}-{uuid.uuid4().hex[:12]}"


def _connect(port: int) -> kombu.Connection:
    conn = kombu.Connection(f"amqp://guest:guest@127.0.0.1:{port}//", connect_timeout=5)
    conn.connect()
    return conn


def _declare(port: int, **kwargs) -> None:
    """Declare a fresh queue with ``kwargs`` on the broker at ``port``, then delete it."""
    name = _name("q")
    with _connect(port) as conn:
        channel = conn.channel()
        channel.queue_declare(name, **kwargs)
        channel.queue_delete(name)


@pytest.mark.broker43
def test_broker43_reports_version_4_3(broker43_available):
    assert broker43_available.name == "rabbitmq-4.3"
    assert broker43_available.port == 5673
    assert broker43_available.url == "rabbit://guest:guest@127.0.0.1:5673/"
    assert broker43_available.version.startswith("4.3."), broker43_available.version


def test_amqp_broker_is_the_named_broker(amqp_broker):
    series = amqp_broker.name.removeprefix("rabbitmq-")
    assert amqp_broker.version.startswith(series + "."), (amqp_broker.name, amqp_broker.version)
    assert amqp_broker.url == f"rabbit://guest:guest@127.0.0.1:{amqp_broker.port}/"


@pytest.mark.broker43
@pytest.mark.parametrize("auto_delete", [False, True], ids=["plain", "auto_delete"])
def test_broker43_refuses_transient_nonexclusive_queue(broker43_available, auto_delete):
    with pytest.raises(amqp.exceptions.InternalError) as info:
        _declare(5673, durable=False, exclusive=False, auto_delete=auto_delete)
    assert info.value.code == 541
    assert "transient_nonexcl_queues" in str(info.value)


@pytest.mark.broker43
@pytest.mark.parametrize("kwargs", [
    {"durable": True, "exclusive": False, "auto_delete": False},
    {"durable": False, "exclusive": True, "auto_delete": False},
    {"durable": False, "exclusive": True, "auto_delete": True},
], ids=["durable", "exclusive", "exclusive-auto_delete"])
def test_broker43_accepts_durable_or_exclusive_queue(broker43_available, kwargs):
    _declare(5673, **kwargs)


@pytest.mark.broker
def test_broker310_accepts_transient_nonexclusive_queue(broker_available):
    port = brokers.BROKERS["rabbitmq-3.10"].port
    assert brokers.server_version(brokers.BROKERS["rabbitmq-3.10"]).startswith("3.10.")
    _declare(port, durable=False, exclusive=False, auto_delete=False)


@pytest.mark.broker43
@pytest.mark.broker43_cluster
@pytest.mark.timeout(300)
def test_cluster_forms_and_shares_a_quorum_queue(rabbitmq43_cluster):
    assert rabbitmq43_cluster == ("rabbit://guest:guest@127.0.0.1:5674,guest:guest@127.0.0.1:5675,"
                                  "guest:guest@127.0.0.1:5676/")
    assert brokers.cluster_running_nodes(via=1) == list(brokers.CLUSTER_NODES)
    assert brokers.cluster_running_nodes(via=3) == list(brokers.CLUSTER_NODES)
    for port in brokers.CLUSTER_PORTS:
        version = brokers.server_version(brokers.Broker("cluster", "", port))
        assert version.startswith("4.3."), (port, version)

    name = _name("quorum")
    first, second, third = brokers.CLUSTER_PORTS
    with _connect(first) as conn:
        channel = conn.channel()
        channel.queue_declare(name, durable=True, auto_delete=False,
                              arguments={"x-queue-type": "quorum"})
        channel.confirm_select()  # basic_publish returns once the queue has the message
        channel.basic_publish(amqp.Message("through node 1"), exchange="", routing_key=name)
    try:
        with _connect(second) as conn:
            _, count, _ = conn.channel().queue_declare(name, passive=True)
            assert count == 1
        with _connect(third) as conn:
            message = conn.channel().basic_get(name, no_ack=True)
            assert message is not None
            assert message.body in ("through node 1", b"through node 1")
    finally:
        with _connect(second) as conn:
            conn.channel().queue_delete(name)
