"""RPCClient options, configuration sources and transport URLs."""

from __future__ import annotations

import pytest

import bridge
from bridge.transport.url import TransportHost, TransportURL


class Versions:
    target = bridge.Target(version="1.3")

    def version(self, ctxt):
        return ctxt.get("client_timeout")


@pytest.fixture
def rpc(transport, serve):
    serve([Versions()])
    return bridge.get_rpc_client(transport, bridge.Target(topic="topic"), timeout=5)


def test_prepare_overrides_target_and_options(rpc):
    prepared = rpc.prepare(version="1.2", timeout=3, server="server1", call_monitor_timeout=4)
    assert prepared.target.version == "1.2" and prepared.target.server == "server1"
    assert prepared.timeout == 3 and prepared.call_monitor_timeout == 4
    assert rpc.target.version is None and rpc.timeout == 5
    assert prepared.call({}, "version") == 4  # the context carries client_timeout
    again = prepared.prepare(version="1.3")
    assert again.timeout == 3 and again.target.server == "server1"
    assert again.prepare(transport_options=bridge.TransportOptions(True)).transport_options


def test_version_cap(rpc):
    capped = rpc.prepare(version_cap="1.2")
    assert capped.prepare(version="1.2").call({}, "version") is None
    with pytest.raises(bridge.RPCVersionCapError):
        capped.prepare(version="1.3").call({}, "version")
    with pytest.raises(bridge.RPCVersionCapError):
        capped.call({}, "version")  # a set cap with no target version fails
    assert capped.can_send_version("1.1") and not capped.can_send_version("2.0")
    assert not capped.can_send_version()
    assert rpc.can_send_version("9.9")


def test_bad_versions_are_refused(rpc):
    with pytest.raises(bridge.MessagingException, match="major and minor"):
        rpc.prepare(version="1")
    with pytest.raises(bridge.MessagingException, match="major and minor"):
        rpc.prepare(version="1.x")


def test_call_with_fanout_is_refused(rpc):
    with pytest.raises(bridge.InvalidTarget, match="fanout"):
        rpc.prepare(fanout=True).call({}, "version")


def test_topic_is_required_to_send(transport):
    client = bridge.get_rpc_client(transport, bridge.Target())
    with pytest.raises(bridge.InvalidTarget):
        client.cast({}, "anything")


def test_timeout_defaults_to_rpc_response_timeout(memory_url):
    transport = bridge.get_transport({"rpc_response_timeout": 0.2}, memory_url)
    client = bridge.get_rpc_client(transport, bridge.Target(topic="nobody"))
    with pytest.raises(bridge.MessagingTimeout):
        client.call({}, "anything")
    transport.cleanup()


def test_context_object_with_to_dict(rpc):
    class Ctx:
        def to_dict(self):
            return {"user": "u"}

    assert rpc.call(Ctx(), "version") is None


# -- configuration -----------------------------------------------------------------------------

def test_conf_none_uses_environment_then_memory(monkeypatch):
    monkeypatch.delenv("BRIDGE_TRANSPORT_URL", raising=False)
    assert bridge.get_transport(None).url.transport == "memory"
    monkeypatch.setenv("BRIDGE_TRANSPORT_URL", "memory://from-env")
    transport = bridge.get_transport(None)
    assert transport.url.hosts[0].hostname == "from-env"


def test_conf_mapping_and_url_precedence(monkeypatch):
    monkeypatch.setenv("BRIDGE_TRANSPORT_URL", "memory://from-env")
    conf = {"transport_url": "memory://from-conf", "control_exchange": "nova",
            "rpc_response_timeout": 7, "executor_thread_pool_size": 8}
    transport = bridge.get_transport(conf)
    assert transport.url.hosts[0].hostname == "from-conf"
    assert transport.settings.control_exchange == "nova"
    assert transport.settings.rpc_response_timeout == 7.0
    assert transport.settings.executor_thread_pool_size == 8
    assert bridge.get_transport(conf, url="memory://from-url").url.hosts[0].hostname == "from-url"


def test_conf_oslo_config_options():
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("transport_url"), cfg.StrOpt("control_exchange",
                                                                  default="openstack"),
                        cfg.IntOpt("rpc_response_timeout", default=60)])
    conf([], project="test")
    conf.set_override("transport_url", "memory://oslo-conf")
    conf.set_override("control_exchange", "cinder")
    transport = bridge.get_rpc_transport(conf)
    assert transport.url.hosts[0].hostname == "oslo-conf"
    assert transport.settings.control_exchange == "cinder"
    assert transport.settings.executor_thread_pool_size == 64  # not registered: the default


def test_unknown_scheme_is_a_driver_load_failure():
    with pytest.raises(bridge.DriverLoadFailure, match="nosuch"):
        bridge.get_transport(None, "nosuch://host")


@pytest.mark.parametrize("url", ["not a url", "", "memory:/", 5])
def test_invalid_urls(url):
    with pytest.raises(bridge.InvalidTransportURL):
        bridge.get_transport(None, url)


# -- URL parsing (docs/wire.md 1.2) ---------------------------------------------------------

def test_url_with_several_hosts_and_escaped_credentials():
    url = TransportURL.parse("rabbit://u1:p%40ss@h1:5672,u2:p2@h2:5673/my_vhost?ssl=true")
    assert url.transport == "rabbit"
    assert url.hosts == (TransportHost("h1", 5672, "u1", "p@ss"),
                         TransportHost("h2", 5673, "u2", "p2"))
    assert url.virtual_host == "my_vhost" and url.query == {"ssl": "true"}
    assert "p@ss" not in str(url) and "p%40ss" not in str(url)


@pytest.mark.parametrize("text,vhost", [
    ("rabbit://h:5672", None), ("rabbit://h:5672/", ""), ("rabbit://h:5672//", "/"),
    ("rabbit://h/v%2Fx", "v/x"),
])
def test_url_virtual_host_rules(text, vhost):
    assert TransportURL.parse(text).virtual_host == vhost


def test_url_details():
    assert TransportURL.parse("rabbit://").hosts == ()
    assert TransportURL.parse("kombu+memory:///").driver_name == "kombu"
    url = TransportURL.parse("rabbit://[::1]:5672,user@[fe80::1]/?a=1&a=2")
    assert url.hosts == (TransportHost("::1", 5672), TransportHost("fe80::1", None, "user"))
    assert url.query == {"a": "1,2"}
    with pytest.raises(bridge.InvalidTransportURL, match="port"):
        TransportURL.parse("rabbit://h:notaport/")


def test_rpc_ping_enabled_appends_the_ping_endpoint(memory_url):
    transport = bridge.get_transport({"rpc_ping_enabled": True}, memory_url)
    server = bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), [])
    server.start()
    client = bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=5)
    assert client.call({}, "oslo_rpc_server_ping") == "pong"
    server.stop()
    server.wait()
    transport.cleanup()
