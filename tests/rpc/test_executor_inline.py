"""The threading executor's inline runs: one pool-size bound shared with its pool.

A message whose ``may_run_inline`` is set (a gRPC sync ``Call``) runs on the thread that
hands it over when a permit is free; everything else runs on the pool. These tests wait
on events and counts, never on durations.
"""

from __future__ import annotations

import threading
import time

import pytest

import bridge
from bridge.rpc.executors import ThreadingExecutor

WAIT = 10  # seconds a test waits for something that should happen almost at once


class Message:
    """The least an executor looks at: ``may_run_inline``."""

    def __init__(self, may_run_inline: bool = False) -> None:
        self.may_run_inline = may_run_inline


class Tracker:
    """Counts the messages running at once; each one waits for ``gate``."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.now = 0
        self.max = 0
        self.entered = 0
        self.done = 0
        self.threads: list[str] = []
        self.gate = threading.Event()

    def run(self) -> str:
        with self.cond:
            self.now += 1
            self.entered += 1
            self.max = max(self.max, self.now)
            self.threads.append(threading.current_thread().name)
            self.cond.notify_all()
        try:
            assert self.gate.wait(WAIT), "the test never opened the gate"
        finally:
            with self.cond:
                self.now -= 1
                self.done += 1
                self.cond.notify_all()
        return threading.current_thread().name

    def wait_for(self, predicate) -> bool:
        """Wait until ``predicate()``; it is checked on every change here and every 10 ms
        (it may look at things this tracker is not told about, such as in_flight)."""
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    return False
                self.cond.wait(0.01)
            return True


# -- the executor alone ------------------------------------------------------------------------

def make_executor(size: int, tracker: Tracker) -> ThreadingExecutor:
    return ThreadingExecutor(size, lambda message: tracker.run(), None)  # type: ignore[arg-type]


def test_may_run_inline_is_honoured_only_when_set():
    tracker = Tracker()
    tracker.gate.set()
    executor = make_executor(4, tracker)
    try:
        executor.submit(Message(may_run_inline=True))
        # An inline run is over when submit() returns, on this very thread.
        assert tracker.done == 1
        assert tracker.threads == [threading.current_thread().name]
        executor.submit(Message(may_run_inline=False))
        executor.submit(object())  # a message without the attribute at all
        assert tracker.wait_for(lambda: tracker.done == 3)
        assert all(name.startswith("bridge-worker") for name in tracker.threads[1:])
    finally:
        executor.shutdown(wait=True)


def test_no_inline_run_without_a_free_permit():
    tracker = Tracker()
    executor = make_executor(1, tracker)
    try:
        executor.submit(Message())  # takes the only permit, on the pool
        assert tracker.wait_for(lambda: tracker.entered == 1)
        executor.submit(Message(may_run_inline=True))  # must queue, not run here
        assert tracker.entered == 1 and tracker.done == 0
        tracker.gate.set()
        assert tracker.wait_for(lambda: tracker.done == 2)
        assert tracker.max == 1
        assert threading.current_thread().name not in tracker.threads
    finally:
        executor.shutdown(wait=True)


def test_inline_and_pool_runs_share_one_bound():
    size, each = 2, 6
    tracker = Tracker()
    executor = make_executor(size, tracker)
    returned = []
    lock = threading.Lock()

    def submit(inline: bool) -> None:
        executor.submit(Message(may_run_inline=inline))
        with lock:
            returned.append(inline)

    threads = [threading.Thread(target=submit, args=(inline,))
               for inline in [True, False] * each]
    try:
        for thread in threads:
            thread.start()
        # Every submitter is now either running its message inline or has queued it.
        submitters = {thread.name for thread in threads}

        def settled() -> bool:
            inline_running = sum(1 for name in tracker.threads if name in submitters)
            with lock:
                return len(returned) + inline_running >= len(threads) and tracker.now == size

        assert tracker.wait_for(settled)
        assert tracker.now == size and tracker.max == size
        tracker.gate.set()
        for thread in threads:
            thread.join(WAIT)
        assert tracker.wait_for(lambda: tracker.done == len(threads))
        assert tracker.max == size
    finally:
        tracker.gate.set()
        executor.shutdown(wait=True)


def test_shutdown_waits_for_inline_runs_on_other_threads():
    tracker = Tracker()
    executor = make_executor(2, tracker)
    runner = threading.Thread(target=executor.submit, args=(Message(may_run_inline=True),))
    runner.start()
    assert tracker.wait_for(lambda: tracker.entered == 1)
    finished_first = []

    def shutdown() -> None:
        executor.shutdown(wait=True)
        finished_first.append(tracker.done == 1)

    closer = threading.Thread(target=shutdown)
    closer.start()
    closer.join(0.2)  # give an early return its chance
    tracker.gate.set()
    closer.join(WAIT)
    runner.join(WAIT)
    assert finished_first == [True]
    with pytest.raises(RuntimeError):
        executor.submit(Message(may_run_inline=True))


# -- through a server on gRPC and memory -------------------------------------------------------

class Busy:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def work(self, ctxt):
        return self.tracker.run()

    def thread(self, ctxt):
        return threading.current_thread().name


@pytest.fixture
def two_wires(transport):
    """A server on the memory transport and on a sync-flavour grpc:// transport at once."""
    made = []

    def start(endpoints, pool: int | None = None, flavour: str = "sync"):
        grpc_transport = bridge.get_transport({"grpc": {"server_flavour": flavour}},
                                              "grpc://127.0.0.1:0")
        server = bridge.get_rpc_server([transport, grpc_transport],
                                       bridge.Target(topic="topic", server="s"), endpoints)
        server.start(override_pool_size=pool)
        grpc_client_transport = bridge.get_transport(None, server.addresses[1])
        made.append((server, grpc_transport, grpc_client_transport))
        target = bridge.Target(topic="topic")
        return (server, bridge.get_rpc_client(transport, target, timeout=WAIT),
                bridge.get_rpc_client(grpc_client_transport, target, timeout=WAIT))

    yield start
    for server, grpc_transport, grpc_client_transport in made:
        server.stop()
        server.wait()
        grpc_client_transport.cleanup()
        grpc_transport.cleanup()


