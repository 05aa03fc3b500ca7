"""The rabbit:// driver against the real broker: wire format, flags, bad input, options.

The wire-format tests run on the 3.10 broker; the behaviour tests (bad input, at-least-once
and timeouts, many threads, a stopped server) on both brokers, RabbitMQ 4.3 with default
options included (where queues a test declares itself must be durable).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid

import kombu
import pytest
from amqp_support import BROKER_URL, Peer, delete_queues, drain, is_43, list_queues, unique

import bridge
from bridge.transport.amqp import queues
from bridge.transport.amqp.options import AmqpOptions, kombu_urls
from bridge.transport.options import parse_options
from bridge.transport.url import TransportURL


def broker(test):
    """Mark a test as needing RabbitMQ (skipped without it, failed under CI=true)."""
    return pytest.mark.broker(pytest.mark.usefixtures("broker_available")(test))


@pytest.fixture
def names():
    exchange, topic = unique("bx"), unique("drv")
    created: list[str] = []
    yield exchange, topic, created
    delete_queues([topic, f"{topic}.s1", f"{topic}.s2", *created], [exchange])


@pytest.fixture
def raw():
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//", connect_timeout=5) as conn:
        yield conn.channel()


@pytest.fixture
def on_broker(amqp_broker):
    """For the tests on both brokers: ``(broker, names, raw channel)``; the queues a test
    declares itself are durable on 4.3 (``is_43(broker)``)."""
    exchange, topic = unique("bx"), unique("drv")
    created: list[str] = []
    with kombu.Connection(amqp_broker.kombu_url, connect_timeout=5) as conn:
        yield amqp_broker, (exchange, topic, created), conn.channel()
    delete_queues([topic, f"{topic}.s1", f"{topic}.s2", *created], [exchange],
                  broker=amqp_broker)


def _get(channel, queue_name: str, tries: int = 50):
    """basic_get with a bounded wait for the message to arrive."""
    import time

    for _ in range(tries):
        message = channel.basic_get(queue_name, no_ack=True)
        if message is not None:
            return message
        time.sleep(0.1)
    raise AssertionError(f"nothing arrived on {queue_name}")


# -- options and URLs (no broker) -----------------------------------------------------------


def test_unknown_option_is_a_clear_error():
    with pytest.raises(bridge.InvalidTransportURL, match="rabbit_no_such_thing"):
        bridge.get_transport(None, "rabbit://h/?rabbit_no_such_thing=1")
    with pytest.raises(bridge.InvalidTransportURL, match="heartbeat_timeout_threshold"):
        bridge.get_transport(None, "rabbit://h/?heartbeat_timeout_threshold=soon")


def test_options_from_conf_overridden_by_url():
    conf = {"oslo_messaging_rabbit": {"rabbit_qos_prefetch_count": 5,
                                      "amqp_durable_queues": True}}
    transport = bridge.get_transport(conf, "rabbit://h/?rabbit_qos_prefetch_count=7")
    options = transport.driver.options
    assert options.rabbit_qos_prefetch_count == 7
    assert options.amqp_durable_queues is True and queues.topic_durable(options) is True
    assert options.heartbeat_timeout_threshold == 60
    transport.cleanup()


def _options(query: dict[str, str]) -> AmqpOptions:
    return parse_options(AmqpOptions, {}, TransportURL("rabbit", query=query),
                         "oslo_messaging_rabbit")


def test_queue_arguments_follow_oslo_names():
    options = _options({"rabbit_quorum_queue": "true", "rabbit_quorum_delivery_limit": "3",
                        "rabbit_transient_queues_ttl": "10"})
    assert queues.topic_durable(options)
    assert queues.topic_queue_arguments(options) == {"x-queue-type": "quorum",
                                                     "x-delivery-limit": 3}
    assert queues.transient_queue_arguments(options) == {"x-expires": 10000}
    assert queues.transient_queue_arguments(_options({"rabbit_transient_queues_ttl": "0"})) == {}
    with pytest.raises(bridge.InvalidTransportURL):
        _options({"rabbit_quorum_queue": "1", "rabbit_ha_queues": "1"})


def test_backoff_grows_to_its_maximum():
    options = _options({})
    assert [options.backoff(n) for n in (1, 2, 3, 20)] == [1.0, 3.0, 5.0, 30.0]


def test_each_host_is_tried_before_backing_off():
    from bridge.transport.amqp.hosts import Hosts

    options = _options({})
    one = Hosts([{"hostname": "h1", "port": 5672}], options)
    assert [one.delay(n) for n in (0, 1, 2, 3)] == [1.0, 2.0, 4.0, 6.0]
    three = Hosts([{"hostname": f"h{n}", "port": 5672} for n in (1, 2, 3)], options)
    # Lost: wait kombu_reconnect_delay; then the other two hosts at once; then back off.
    assert [three.delay(n) for n in range(7)] == [1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 4.0]
    assert len({three.next()["hostname"] for _ in range(3)}) == 3


def test_hosts_vhost_and_credentials():
    url = TransportURL.parse("rabbit://u1:p%40ss@h1:5672,u2:p2@h2:5673/my_vhost?ssl=true")
    hosts = kombu_urls(url)
    assert [(h["hostname"], h["port"], h["userid"], h["password"]) for h in hosts] == [
        ("h1", 5672, "u1", "p@ss"), ("h2", 5673, "u2", "p2")]
    assert {h["virtual_host"] for h in hosts} == {"my_vhost"}
    assert kombu_urls(TransportURL.parse("rabbit://"))[0]["hostname"] == "localhost"
    assert kombu_urls(TransportURL.parse("rabbit://h//"))[0]["virtual_host"] == "/"
    assert kombu_urls(TransportURL.parse("rabbit://h/"))[0]["virtual_host"] == "/"
    assert kombu_urls(TransportURL.parse("rabbit://[::1]:5672/"))[0]["hostname"] == "[::1]"
    for scheme in ("kombu", "amqp"):
        transport = bridge.get_transport(None, f"{scheme}://h/")
        assert transport.wire == "amqp"
        transport.cleanup()


# -- the broker -----------------------------------------------------------------------------


@broker
def test_server_declares_oslo_flags(names):
    exchange, topic, _ = names
    peer = Peer("bridge")
    try:
        server = peer.server(exchange, topic, "s1", queue.Queue())
        listener = server.listeners[0]
        client = peer.client(exchange, topic, timeout=10)
        assert client.call({}, "echo", value=1) == 1
        queues = list_queues()
        assert queues[topic]["durable"] == "false" and queues[topic]["auto_delete"] == "false"
        assert queues[topic]["arguments"] == "[]"
        assert queues[f"{topic}.s1"]["arguments"] == "[]"
        # The bridge's own queues: durable classic queues that expire (RabbitMQ 4.3 refuses
        # transient queues that are not exclusive; an exclusive one would go with its
        # connection, and the replies in it).
        fanout = queues[listener.fanout_queue]
        assert listener.fanout_queue.startswith(f"{topic}_fanout_")
        reply = queues[client.transport.driver.reply_queue]
        assert client.transport.driver.reply_queue.startswith("reply_")
        for own in (fanout, reply):
            assert own["durable"] == "true" and own["auto_delete"] == "false"
            assert own["exclusive"] == "false" and own["type"] == "classic"
            assert "x-expires" in own["arguments"] and "1800000" in own["arguments"]
        assert server.healthy
    finally:
        peer.close()
    assert listener.fanout_queue not in list_queues()  # cleanup deletes the fanout queue


@broker
def test_request_on_the_wire(names, raw):
    exchange, topic, _ = names
    raw.exchange_declare(exchange, "topic", durable=False, auto_delete=False)
    raw.queue_declare(topic, durable=False, auto_delete=False)
    raw.queue_bind(topic, exchange, topic)
    transport = bridge.get_transport(None, BROKER_URL)
    try:
        target = bridge.Target(exchange=exchange, topic=topic, version="1.2")
        future = transport.driver.send_async(
            target, {"user": "u1", "request_id": "req-1"},
            {"method": "echo", "args": {"x": [1, 2]}, "version": "1.2"}, timeout=10)
        message = _get(raw, topic)
        props = message.properties
        assert props["content_type"] == "application/json"
        assert props["content_encoding"] == "utf-8"
        assert props["delivery_mode"] == 2 and props["priority"] == 0
        assert props["expiration"] == "10000"
        assert message.delivery_info["routing_key"] == topic
        body = json.loads(message.body)
        assert list(body) == ["oslo.version", "oslo.message"] and body["oslo.version"] == "2.0"
        inner = json.loads(body["oslo.message"])
        assert list(inner) == ["method", "args", "version", "_msg_id", "_reply_q", "_timeout",
                               "_unique_id", "_context_user", "_context_request_id"]
        assert inner["_reply_q"] == transport.driver.reply_queue and inner["_timeout"] is None
        # Answer the old two-message way: the payload, then an empty ending message.
        for reply in ({"result": 42, "failure": None, "_msg_id": inner["_msg_id"]},
                      {"result": None, "failure": None, "ending": True,
                       "_msg_id": inner["_msg_id"]}):
            raw.basic_publish(raw.prepare_message(json.dumps(
                {"oslo.version": "2.0", "oslo.message": json.dumps(reply)}).encode(),
                content_type="application/json"), exchange="", routing_key=inner["_reply_q"])
        assert future.result(timeout=10) == 42

        fanout = bridge.Target(topic=topic, fanout=True)
        raw.queue_declare(f"{topic}_fanout_capture", auto_delete=False)
        _bind_fanout(transport, raw, topic)
        transport.driver.send(fanout, {}, {"method": "record", "args": {}},
                              wait_for_reply=False, timeout=None)
        message = _get(raw, f"{topic}_fanout_capture")
        assert message.delivery_info["exchange"] == f"{topic}_fanout"
        assert message.delivery_info["routing_key"] == ""
        assert "expiration" not in message.properties
        inner = json.loads(json.loads(message.body)["oslo.message"])
        assert list(inner) == ["method", "args", "_unique_id"]
    finally:
        transport.cleanup()
        delete_queues([f"{topic}_fanout_capture"])


def _bind_fanout(transport, raw, topic):
    raw.exchange_declare(f"{topic}_fanout", "fanout", durable=False, auto_delete=True)
    raw.queue_bind(f"{topic}_fanout_capture", f"{topic}_fanout", topic)


@broker
def test_reply_on_the_wire_and_duplicates(names, raw):
    exchange, topic, created = names
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge")
    reply_q = unique("reply")
    created.append(reply_q)
    raw.queue_declare(reply_q, auto_delete=False)
    try:
        peer.server(exchange, topic, "s1", events)
        request = {"method": "echo", "args": {"value": 3}, "_msg_id": "m1", "_reply_q": reply_q,
                   "_timeout": None, "_unique_id": "u1", "_context_user": "u"}
        _publish(raw, exchange, topic, request)
        body = json.loads(_get(raw, reply_q).body)
        inner = json.loads(body["oslo.message"])
        assert list(inner) == ["result", "failure", "ending", "_msg_id", "_unique_id"]
        assert inner["result"] == 3 and inner["failure"] is None and inner["ending"] is True
        assert inner["_msg_id"] == "m1"

        cast = {"method": "record", "args": {"token": "dup"}, "_unique_id": "same-id"}
        _publish(raw, exchange, topic, cast)
        _publish(raw, exchange, topic, cast)
        _publish(raw, exchange, topic, {"method": "record", "args": {"token": "after"},
                                        "_unique_id": "other"})
        got = drain(events, 3, timeout=3)
        assert sorted(token for _, token in got) == ["after", "dup"]
    finally:
        peer.close()


def _publish(raw, exchange, key, inner=None, body=None, **props):
    if body is None:
        body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)})
    content_type = props.pop("content_type", "application/json")
    raw.basic_publish(raw.prepare_message(body.encode(), content_type=content_type,
                                          properties=props), exchange=exchange,
                      routing_key=key)


def test_bad_messages_are_rejected_and_the_server_goes_on(on_broker, caplog):
    amqp_broker, (exchange, topic, created), raw = on_broker
    peer = Peer("bridge", amqp_broker.url)
    reply_q = unique("reply")
    created.append(reply_q)
    raw.queue_declare(reply_q, auto_delete=False, durable=is_43(amqp_broker))
    try:
        peer.server(exchange, topic, "s1", queue.Queue())
        caplog.set_level(logging.ERROR, logger="bridge")
        _publish(raw, exchange, topic, body="not json {")
        _publish(raw, exchange, topic, body=json.dumps(
            {"oslo.version": "3.0", "oslo.message": json.dumps({"method": "echo"})}))
        _publish(raw, exchange, topic, {"args": {}, "_unique_id": "x"})
        _publish(raw, exchange, topic, {"method": "echo", "args": [1, 2], "_msg_id": "bad1",
                                        "_reply_q": reply_q, "_timeout": None})
        _publish(raw, exchange, topic, {"method": 7, "args": {}})
        inner = json.loads(json.loads(_get(raw, reply_q).body)["oslo.message"])
        assert inner["_msg_id"] == "bad1" and inner["ending"] is True
        failure = json.loads(inner["failure"])
        assert failure["class"] == "MalformedMessage" and "args" in failure["message"]
        client = peer.client(exchange, topic, timeout=10)
        assert client.call({}, "echo", value="still serving") == "still serving"
        # Unreadable envelopes are rejected by the driver; readable ones with wrong fields
        # are answered by the dispatcher (MalformedMessage); each is logged once.
        rejected = [r for r in caplog.records if "Rejected a bad message" in r.getMessage()]
        assert len(rejected) == 2
        malformed = [r for r in caplog.records
                     if r.name == "bridge.rpc.server" and "must be" in r.getMessage()]
        assert len(malformed) == 3
        assert raw.queue_declare(topic, passive=True).message_count == 0
    finally:
        peer.close()


def test_at_least_once_and_timeouts(on_broker):
    amqp_broker, (exchange, topic, _), raw = on_broker
    peer = Peer("bridge", amqp_broker.url)
    try:
        transport = peer.transport()
        mandatory = peer.client(exchange, topic, transport=transport, timeout=5,
                                transport_options=bridge.TransportOptions(at_least_once=True))
        with pytest.raises(bridge.MessageUndeliverable):
            mandatory.call({}, "echo", value=1)
        with pytest.raises(bridge.MessageUndeliverable):
            mandatory.cast({}, "echo", value=1)
        peer.client(exchange, topic, transport=transport).cast({}, "echo", value=1)  # lost
        with pytest.raises(bridge.MessagingTimeout):
            peer.client(exchange, topic, transport=transport, timeout=1).call({}, "echo",
                                                                              value=1)
        raw.queue_declare(topic, auto_delete=False, durable=is_43(amqp_broker))
        raw.queue_bind(topic, exchange, topic)
        monitored = peer.client(exchange, topic, transport=transport, timeout=60,
                                call_monitor_timeout=1)
        with pytest.raises(bridge.MessagingTimeout, match="call monitor"):
            monitored.call({}, "echo", value=1)  # nobody consumes: no heartbeat arrives
    finally:
        peer.close()


def test_many_threads_and_async_calls_share_one_reply_queue(on_broker):
    amqp_broker, (exchange, topic, _), _ = on_broker
    peer = Peer("bridge", amqp_broker.url)
    try:
        peer.server(exchange, topic, "s1", queue.Queue())
        peer.server(exchange, topic, "s2", queue.Queue())
        transport = peer.transport()
        client = peer.client(exchange, topic, transport=transport, timeout=20)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(40):
                    value = {"thread": n, "i": i, "pad": "x" * (i * 10)}
                    assert client.call({"n": n}, "echo", value=value) == value
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        target = bridge.Target(exchange=exchange, topic=topic)
        futures = [transport.driver.send_async(target, {}, {"method": "echo",
                                                            "args": {"value": i}}, timeout=20)
                   for i in range(300)]
        assert [f.result(timeout=30) for f in futures] == list(range(300))
        assert len({transport.driver.reply_queue}) == 1
        assert transport.driver.client.connection.generation == 1  # one connection did all of it
    finally:
        peer.close()


@broker
def test_amqp_heartbeats_survive_a_long_method(names):
    """With a 2 s heartbeat timeout, a 5 s method neither drops nor reconnects anything."""
    exchange, topic, _ = names
    peer = Peer("bridge", BROKER_URL + "?heartbeat_timeout_threshold=2")
    try:
        server = peer.server(exchange, topic, "s1", queue.Queue())
        transport = peer.transport()
        client = peer.client(exchange, topic, transport=transport, timeout=30)
        assert client.call({}, "sleep", seconds=5) == 5
        assert server.listeners[0]._conn.generation == 1
        assert transport.driver.client.connection.generation == 1
        assert client.call({}, "echo", value=uuid.uuid4().hex)
    finally:
        peer.close()


@broker
def test_prefetch_limits_what_a_server_takes(names):
    exchange, topic, _ = names
    peer = Peer("bridge", BROKER_URL + "?rabbit_qos_prefetch_count=1")
    try:
        events: queue.Queue = queue.Queue()
        peer.server(exchange, topic, "s1", events)
        client = peer.client(exchange, topic, timeout=20)
        for i in range(5):
            client.cast({}, "record", token=str(i))
        assert sorted(token for _, token in drain(events, 5)) == ["0", "1", "2", "3", "4"]
    finally:
        peer.close()


@broker
def test_declare_conflict_fails_the_server_start(names, raw):
    exchange, topic, _ = names
    raw.queue_declare(topic, durable=True, auto_delete=False)  # not what oslo declares
    peer = Peer("bridge")
    try:
        with pytest.raises(bridge.ServerListenError, match="PRECONDITION_FAILED|inequivalent"):
            peer.server(exchange, topic, "s1", queue.Queue())
    finally:
        peer.close()


@broker
def test_call_monitor_heartbeats_only_while_the_call_runs(names, raw):
    """``_timeout=2``: heartbeats every second while the method runs, none after (5.7a)."""
    import time

    exchange, topic, created = names
    peer = Peer("bridge")
    reply_q = unique("reply")
    created.append(reply_q)
    raw.queue_declare(reply_q, auto_delete=False)
    try:
        peer.server(exchange, topic, "s1", queue.Queue())
        _publish(raw, exchange, topic, {"method": "sleep", "args": {"seconds": 2.5},
                                        "_msg_id": "long", "_reply_q": reply_q,
                                        "_timeout": 2, "_unique_id": "hb1"})
        _publish(raw, exchange, topic, {"method": "missing", "args": {}, "_msg_id": "nosuch",
                                        "_reply_q": reply_q, "_timeout": 2,
                                        "_unique_id": "hb2"})
        replies: list[dict] = []
        deadline = time.monotonic() + 15
        while len([r for r in replies if r["ending"]]) < 2 and time.monotonic() < deadline:
            replies.append(json.loads(json.loads(_get(raw, reply_q, 150).body)["oslo.message"]))
        time.sleep(2.5)  # a watchdog that was never stopped would send more by now
        assert raw.basic_get(reply_q, no_ack=True) is None
        long_call = [r for r in replies if r["_msg_id"] == "long"]
        assert long_call[-1]["ending"] is True and long_call[-1]["result"] == 2.5
        beats = long_call[:-1]
        assert beats and all(r == {"result": None, "failure": None, "ending": False,
                                   "_msg_id": "long", "_unique_id": r["_unique_id"]}
                             for r in beats)
        missing = [r for r in replies if r["_msg_id"] == "nosuch"]
        assert len(missing) == 1 and json.loads(missing[0]["failure"])["class"] == "NoSuchMethod"
    finally:
        peer.close()


def test_a_stopped_server_takes_nothing_more(on_broker):
    amqp_broker, (exchange, topic, _), _ = on_broker
    events: queue.Queue = queue.Queue()
    peer = Peer("bridge", amqp_broker.url)
    try:
        first = peer.server(exchange, topic, "s1", events)
        peer.server(exchange, topic, "s2", events)
        first.stop()
        client = peer.client(exchange, topic, timeout=10)
        for i in range(10):
            client.cast({}, "record", token=str(i))
        got = drain(events, 10)
        assert sorted(token for _, token in got) == sorted(str(i) for i in range(10))
        assert {name for name, _ in got} == {"s2"}
        assert client.call({}, "whoami") == "s2"
    finally:
        peer.close()


def test_tls_options_map_to_kombu_ssl_parameters():
    import ssl

    plain = _options({})
    assert plain.ssl_params() is False
    # Without a CA file: the system's CAs, no host name check (py-amqp's defaults).
    assert _options({"ssl": "true"}).ssl_params("h") == \
        {"cert_reqs": ssl.CERT_REQUIRED}
    params = _options({"ssl": "1", "ssl_ca_file": "/ca.pem",
                                    "ssl_cert_file": "/c.pem", "ssl_key_file": "/k.pem",
                                    "ssl_version": "TLSv1_2"}).ssl_params("localhost")
    assert params["ca_certs"] == "/ca.pem" and params["cert_reqs"] == ssl.CERT_REQUIRED
    assert params["certfile"] == "/c.pem" and params["keyfile"] == "/k.pem"
    assert params["ssl_version"] == ssl.PROTOCOL_TLSv1_2
    assert params["server_hostname"] == "localhost"
    assert _options({"ssl": "1", "ssl_ca_file": "/ca.pem"}).ssl_params(
        "[::1]")["server_hostname"] == "::1"
    no_check = _options({"ssl": "1", "ssl_ca_file": "/ca.pem",
                                      "ssl_enforce_hostname_verification": "false"})
    assert "server_hostname" not in no_check.ssl_params()


@broker
def test_reply_to_a_missing_queue_is_retried_then_dropped(names, raw, caplog):
    """NO_ROUTE replies are retried, but not past the caller's deadline (+1 s)."""
    import time

    exchange, topic, _ = names
    peer = Peer("bridge")
    try:
        peer.server(exchange, topic, "s1", queue.Queue())
        caplog.set_level(logging.INFO, logger="bridge.transport.amqp")
        gone = unique("reply_gone")
        request = {"method": "echo", "args": {"value": 1}, "_msg_id": "m1", "_reply_q": gone,
                   "_timeout": None, "_unique_id": "r1"}
        _publish(raw, exchange, topic, request, expiration="1000")

        def logged(text: str) -> bool:
            return any(text in record.getMessage() for record in caplog.records)

        deadline = time.monotonic() + 15
        while not logged(f"The reply queue {gone} doesn't exist") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert logged(f"The reply queue {gone} doesn't exist")
        _publish(raw, exchange, topic, dict(request, _unique_id="r2"))
        while not logged(f"The reply queue {gone} is gone") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert logged(f"The reply queue {gone} is gone")  # remembered: dropped at once
        assert peer.client(exchange, topic, timeout=10).call({}, "echo", value=2) == 2
    finally:
        peer.close()


def test_oslo_config_group_is_read():
    from amqp_support import oslo_conf
    from oslo_messaging._drivers import amqp as oslo_amqp
    from oslo_messaging._drivers import impl_rabbit

    conf = oslo_conf()
    conf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
    conf.register_opts(oslo_amqp.amqp_opts, group="oslo_messaging_rabbit")
    conf.set_override("rabbit_qos_prefetch_count", 3, group="oslo_messaging_rabbit")
    conf.set_override("heartbeat_timeout_threshold", 20, group="oslo_messaging_rabbit")
    transport = bridge.get_transport(conf, "rabbit://h/?heartbeat_timeout_threshold=10")
    try:
        assert transport.driver.options.rabbit_qos_prefetch_count == 3
        assert transport.driver.options.heartbeat_timeout_threshold == 10
    finally:
        transport.cleanup()


@broker
def test_unknown_virtual_host_fails_the_server_start(names):
    exchange, topic, _ = names
    peer = Peer("bridge", f"rabbit://guest:guest@127.0.0.1:5672/{unique('no_such_vhost')}")
    try:
        with pytest.raises(bridge.ServerListenError):
            peer.server(exchange, topic, "s1", queue.Queue())
    finally:
        peer.close()
