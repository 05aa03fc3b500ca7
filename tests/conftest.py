"""Shared fixtures: isolated memory brokers, and the real RabbitMQ broker when present.

Tests that need the broker skip with a reason when it is absent, except under
CI=true, where a missing broker fails them.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

import bridge

BROKER_HOST = os.environ.get("BRIDGE_TEST_BROKER_HOST", "127.0.0.1")
BROKER_PORT = int(os.environ.get("BRIDGE_TEST_BROKER_PORT", "5672"))


def _broker_reachable() -> bool:
    try:
        socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_available() -> None:
    """Skip (or, under CI=true, fail) when RabbitMQ is not reachable."""
    if _broker_reachable():
        return
    reason = (f"RabbitMQ is not reachable on {BROKER_HOST}:{BROKER_PORT} "
              "(start it with 'rabbitmq-server -detached')")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the broker")
    pytest.skip(reason)


@pytest.fixture
def memory_url() -> str:
    """A memory:// URL with a broker of its own, so tests never see each other's queues."""
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def transport(memory_url: str):
    """A memory transport, cleaned up after the test."""
    transport = bridge.get_transport(None, memory_url)
    yield transport
    transport.cleanup()


@pytest.fixture
def serve(transport):
    """Start servers for a test: ``serve(endpoints, topic=..., server=..., **kw)``."""
    servers = []

    def start(endpoints, topic="topic", server="server1", transports=None, **kwargs):
        srv = bridge.get_rpc_server(transports or transport,
                                    bridge.Target(topic=topic, server=server), endpoints,
                                    **kwargs)
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        srv.wait()


# --- RabbitMQ 4.3 next to the machine's 3.10 (scripts/rabbitmq, tests/brokers.py) -----------
# Markers: -m broker43 selects the tests that need the 4.3 broker; -m "not broker43_cluster"
# leaves out the ones that start the 3-node 4.3 cluster.
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker43: needs RabbitMQ 4.3 on 127.0.0.1:5673 (scripts/rabbitmq ensure)")
    config.addinivalue_line(
        "markers", "broker43_cluster: needs the 3-node RabbitMQ 4.3 cluster on 127.0.0.1:5674-5676"
        " (scripts/rabbitmq cluster-ensure; about 15 s to start)")


def _unavailable(reason: str) -> None:
    """Skip, or under CI=true fail, as ``broker_available`` does."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker43_available():
    """Start RabbitMQ 4.3 on 127.0.0.1:5673 (scripts/rabbitmq ensure) once per session;
    skip (under CI=true: fail) when it cannot be made or started. Yields the Broker."""
    import brokers

    try:
        return brokers.ensure_broker43()
    except brokers.BrokerUnavailable as exc:
        _unavailable(f"RabbitMQ 4.3 could not be started ({exc})")


@pytest.fixture(params=[
    pytest.param("rabbitmq-3.10", id="rabbitmq-3.10", marks=pytest.mark.broker),
    pytest.param("rabbitmq-4.3", id="rabbitmq-4.3", marks=pytest.mark.broker43),
])
def amqp_broker(request):
    """Each single broker in turn: an object with .name, .url, .port and .version."""
    import brokers

    if request.param == "rabbitmq-4.3":
        request.getfixturevalue("broker43_available")
    else:
        request.getfixturevalue("broker_available")
    return brokers.BROKERS[request.param].with_version()


@pytest.fixture(scope="session")
def rabbitmq43_cluster():
    """The 3-node 4.3 cluster, started once per session if it is not running (and then
    stopped at the session's end); yields its three-host transport URL."""
    import brokers

    try:
        started = brokers.cluster_ensure()
    except brokers.BrokerUnavailable as exc:
        _unavailable(f"the RabbitMQ 4.3 cluster could not be started ({exc})")
    yield brokers.cluster_urls()
    if started:
        brokers.cluster_stop()
# --- end of the RabbitMQ 4.3 block -----------------------------------------------------------
