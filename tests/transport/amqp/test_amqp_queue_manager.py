"""``use_queue_manager``: stable reply and fanout queue names.

oslo.messaging's queue manager names a process's queues ``reply_<hostname>:<processname>:<n>``
and ``<topic>_fanout_<hostname>:<processname>:<n>``; rpc-bridge names them the same way,
and a restarted process (here: killed with SIGKILL, then started again) finds its queues
under the same names instead of leaving one more quorum queue per start to expire.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap

import brokers
import pytest
from amqp_support import Peer, broker_url, delete_queues, list_queues, unique
from serving import ROOT, source_env

from bridge.transport.amqp.options import AmqpOptions
from bridge.transport.amqp.queue_names import QueueNames

B43 = brokers.BROKER43
HOST = socket.gethostname()
QUORUM = "rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true&use_queue_manager=true"

# A process with one server and one client transport that prints its queue names and then
# waits to be killed.
CHILD = textwrap.dedent("""
    import json, sys, threading
    import bridge

    class Endpoint:
        def ping(self, ctxt):
            return "pong"

    url, topic = sys.argv[1], sys.argv[2]
    transport = bridge.get_transport(None, url)
    server = bridge.get_rpc_server(transport, bridge.Target(topic=topic, server="s1"),
                                   [Endpoint()], executor="threading")
    server.start()
    client = bridge.get_rpc_client(transport, bridge.Target(topic=topic), timeout=20)
    assert client.call({}, "ping") == "pong"
    print(json.dumps({"reply": transport.driver.reply_queue,
                      "fanout": server.listeners[0].fanout_queue}), flush=True)
    threading.Event().wait(300)
""")


def test_names_count_up_and_are_reused_once_released(tmp_path):
    options = AmqpOptions(use_queue_manager=True, hostname="h1", processname="p1")
    names = QueueNames(options, directory=tmp_path)
    first, second = names.reply(), names.fanout("topic")
    assert (first.name, second.name) == ("reply_h1:p1:1", "topic_fanout_h1:p1:2")
    first.release()
    assert names.reply().name == "reply_h1:p1:1"  # the lowest number free
    other = QueueNames(AmqpOptions(use_queue_manager=True, hostname="h1", processname="p2"),
                       directory=tmp_path)
    assert other.reply().name == "reply_h1:p2:1"  # counted per hostname:processname
    plain = QueueNames(AmqpOptions(), directory=tmp_path).reply().name
    assert plain.startswith("reply_") and len(plain) == len("reply_") + 32


def test_a_number_held_by_another_process_is_skipped(tmp_path):
    names = QueueNames(AmqpOptions(use_queue_manager=True, hostname="h", processname="p"),
                       directory=tmp_path)
    held = names.reply()
    assert held.name == "reply_h:p:1"
    # Another process holds 2 (a forked worker); this one then takes 3.
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys
            fd = os.open({str(tmp_path / "h_p.2.lock")!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert names.fanout("t").name == "t_fanout_h:p:3"
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert names.fanout("t").name == "t_fanout_h:p:2"  # free again once its holder ended


def _start(url: str, topic: str) -> tuple[subprocess.Popen, dict[str, str]]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, topic], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=source_env(), cwd=str(ROOT))
    line = child.stdout.readline()
    if not line:
        child.kill()
        raise AssertionError(f"the child said nothing: {child.stderr.read()[-2000:]}")
    return child, json.loads(line)


@pytest.mark.broker43
def test_a_restarted_process_reuses_its_queues(broker43_available):
    processname = unique("qm")
    topic = unique("qm")
    url = broker_url(B43, f"{QUORUM}&processname={processname}&hostname={HOST}")
    children: list[subprocess.Popen] = []
    try:
        child, names = _start(url, topic)
        children.append(child)
        assert names == {"reply": f"reply_{HOST}:{processname}:2",
                         "fanout": f"{topic}_fanout_{HOST}:{processname}:1"}
        os.kill(child.pid, signal.SIGKILL)  # a crash: nothing is cleaned up
        child.wait(10)
        child, again = _start(url, topic)
        children.append(child)
        assert again == names
        # A second process of the same name, meanwhile, gets names of its own.
        other, theirs = _start(url, topic)
        children.append(other)
        assert theirs == {"reply": f"reply_{HOST}:{processname}:4",
                          "fanout": f"{topic}_fanout_{HOST}:{processname}:3"}
        ours = sorted(name for name in list_queues(broker=B43) if processname in name)
        assert ours == sorted([*names.values(), *theirs.values()])
        for name in ours:
            assert list_queues(broker=B43)[name]["type"] == "quorum"
    finally:
        for child in children:
            child.kill()
            child.wait(10)
        delete_queues([topic, f"{topic}.s1",
                       *(name for name in list_queues(broker=B43) if processname in name)],
                      [f"{topic}_fanout"], broker=B43)


@pytest.mark.broker43
def test_names_as_oslo_names_them(broker43_available):
    """oslo.messaging and rpc-bridge, each with its own processname, name their queues the
    same way (oslo counts its queues from 1 in a fresh process name, as does the bridge)."""
    exchange, topic = unique("bx"), unique("qmnames")
    made: dict[str, tuple[str, ...]] = {}
    peers, processnames = [], []
    try:
        for kind in ("oslo", "bridge"):
            processname = unique(kind)
            processnames.append(processname)
            peer = Peer(kind, broker_url(B43, f"{QUORUM}&processname={processname}"
                                              f"&hostname={HOST}"))
            peers.append(peer)
            peer.server(exchange, topic, f"{kind}-1", queue.Queue())
            assert peer.client(exchange, topic, timeout=10).prepare(
                server=f"{kind}-1").call({}, "whoami") == f"{kind}-1"
            mine = sorted(name for name in list_queues(broker=B43) if processname in name)
            made[kind] = tuple(name.replace(processname, "P") for name in mine)
        assert made["oslo"] == made["bridge"] == (
            f"{topic}_fanout_{HOST}:P:1", f"reply_{HOST}:P:2")
    finally:
        for peer in peers:
            peer.close()
        left = [name for name in list_queues(broker=B43)
                if any(processname in name for processname in processnames)]
        delete_queues([topic, f"{topic}.oslo-1", f"{topic}.bridge-1", *left],
                      [exchange, f"{topic}_fanout"], broker=B43)
