"""max_connection_age: the gRPC server sends long-lived connections away, so clients
reconnect (and, behind a balancer, spread over new replicas)."""

from __future__ import annotations

import grpc
from waiting import wait_for

import bridge
from bridge.app.serve import driver_conf
from bridge.app.settings import resolve
from endpoints import default_endpoints


def test_the_settings_reach_the_grpc_driver_in_ms():
    settings = resolve({"max_connection_age": "1.5", "max_connection_age_grace": "0.25"},
                       environ={})
    conf = driver_conf(settings)
    transport = bridge.get_transport(conf, "grpc://127.0.0.1:0")
    try:
        options = transport.driver.options
        assert (options.max_connection_age_ms, options.max_connection_age_grace_ms) == \
            (1500, 250)
    finally:
        transport.cleanup()
    unset = driver_conf(resolve({}, environ={}))
    assert "max_connection_age_ms" not in unset["grpc"]


def test_a_connection_is_sent_away_after_its_age():
    conf = {"grpc": {"max_connection_age_ms": 300, "max_connection_age_grace_ms": 300}}
    transport = bridge.get_transport(conf, "grpc://127.0.0.1:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="age", server="s"),
                                   default_endpoints())
    server.start()
    channel = grpc.insecure_channel(server.addresses[0].split("://", 1)[1])
    states: list[grpc.ChannelConnectivity] = []
    try:
        channel.subscribe(states.append, try_to_connect=True)
        assert wait_for(lambda: grpc.ChannelConnectivity.READY in states)
        ready_at = states.index(grpc.ChannelConnectivity.READY)
        # GOAWAY: the channel leaves READY by itself, with no call and no server restart.
        assert wait_for(lambda: any(state != grpc.ChannelConnectivity.READY
                                    for state in states[ready_at + 1:]), timeout=15)
    finally:
        channel.close()
        server.stop()
        server.wait()
        transport.cleanup()
