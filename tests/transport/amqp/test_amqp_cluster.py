"""A real three-node RabbitMQ 4.3 cluster: node stops under calls.

The short version of ``bench/cluster_fault.py``: rpc-bridge, configured as kolla-ansible
configures oslo.messaging (quorum queues, stream fanout, the queue manager) with a
transport URL naming the three nodes, under a steady call load while the node its client
is connected to is stopped once. No call is lost, and calls are answered again through
the other nodes. (A call whose publish was not confirmed when its node stopped is sent
again; if the first copy had reached the queue it runs twice: the bench counts those.)
"""

from __future__ import annotations

import sys

import pytest
from serving import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import cluster_fault  # noqa: E402 - bench/ is on the path from here on

pytestmark = [pytest.mark.broker43, pytest.mark.broker43_cluster]


@pytest.mark.timeout(300)
def test_node_stops_lose_no_call(rabbitmq43_cluster):
    figures = cluster_fault.run("bridge", stops=1, threads=2, timeout=20, between=1,
                                log=lambda text: None)
    try:
        # A call whose delivery the stopping node may have handed out already is refused
        # with RequestRedelivered rather than run twice (docs/amqp.md): a clear failure.
        assert figures["sent"] > 0, figures
        assert figures["answered"] + figures["failed_clearly"] == figures["sent"], figures
        assert all("RequestRedelivered" in error for error in figures["errors"]), figures
        assert figures["lost"] == figures["wrong"] == 0, figures
        assert figures["ran_unsent"] == 0, figures
        assert figures["recovery_max"] < 20, figures  # answered again, well within a timeout
    finally:
        cluster_fault.cleanup(figures)
