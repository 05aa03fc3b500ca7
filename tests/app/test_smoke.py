"""The public API imports, and a call crosses the memory transport."""

import bridge


def test_public_names_exist():
    for name in bridge.__all__:
        assert hasattr(bridge, name), name


def test_call_and_cast_round_trip(transport, serve):
    from endpoints import default_endpoints

    serve(default_endpoints())
    client = bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=5)
    assert client.call({}, "ping") == "pong"
    assert client.call({}, "echo", value={"a": [1, 2.0, None, "x"]}) == {"a": [1, 2.0, None, "x"]}
    assert client.prepare(namespace="counter").call({}, "increment", by=2) == 2