def call_in_thread(client, method):
    box: dict = {}

    def run():
        try:
            box["result"] = client.call({}, method)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_pool_size_bounds_grpc_and_memory_calls_together(two_wires):
    tracker = Tracker()
    server, memory_client, grpc_client = two_wires([Busy(tracker)], pool=2)
    try:
        calls = [call_in_thread(grpc_client, "work") for _ in range(4)]
        # The first two gRPC calls find free permits and run on their handler threads.
        assert tracker.wait_for(lambda: tracker.now == 2)
        assert all(name.startswith("bridge-grpc-") for name in tracker.threads)
        calls += [call_in_thread(memory_client, "work") for _ in range(4)]
        # All eight are taken from their wires, and the bound still lets two of them run.
        assert tracker.wait_for(lambda: server.in_flight == len(calls))
        assert tracker.now == 2 and tracker.max == 2
    finally:
        tracker.gate.set()
    for thread, _ in calls:
        thread.join(WAIT)
    assert all("result" in box for _, box in calls), [box for _, box in calls]
    assert tracker.done == len(calls) and tracker.max == 2


def test_grpc_sync_call_runs_on_its_handler_thread_when_a_permit_is_free(two_wires):
    _, memory_client, grpc_client = two_wires([Busy(Tracker())])
    assert grpc_client.call({}, "thread").startswith("bridge-grpc-")
    # The memory listener's thread has other messages to take: never inline.
    assert memory_client.call({}, "thread").startswith("bridge-worker")


def test_grpc_aio_call_never_runs_on_the_event_loop(two_wires):
    _, _, grpc_client = two_wires([Busy(Tracker())], flavour="aio")
    assert grpc_client.call({}, "thread").startswith("bridge-worker")


def test_grpc_call_goes_to_the_pool_when_no_permit_is_free(two_wires):
    tracker = Tracker()
    server, memory_client, grpc_client = two_wires([Busy(tracker)], pool=1)
    held = call_in_thread(memory_client, "work")
    assert tracker.wait_for(lambda: tracker.entered == 1)
    waiting = call_in_thread(grpc_client, "thread")
    assert tracker.wait_for(lambda: server.in_flight == 2)
    tracker.gate.set()
    for thread, _ in (held, waiting):
        thread.join(WAIT)
    assert waiting[1]["result"].startswith("bridge-worker")


def test_wait_after_stop_waits_for_an_inline_grpc_call(two_wires):
    tracker = Tracker()
    server, _, grpc_client = two_wires([Busy(tracker)])
    thread, box = call_in_thread(grpc_client, "work")
    assert tracker.wait_for(lambda: tracker.entered == 1)
    assert tracker.threads[0].startswith("bridge-grpc-")  # it runs inline
    server.stop()
    finished_first = []

    def wait() -> None:
        server.wait()
        finished_first.append(tracker.done == 1)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(0.2)  # give an early return its chance
    tracker.gate.set()
    waiter.join(WAIT)
    thread.join(WAIT)
    assert finished_first == [True]
    assert box.get("result", "").startswith("bridge-grpc-")
    server.start()  # the fixture stops and waits again


def test_a_method_run_inline_may_stop_its_own_server(two_wires):
    class Stopper:
        server = None

        def stop(self, ctxt):
            self.server.stop()
            return threading.current_thread().name

    stopper = Stopper()
    server, _, grpc_client = two_wires([stopper])
    stopper.server = server
    assert grpc_client.call({}, "stop").startswith("bridge-grpc-")
    server.wait()
    assert not server.running
