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
