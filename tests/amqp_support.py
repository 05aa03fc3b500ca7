"""Helpers for the AMQP tests: real oslo.messaging peers in-process, unique names, cleanup.

Most helpers take the broker to use (a ``tests/brokers.py`` Broker, or its port); without
one they use the machine's RabbitMQ 3.10 on 127.0.0.1:5672.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import brokers

import bridge
from tests.waiting import wait_for  # noqa: F401 - the AMQP tests import it from here

BROKER_URL = "rabbit://guest:guest@127.0.0.1:5672/"
#: Quick reconnection, so the fault tests stay short.
FAST_RECONNECT = ("rabbit_retry_interval=1&rabbit_retry_backoff=1&rabbit_interval_max=2"
                  "&kombu_reconnect_delay=0.2")
#: How kolla-ansible and OpenStack-Ansible configure oslo.messaging for RabbitMQ 4.x: quorum
#: queues (also for reply and fanout queues), fanout through streams, stable queue names.
#: oslo.messaging 18.3 with its defaults cannot use RabbitMQ 4.3 with upstream defaults: it
#: declares queues neither durable nor exclusive, which 4.3 refuses (and oslo then hangs).
KOLLA_OPTIONS = ("rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true"
                 "&rabbit_stream_fanout=true&use_queue_manager=true&rabbit_qos_prefetch_count=10")


def broker_url(broker: Any = None, options: str = "", vhost: str = "") -> str:
    """A transport URL for ``broker`` (default 3.10), virtual host and query options."""
    port = getattr(broker, "port", broker) or 5672
    url = f"rabbit://guest:guest@127.0.0.1:{port}/{vhost}"
    return f"{url}?{options}" if options else url


def peer_options(broker: Any, kind: str = "") -> str:
    """The options every peer of a test uses on ``broker``: none on 3.10, kolla's on 4.3.

    With the queue manager each kind of peer gets its own ``processname``: an oslo peer
    and a bridge peer in one process would otherwise name their reply queues alike.
    """
    if getattr(broker, "name", "") != "rabbitmq-4.3":
        return ""
    return KOLLA_OPTIONS + (f"&processname=tests-{kind}" if kind else "")


def is_43(broker: Any) -> bool:
    return getattr(broker, "name", "") == "rabbitmq-4.3"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def oslo_conf(config_file: str | None = None) -> Any:
    """A private oslo.config ConfigOpts usable by oslo.messaging 18.3 (docs/wire.md 5.7b).

    ``config_file``: an oslo.config (INI) file to read, as a service's ``--config-file``.
    """
    from oslo_config import cfg
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing

    conf = cfg.ConfigOpts()
    conf(["--config-file", config_file] if config_file else [], project="bridge-tests",
         default_config_files=[], default_config_dirs=[])
    # oslo.messaging 18.3 registers these on the global CONF only.
    conf.register_opts(tracing.oslo_messaging_tracing, group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics, group="oslo_messaging_metrics")
    return conf


def oslo_transport(url: str = BROKER_URL, allowed_remote_exmods: list[str] | None = None,
                   ) -> Any:
    import oslo_messaging

    if "use_queue_manager=true" in url:
        # oslo's queue manager keeps its counter under an oslo.concurrency lock.
        from oslo_concurrency import lockutils

        lockutils.set_defaults(os.path.join(tempfile.gettempdir(), "bridge-tests-oslo-locks"))
    return oslo_messaging.get_rpc_transport(oslo_conf(), url=url,
                                            allowed_remote_exmods=allowed_remote_exmods)


def make_endpoints(lib: Any, name: str, events: queue.Queue) -> list[Any]:
    """The same endpoints for an oslo.messaging server (``lib``) or an rpc-bridge one."""

    class Main:
        target = lib.Target(version="1.5")

        def echo(self, ctxt: Any, value: Any) -> Any:
            return value

        def whoami(self, ctxt: Any) -> str:
            return name

        def context(self, ctxt: Any) -> Any:
            return dict(ctxt)

        def record(self, ctxt: Any, token: str) -> None:
            events.put((name, token))

        def fail(self, ctxt: Any) -> None:
            raise ValueError("bad value")

        @lib.expected_exceptions(KeyError)
        def expected(self, ctxt: Any) -> None:
            raise KeyError("missing")

        def sleep(self, ctxt: Any, seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        def slow(self, ctxt: Any, seconds: float) -> float:
            events.put((name, "started"))
            time.sleep(seconds)
            return seconds

    class NamespaceV2:
        target = lib.Target(namespace="ns", version="2.3")

        def which(self, ctxt: Any) -> str:
            return "ns-2.3"

    class NamespaceV1:
        target = lib.Target(namespace="ns", version="1.1")

        def which(self, ctxt: Any) -> str:
            return "ns-1.1"

    return [Main(), NamespaceV2(), NamespaceV1()]


class Peer:
    """Servers and clients of one library (``oslo`` or ``bridge``) on one broker URL."""

    def __init__(self, kind: str, url: str = BROKER_URL) -> None:
        self.kind = kind
        self.url = url
        self.transports: list[Any] = []
        self.servers: list[Any] = []
        if kind == "oslo":
            import oslo_messaging

            self.lib = oslo_messaging
        else:
            self.lib = bridge

    def transport(self, allowed_remote_exmods: list[str] | None = None) -> Any:
        if self.kind == "oslo":
            transport = oslo_transport(self.url, allowed_remote_exmods)
        else:
            transport = bridge.get_transport(None, self.url, allowed_remote_exmods)
        self.transports.append(transport)
        return transport

    def server(self, exchange: str, topic: str, name: str, events: queue.Queue,
               transport: Any = None) -> Any:
        target = self.lib.Target(exchange=exchange, topic=topic, server=name)
        server = self.lib.get_rpc_server(transport or self.transport(), target,
                                         make_endpoints(self.lib, name, events),
                                         executor="threading")
        server.start()
        self.servers.append(server)
        return server

    def client(self, exchange: str, topic: str, transport: Any = None, **kwargs: Any) -> Any:
        target = self.lib.Target(exchange=exchange, topic=topic)
        return self.lib.get_rpc_client(transport or self.transport(), target, **kwargs)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        for server in self.servers:
            server.wait()
        for transport in self.transports:
            transport.cleanup()
        self.servers, self.transports = [], []


def delete_queues(names: list[str], exchanges: list[str] = (), vhost: str = "/",
                  broker: Any = None) -> None:
    """Remove what a test left on the broker (topic queues outlive their servers)."""
    import kombu

    port = getattr(broker, "port", broker) or 5672
    with kombu.Connection(hostname="127.0.0.1", port=port, userid="guest", password="guest",
                          virtual_host=vhost, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in names:
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()
        for name in exchanges:
            try:
                channel.exchange_delete(name)
            except Exception:
                channel = conn.channel()


def drain(events: queue.Queue, count: int, timeout: float = 10.0) -> list[Any]:
    """Take ``count`` items (fewer if ``timeout`` passes first)."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            items.append(events.get(timeout=remaining))
        except queue.Empty:
            break
    return items


