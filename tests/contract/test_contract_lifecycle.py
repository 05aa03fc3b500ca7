"""Server lifecycle on every wire: stop during a slow call, restart, messages sent while
stopped, and a server stopped from inside one of its own endpoints under each executor
(oslo.messaging's classic example: ``executor='blocking'`` and a control endpoint whose
``stop`` stops the server). See tests/contract/conftest.py."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pytest
from contract_endpoints import AsyncControl, Echo, Gate

import bridge
from endpoints import ServerControlEndpoint

EXECUTORS = ["threading", "blocking", "asyncio"]
#: Bound on every lifecycle step: a step that takes longer is a hang, not slowness.
STEP = 15.0
#: Bound on stop() while a call runs: it waits for nothing, so this is a hang.
STOP_BOUND = 5.0
#: How long a test watches for something that must not happen yet.
NOT_YET = 0.3


def in_thread(func: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run ``func`` in a thread; its ``result`` or ``error`` lands in the dict."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = func()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc
        box.setdefault("done", threading.Event()).set()

    box["done"] = threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def finished(thread: threading.Thread, box: dict, what: str) -> object:
    thread.join(STEP)
    assert not thread.is_alive(), f"{what} did not return within {STEP} s"
    if "error" in box:
        raise box["error"]
    return box.get("result")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_stop_during_a_slow_call(wire, topic, executor, request):
    """stop() returns while a call runs; that call still gets its answer; wait() returns
    only after it."""
    gate = Gate()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [gate], executor=executor)
    client = wire.client(bridge.Target(topic=topic))
    call, call_box = in_thread(lambda: client.call({}, "hold", value="answered"))
    assert gate.entered.wait(STEP)
    stop, stop_box = in_thread(server.stop)
    stop.join(STOP_BOUND)
    if stop.is_alive():
        gate.open()  # let the test end
        pytest.fail(f"stop() did not return within {STOP_BOUND} s while a call was running")
    waiter, wait_box = in_thread(server.wait)
    assert not wait_box["done"].wait(NOT_YET), "wait() returned before the call was answered"
    gate.open()
    assert finished(call, call_box, "the slow call") == "answered"
    finished(waiter, wait_box, "wait() after the call was answered")
    assert not server.running


@pytest.mark.parametrize("executor", EXECUTORS)
def test_cast_returns_while_the_method_runs(wire, topic, executor):
    """conftest DIFFERENCES: blocking_cast."""
    gate = Gate()
    wire.server(bridge.Target(topic=topic, server="s1"), [gate], executor=executor)
    cast, cast_box = in_thread(
        lambda: wire.client(bridge.Target(topic=topic)).cast({}, "hold", value="cast"))
    assert gate.entered.wait(STEP)
    if executor == "blocking" and wire.differences["blocking_cast"] == "after_method":
        assert not cast_box["done"].wait(NOT_YET), "the cast returned before the method ran"
    else:  # bounded below the method's own limit (HOLD_LIMIT): the method is still held
        cast.join(STOP_BOUND)
        assert "done" in cast_box and cast_box["done"].is_set(), "the cast waited for its method"
    gate.open()
    finished(cast, cast_box, "the cast")


def test_restart(wire, topic):
    """start / stop / wait / start again, twice; calls work in each cycle."""
    events: queue.Queue = queue.Queue()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [Echo("s1", events)])
    client = wire.client(bridge.Target(topic=topic), via=server)
    for cycle in range(3):
        assert client.call({}, "echo", value=cycle) == cycle
        assert server.running
        server.stop()
        server.wait()
        assert not server.running
        server.start()
    assert client.call({}, "whoami") == "s1"


def test_stop_twice_and_wait_twice_are_harmless(wire, topic):
    server = wire.server(bridge.Target(topic=topic, server="s1"), [Echo("s1")])
    server.stop()
    server.stop()
    server.wait()
    server.wait()
    server.start()
    assert wire.client(bridge.Target(topic=topic), via=server).call({}, "whoami") == "s1"


def test_message_sent_while_the_server_is_stopped(wire, topic):
    """conftest DIFFERENCES: stopped_server. Casts sent after stop() and after wait(), and a
    call whose timeout passes before the restart (it expires in its queue: never run)."""
    events: queue.Queue = queue.Queue()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [Echo("s1", events)])
    client = wire.client(bridge.Target(topic=topic), via=server, retry=0)
    queued = wire.differences["stopped_server"] == "queued"
    server.stop()
    for moment in ("stopped", "waited"):
        if moment == "waited":
            server.wait()
        if queued:
            client.cast({}, "record", token=moment)
            with pytest.raises(bridge.MessagingTimeout):
                client.prepare(timeout=0.2).call({}, "record", token=f"expired-{moment}")
        else:  # refused (UNAVAILABLE; NOT_FOUND once the address serves other topics only)
            with pytest.raises(bridge.MessageDeliveryFailure):
                client.cast({}, "record", token=moment)
            with pytest.raises(bridge.MessageDeliveryFailure):
                client.call({}, "record", token=moment)
    server.start()
    # (On gRPC the client first waits out its reconnection backoff, about a second.)
    assert client.prepare(retry=None).call({}, "whoami") == "s1"
    if queued:
        got = sorted(events.get(timeout=STEP) for _ in range(2))
        assert got == [("s1", "stopped"), ("s1", "waited")]
    assert events.empty()


# -- a server stopped from inside one of its own endpoints ---------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("how", ["call", "cast"])
def test_control_endpoint_stops_its_own_server(wire, topic, executor, how):
    """The classic example: ``main`` waits in ``server.wait()``; a caller asks the control
    endpoint (namespace ``control``, version 2.0) to ``stop``. The stop call returns and
    ``wait()`` returns."""
    control = ServerControlEndpoint()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [control, Echo("s1")],
                         executor=executor)
    control.server = server
    waiter, wait_box = in_thread(server.wait)  # the example's main thread
    client = wire.client(bridge.Target(topic=topic, namespace="control", version="2.0"),
                         via=server)
    assert client.call({}, "status")["running"] is True
    if how == "call":
        assert client.call({}, "stop") is None
    else:
        client.cast({}, "stop")
    finished(waiter, wait_box, "wait() after the control endpoint stopped the server")
    assert not server.running


def test_async_control_endpoint_stops_its_own_server(wire, topic):
    """The same with a coroutine endpoint, awaited on the asyncio executor's loop."""
    control = AsyncControl()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [control],
                         executor="asyncio")
    control.server = server
    waiter, wait_box = in_thread(server.wait)
    client = wire.client(bridge.Target(topic=topic, namespace="control", version="2.0"),
                         via=server)
    assert client.call({}, "stop") == "stopping"
    finished(waiter, wait_box, "wait() after the coroutine stopped the server")
    assert not server.running


@pytest.mark.parametrize("executor", EXECUTORS)
def test_stopped_from_inside_then_restarted(wire, topic, executor):
    control = ServerControlEndpoint()
    server = wire.server(bridge.Target(topic=topic, server="s1"), [control, Echo("s1")],
                         executor=executor)
    control.server = server
    client = wire.client(bridge.Target(topic=topic), via=server)
    client.prepare(namespace="control", version="2.0").call({}, "stop")
    waiter, wait_box = in_thread(server.wait)
    finished(waiter, wait_box, "wait()")
    server.start()
    assert client.call({}, "whoami") == "s1"
