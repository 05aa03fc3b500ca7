"""Server lifecycle, executors, routing and call-monitor heartbeats on the memory transport."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import bridge
from bridge.transport.memory import MemoryIncoming


class Gate:
    """An endpoint whose ``hold`` call blocks until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def hold(self, ctxt, value=None):
        self.entered.set()
        assert self.release.wait(10), "the test never released the call"
        self.finished.set()
        return value


class Where:
    def thread(self, ctxt):
        return threading.current_thread().name


def call_in_thread(client, method, **kwargs):
    box: dict = {}

    def run():
        try:
            box["result"] = client.call({}, method, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def client_for(transport, topic="topic", **kwargs):
    return bridge.get_rpc_client(transport, bridge.Target(topic=topic), timeout=10, **kwargs)


# -- lifecycle ---------------------------------------------------------------------------------

def test_stop_during_slow_call_then_wait_returns_after_the_reply(transport):
    gate = Gate()
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"), [gate])
    server.start()
    thread, box = call_in_thread(client_for(transport), "hold", value=42)
    assert gate.entered.wait(5)
    server.stop()
    assert not server.running
    waiter = threading.Thread(target=server.wait)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "wait() returned while a taken call was still running"
    gate.release.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert gate.finished.is_set() and server.in_flight == 0
    thread.join(5)
    assert box == {"result": 42}


def test_stop_takes_no_new_messages_and_they_wait_in_the_queue(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    server.start()
    server.stop()
    server.wait()
    client = client_for(transport)
    thread, box = call_in_thread(client, "thread")
    thread.join(0.3)
    assert thread.is_alive(), "a stopped server answered"
    server.start()  # the queued call is served by the restarted server
    thread.join(10)
    assert box["result"].startswith("bridge-worker")
    server.stop()
    server.wait()


def test_double_start_is_a_no_op(transport, caplog):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    server.start()
    listeners = list(server.listeners)
    server.start()
    assert server.listeners == listeners
    assert client_for(transport).call({}, "thread")
    server.stop()
    server.wait()


def test_stop_and_wait_before_start_return_at_once(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    done = threading.Event()

    def stop_and_wait():
        server.stop()
        server.wait()
        done.set()

    threading.Thread(target=stop_and_wait, daemon=True).start()
    assert done.wait(5), "stop()/wait() blocked on a server that never started"


def test_start_stop_wait_start_again(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    client = client_for(transport)
    for _ in range(3):
        server.start()
        assert client.call({}, "thread")
        server.stop()
        server.wait()
        server.stop()  # a second stop/wait in the same cycle is a no-op
        server.wait()


def test_wait_before_stop_blocks_until_stop(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    server.start()
    waiter = threading.Thread(target=server.wait)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    server.stop()
    waiter.join(5)
    assert not waiter.is_alive()


def test_wait_with_timeout_raises_task_timeout(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    server.start()
    with pytest.raises(bridge.TaskTimeout):
        server.wait(timeout=0.1)
    server.stop()
    server.wait()


def test_reset_is_safe_at_any_time(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Where()])
    server.reset()
    server.start()
    server.reset()
    assert client_for(transport).call({}, "thread")
    server.stop()
    server.reset()
    server.wait()
    server.reset()


def test_control_endpoint_stops_the_server_from_inside_a_call(transport):
    from endpoints import ServerControlEndpoint

    holder: list = []
    control = ServerControlEndpoint()
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [control], executor="blocking")
    control.server = server
    holder.append(server)
    server.start()
    client = client_for(transport).prepare(namespace="control", version="2.0")
    assert client.call({}, "status")["running"] is True
    client.call({}, "stop")
    server.wait()
    assert not server.running


def test_server_target_needs_topic_and_server(transport):
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic"), [Where()])
    with pytest.raises(bridge.InvalidTarget):
        server.start()


# -- executors ---------------------------------------------------------------------------------

def test_blocking_executor_dispatches_on_the_listener_thread(transport, serve):
    serve([Where()], executor="blocking")
    assert client_for(transport).call({}, "thread") == "bridge-memory-listener"


def test_threading_executor_dispatches_on_its_pool(transport, serve):
    serve([Where()], executor="threading")
    assert client_for(transport).call({}, "thread").startswith("bridge-worker")


def test_threading_pool_size_bounds_concurrency(transport):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    class Busy:
        def work(self, ctxt):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.2)
            with lock:
                state["now"] -= 1

    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [Busy()])
    server.start(override_pool_size=2)
    calls = [call_in_thread(client_for(transport), "work") for _ in range(6)]
    for thread, _ in calls:
        thread.join(20)
    server.stop()
    server.wait()
    assert state["max"] == 2


def test_pool_size_from_configuration(memory_url):
    transport = bridge.get_transport({"executor_thread_pool_size": 3}, memory_url)
    assert transport.settings.executor_thread_pool_size == 3
    transport.cleanup()


def test_asyncio_executor_awaits_coroutines_on_one_loop(transport, serve):
    arrived = {"n": 0}
    all_in: dict = {}

    class AsyncEndpoint:
        async def gather(self, ctxt, n):
            # Every call must be in flight at once; with the pool of 1 below this only
            # completes if coroutines run on the loop rather than in pool threads.
            all_in.setdefault("event", asyncio.Event())
            arrived["n"] += 1
            if arrived["n"] == n:
                all_in["event"].set()
            await asyncio.wait_for(all_in["event"].wait(), 10)
            return threading.current_thread().name

        def plain(self, ctxt):
            return threading.current_thread().name

    server = serve([AsyncEndpoint()], executor="asyncio")
    server.stop()
    server.wait()
    server.start(override_pool_size=1)
    calls = [call_in_thread(client_for(transport), "gather", n=5) for _ in range(5)]
    for thread, _ in calls:
        thread.join(15)
    assert [box.get("result") for _, box in calls] == ["bridge-asyncio"] * 5
    assert client_for(transport).call({}, "plain").startswith("bridge-worker")


def test_asyncio_executor_reports_coroutine_failures(transport, serve):
    class AsyncFailing:
        async def fail(self, ctxt):
            raise KeyError("missing")

    serve([AsyncFailing()], executor="asyncio")
    with pytest.raises(KeyError):
        client_for(transport).call({}, "fail")


def test_unknown_executor_raises_executor_load_failure(transport):
    with pytest.raises(bridge.ExecutorLoadFailure, match="eventlet"):
        bridge.get_rpc_server(transport, bridge.Target(topic="t", server="s"), [],
                              executor="eventlet")


# -- routing -----------------------------------------------------------------------------------

class Named:
    def __init__(self, name):
        self.name = name
        self.casts: list = []
        self.cast_seen = threading.Event()

    def who(self, ctxt):
        return self.name

    def note(self, ctxt, value):
        self.casts.append(value)
        self.cast_seen.set()


def test_round_robin_server_direct_and_fanout(transport, serve):
    servers = [Named(f"s{i}") for i in range(3)]
    for endpoint in servers:
        serve([endpoint], server=endpoint.name)
    client = client_for(transport)
    answers = [client.call({}, "who") for _ in range(9)]
    assert sorted(answers) == sorted(["s0", "s1", "s2"] * 3)
    assert {client.prepare(server="s1").call({}, "who") for _ in range(3)} == {"s1"}
    client.prepare(fanout=True).cast({}, "note", value="all")
    for endpoint in servers:
        assert endpoint.cast_seen.wait(5)
        assert endpoint.casts == ["all"]


def test_exchanges_scope_topics(transport):
    a, b = Named("a"), Named("b")
    servers = [bridge.get_rpc_server(transport, bridge.Target(exchange=ex, topic="t",
                                                              server="s"), [ep])
               for ex, ep in (("one", a), ("two", b))]
    for server in servers:
        server.start()
    client = bridge.get_rpc_client(transport, bridge.Target(topic="t"), timeout=5)
    assert client.prepare(exchange="one").call({}, "who") == "a"
    assert client.prepare(exchange="two").call({}, "who") == "b"
    for server in servers:
        server.stop()
        server.wait()


def test_cast_failures_are_only_logged(transport, serve, caplog):
    class Failing:
        def __init__(self):
            self.done = threading.Event()

        def boom(self, ctxt):
            self.done.set()
            raise ValueError("cast failure")

    endpoint = Failing()
    serve([endpoint])
    with caplog.at_level(logging.ERROR, logger="bridge.rpc.server"):
        assert client_for(transport).cast({}, "boom") is None
        assert endpoint.done.wait(5)
        for _ in range(50):
            if caplog.records:
                break
            time.sleep(0.05)
    assert any("cast failure" in r.getMessage() or (r.exc_info and "cast failure"
               in str(r.exc_info[1])) for r in caplog.records)


def test_call_to_an_unserved_topic_times_out(transport):
    client = bridge.get_rpc_client(transport, bridge.Target(topic="nobody"), timeout=0.3)
    with pytest.raises(bridge.MessagingTimeout, match="Timed out waiting for a reply"):
        client.call({}, "anything")


def test_at_least_once_without_a_queue_is_undeliverable(transport):
    client = bridge.get_rpc_client(
        transport, bridge.Target(topic="nobody"), timeout=5,
        transport_options=bridge.TransportOptions(at_least_once=True))
    with pytest.raises(bridge.MessageUndeliverable):
        client.call({}, "anything")


# -- call-monitor heartbeats -------------------------------------------------------------------

class Sleeper:
    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return ctxt["client_timeout"]

    def sleep_then_fail(self, ctxt, seconds):
        time.sleep(seconds)
        raise ValueError("late failure")


@pytest.fixture
def heartbeats(monkeypatch):
    sent: list = []
    original = MemoryIncoming.heartbeat

    def counting(self):
        sent.append(time.monotonic())
        original(self)

    monkeypatch.setattr(MemoryIncoming, "heartbeat", counting)
    return sent


def test_call_monitor_keeps_a_long_call_alive(transport, serve, heartbeats):
    serve([Sleeper()])
    client = client_for(transport).prepare(timeout=30, call_monitor_timeout=2)
    assert client.call({}, "sleep", seconds=2.5) == 2
    assert len(heartbeats) >= 2


def test_heartbeats_stop_after_a_failure(transport, serve, heartbeats):
    serve([Sleeper()])
    client = client_for(transport).prepare(timeout=30, call_monitor_timeout=2)
    with pytest.raises(ValueError, match="late failure"):
        client.call({}, "sleep_then_fail", seconds=1.5)
    with pytest.raises(bridge.RemoteError, match="NoSuchMethod"):
        client.call({}, "no_such_method")
    count = len(heartbeats)
    time.sleep(1.5)  # an absence is observed by waiting longer than the heartbeat interval
    assert len(heartbeats) == count


def test_no_heartbeats_without_call_monitor_timeout(transport, serve, heartbeats):
    serve([Sleeper()])
    assert client_for(transport).call({}, "sleep", seconds=1.2) is None
    assert heartbeats == []


def test_missing_heartbeats_time_the_call_out(transport, serve, monkeypatch):
    monkeypatch.setattr(MemoryIncoming, "heartbeat", lambda self: None)
    serve([Sleeper()])
    client = client_for(transport).prepare(timeout=30, call_monitor_timeout=1)
    with pytest.raises(bridge.MessagingTimeout):
        client.call({}, "sleep", seconds=3)