def call_in_thread(client: Any, method: str, **kwargs: Any) -> tuple[threading.Thread, dict]:
    """Start ``client.call({}, method, **kwargs)`` in a thread; its outcome lands in the dict
    (``result`` or ``error``) once the thread is joined."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = client.call({}, method, **kwargs)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def rabbitmqctl(*args: str, timeout: float = 60, broker: Any = None) -> str:
    """``rabbitmqctl ARGS`` against the 3.10 broker, or the 4.3 one (``broker``)."""
    if is_43(broker):
        return brokers.run_script("ctl", "single", *args, timeout=timeout)
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                            timeout=timeout, check=True)
    return result.stdout


def list_queues(vhost: str = "/", broker: Any = None) -> dict[str, dict[str, str]]:
    """Queue name -> {durable, auto_delete, exclusive, type, arguments} as rabbitmqctl shows
    them (``exclusive`` is "true" or "false")."""
    out = rabbitmqctl("list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "durable",
                      "auto_delete", "arguments", "exclusive", "type", broker=broker)
    queues = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 6:
            queues[parts[0]] = {"durable": parts[1], "auto_delete": parts[2],
                                "arguments": parts[3], "exclusive": parts[4] or "false",
                                "type": parts[5]}
    return queues


class RawWire:
    """A raw AMQP peer for the robustness tests: publishes hand-made requests (any body,
    any properties) and reads what comes back on a reply queue of its own."""

    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672//") -> None:
        import kombu

        self.conn = kombu.Connection(url, connect_timeout=5)
        self.channel = self.conn.channel()
        self.reply_q = unique("raw_reply")
        self.channel.queue_declare(self.reply_q, auto_delete=False,
                                   arguments={"x-expires": 600_000})
        self.replies: dict[str, list[dict]] = {}
        self.unreadable: list[bytes] = []

    @staticmethod
    def envelope(inner: dict) -> bytes:
        import json

        return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode()

    def publish(self, exchange: str, key: str, body: bytes, content_type: str | None =
                "application/json", headers: dict | None = None, **properties: Any) -> None:
        message = self.channel.prepare_message(body, content_type=content_type,
                                               headers=headers, properties=properties)
        self.channel.basic_publish(message, exchange=exchange, routing_key=key)

    def read_replies(self) -> int:
        """Take what arrived on the reply queue; how many messages."""
        import json

        count = 0
        while True:
            message = self.channel.basic_get(self.reply_q, no_ack=True)
            if message is None:
                return count
            count += 1
            try:
                inner = json.loads(json.loads(message.body)["oslo.message"])
            except (ValueError, KeyError, TypeError):
                self.unreadable.append(message.body)
                continue
            if inner.get("ending"):
                self.replies.setdefault(inner.get("_msg_id"), []).append(inner)

    def wait_replies(self, msg_ids: list[str], timeout: float = 20.0) -> bool:
        """Wait until every one of ``msg_ids`` has a final reply (bounded)."""
        return wait_for(lambda: (self.read_replies() or True)
                        and all(m in self.replies for m in msg_ids), timeout, 0.05)

    def close(self) -> None:
        try:
            self.channel.queue_delete(self.reply_q)
        except Exception:  # the connection is gone: so is the queue, with x-expires
            pass
        finally:
            self.conn.release()


class Echo:
    """An endpoint that returns what it is given."""

    def echo(self, ctxt: Any, value: Any) -> Any:
        return value


@contextlib.contextmanager
def echo_server(prefix: str, url: str = BROKER_URL) -> Iterator[tuple[str, str, Any, Any, RawWire]]:
    """An rpc-bridge server of :class:`Echo` (server ``s1``) on a topic and exchange of its
    own, and a :class:`RawWire`: ``(exchange, topic, server, transport, wire)``. On exit it
    stops the server, asserts that ``stop()`` + ``wait()`` returned, and deletes its queues."""
    exchange, topic = unique("bx"), unique(prefix)
    transport = bridge.get_transport(None, url)
    server = bridge.get_rpc_server(
        transport, bridge.Target(exchange=exchange, topic=topic, server="s1"), [Echo()])
    server.start()
    wire = RawWire()
    try:
        yield exchange, topic, server, transport, wire
    finally:
        server.stop()
        waiter = threading.Thread(target=server.wait, daemon=True)
        waiter.start()
        waiter.join(30)
        transport.cleanup()
        wire.close()
        delete_queues([topic, f"{topic}.s1"], [exchange])
    assert not waiter.is_alive(), "stop() + wait() did not return"
