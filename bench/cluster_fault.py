"""Node stops on a three-node RabbitMQ 4.3 cluster under a steady call load.

    python3 bench/cluster_fault.py [--stops 20] [--threads 4] [--timeout 30]
                                   [--libs bridge,oslo] [--seconds-between 3]

For each library (rpc-bridge, then oslo.messaging 18.3.1, in the same run) it starts two
servers in a child process (each on a transport of its own) and, here, ``--threads``
threads calling ``work(token)`` through one client transport, all configured as
kolla-ansible configures oslo.messaging for RabbitMQ 4.x (quorum queues, transient quorum
queues, stream fanout, the queue manager, a prefetch) with a transport URL naming the
three nodes. ``--stops`` times it stops the node the client is connected to (``rabbitmqctl
stop_app``-like: ``scripts/rabbitmq cluster-node-stop``), measures how long until calls
started after the stop are answered again, starts the node again and waits for the
cluster to have its three nodes back. Every call has a unique token; the servers count
how often each token ran. It then prints, per library:

- sent: calls made;
- answered: calls that returned their token;
- failed clearly: calls that raised an error other than a timeout (the caller knows it
  did not go through);
- lost: calls that timed out (``MessagingTimeout``), split into requests that never ran
  and replies that never came back (the method ran);
- duplicated: tokens that ran more than once;
- recovery: per node stop, the longest time no call was answered, from the stop command
  until a call started after the node was down was answered (mean, max).

Needs the cluster (``scripts/rabbitmq cluster-ensure``; started if not running). The
suite runs a short version (tests/transport/amqp/test_amqp_cluster.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import brokers  # noqa: E402 - after the path set-up
from amqp_support import KOLLA_OPTIONS, Peer, delete_queues, unique  # noqa: E402

#: The options both libraries get: kolla's, with the library's defaults otherwise.
OPTIONS = KOLLA_OPTIONS


def cluster_url(processname: str) -> str:
    return f"{brokers.cluster_urls()}?{OPTIONS}&processname={processname}"


# -- the servers' child process ----------------------------------------------------------------


class Counter:
    """The servers' endpoint: counts each token's executions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, int] = {}

    def work(self, ctxt: Any, token: str) -> str:
        with self.lock:
            self.runs[token] = self.runs.get(token, 0) + 1
        return token


def serve(lib_name: str, url: str, exchange: str, topic: str, count: int) -> None:
    """Run ``count`` servers until stdin closes, then print the executions as JSON."""
    peer = Peer(lib_name, url)
    counter = Counter()
    for n in range(count):
        target = peer.lib.Target(exchange=exchange, topic=topic, server=f"{lib_name}-{n + 1}")
        server = peer.lib.get_rpc_server(peer.transport(), target, [counter],
                                         executor="threading")
        server.start()
        peer.servers.append(server)
    print("ready", flush=True)
    sys.stdin.read()
    with counter.lock:
        runs = dict(counter.runs)
    print(json.dumps(runs), flush=True)
    threading.Thread(target=peer.close, daemon=True).start()
    time.sleep(5)  # let the servers stop if they can; the process ends anyway
    os._exit(0)


# -- the clients and the node stops --------------------------------------------------------------


class Load:
    """``threads`` threads calling ``work`` with fresh tokens, and what became of each call."""

    def __init__(self, client: Any, lib: Any, threads: int) -> None:
        self.client, self.lib = client, lib
        self.lock = threading.Lock()
        self.outcomes: dict[str, tuple[float, float, str]] = {}  # token -> start, end, kind
        self.errors: dict[str, int] = {}
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.is_set():
            token = uuid.uuid4().hex
            started = time.monotonic()
            try:
                kind = "answered" if self.client.call({}, "work", token=token) == token \
                    else "wrong"
            except self.lib.MessagingTimeout:
                kind = "timeout"
            except Exception as exc:
                kind = "failed"
                name = f"{type(exc).__name__}: {str(exc)[:120]}"
                with self.lock:
                    self.errors[name] = self.errors.get(name, 0) + 1
                time.sleep(0.2)  # a failing client does not spin
            with self.lock:
                self.outcomes[token] = (started, time.monotonic(), kind)

    def answered_since(self, moment: float) -> float | None:
        """When the first call started after ``moment`` was answered, if one was."""
        with self.lock:
            ends = [end for start, end, kind in self.outcomes.values()
                    if start >= moment and kind == "answered"]
        return min(ends) if ends else None

    def longest_silence(self, begin: float, end: float) -> float:
        """The longest time between ``begin`` and ``end`` with no call answered."""
        with self.lock:
            ends = sorted(finish for _, finish, kind in self.outcomes.values()
                          if kind == "answered" and begin <= finish <= end)
        moments = [begin, *ends, end]
        return max(b - a for a, b in zip(moments, moments[1:], strict=False))

    def answered(self) -> int:
        with self.lock:
            return sum(1 for *_, kind in self.outcomes.values() if kind == "answered")


def client_node() -> int | None:
    """The cluster node (1..3) this process's client connection is on."""
    for via in (1, 2, 3):
        if not brokers.reachable(brokers.CLUSTER_PORTS[via - 1]):
            continue
        out = brokers.run_script("ctl", str(via), "-q", "list_connections", "port",
                                 "client_properties", "--formatter", "json", timeout=120)
        for connection in json.loads(out):
            properties = {item[0]: item[2] for item in connection["client_properties"]}
            if f":{os.getpid()}:" in str(properties.get("connection_name", "")):
                return brokers.CLUSTER_PORTS.index(int(connection["port"])) + 1
        return None
    return None


def wait_cluster_whole(timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if brokers.cluster_running_nodes(via=1) == list(brokers.CLUSTER_NODES):
                return
        except brokers.BrokerUnavailable:
            pass
        time.sleep(1)
    raise RuntimeError("the cluster did not get its three nodes back")


def run(lib_name: str, stops: int, threads: int = 4, timeout: float = 30.0,
        between: float = 3.0, log: Any = print) -> dict[str, Any]:
    """One library's run; the figures as a dict."""
    brokers.cluster_ensure()
    wait_cluster_whole()
    exchange, topic = unique("cfx"), unique(f"cluster_{lib_name}")
    client_name, server_name = unique(f"cf-{lib_name}-client"), unique(f"cf-{lib_name}-server")
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", lib_name, cluster_url(server_name), exchange,
         topic], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")])))
    peer = Peer(lib_name, cluster_url(client_name))
    recoveries: list[float] = []
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the servers did not start")
        client = peer.client(exchange, topic, timeout=timeout)
        load = Load(client, peer.lib, threads)
        load.start()
        for n in range(stops):
            before = load.answered()
            deadline = time.monotonic() + max(between, 1.0) + 60
            time.sleep(between)
            while load.answered() == before and time.monotonic() < deadline:
                time.sleep(0.2)  # steady traffic before each stop
            node = client_node() or (n % 3) + 1
            stopping = time.monotonic()
            brokers.stop_node(node)
            down = time.monotonic()
            answered_at = None
            limit = down + timeout * 2
            while answered_at is None and time.monotonic() < limit:
                time.sleep(0.1)
                answered_at = load.answered_since(down)
            recovery = (load.longest_silence(stopping, answered_at) if answered_at
                        else float("inf"))
            recoveries.append(recovery)
            log(f"  {lib_name}: stop {n + 1}/{stops}: node {node}, calls answered again "
                f"after {recovery:.1f} s")
            brokers.start_node(node)
            wait_cluster_whole()
        time.sleep(between)
        load.stop(timeout + 10)
    finally:
        runs: dict[str, int] = {}
        try:
            child.stdin.close()
            line = child.stdout.readline()
            runs = json.loads(line) if line.strip() else {}
        finally:
            child.wait(30)
        threading.Thread(target=peer.close, daemon=True).start()
    outcomes = load.outcomes
    kinds = [kind for *_, kind in outcomes.values()]
    lost_requests = sum(1 for token, (*_, kind) in outcomes.items()
                        if kind == "timeout" and not runs.get(token))
    return {
        "lib": lib_name, "stops": stops, "sent": len(outcomes),
        "answered": kinds.count("answered"), "wrong": kinds.count("wrong"),
        "failed_clearly": kinds.count("failed"), "lost": kinds.count("timeout"),
        "lost_requests": lost_requests, "lost_replies": kinds.count("timeout") - lost_requests,
        "duplicated": sum(1 for count in runs.values() if count > 1),
        "ran_unsent": len(set(runs) - set(outcomes)),
        "recovery_mean": statistics.mean(recoveries) if recoveries else 0.0,
        "recovery_max": max(recoveries) if recoveries else 0.0,
        "errors": load.errors, "queues": (exchange, topic, client_name, server_name),
    }


def cleanup(figures: dict[str, Any]) -> None:
    """Delete what a run left on the cluster (its topic queues, stream and named queues)."""
    exchange, topic, client_name, server_name = figures["queues"]
    wait_cluster_whole()
    out = brokers.run_script("ctl", "1", "-q", "list_queues", "name", "--no-table-headers")
    names = [name for name in out.split()
             if name.startswith(topic) or client_name in name or server_name in name]
    delete_queues(names, [exchange, f"{topic}_fanout"], broker=brokers.CLUSTER_PORTS[0])


def report(results: list[dict[str, Any]]) -> str:
    rows = [("", *[r["lib"] for r in results]),
            ("node stops", *[r["stops"] for r in results]),
            ("calls sent", *[r["sent"] for r in results]),
            ("answered", *[r["answered"] for r in results]),
            ("failed with a clear error", *[r["failed_clearly"] for r in results]),
            ("lost (timed out)", *[r["lost"] for r in results]),
            ("  request never ran", *[r["lost_requests"] for r in results]),
            ("  ran, reply lost", *[r["lost_replies"] for r in results]),
            ("duplicated (ran twice)", *[r["duplicated"] for r in results]),
            ("wrong answer", *[r["wrong"] for r in results]),
            ("recovery mean (s)", *[f"{r['recovery_mean']:.1f}" for r in results]),
            ("recovery max (s)", *[f"{r['recovery_max']:.1f}" for r in results])]
    width = max(len(str(cell)) for row in rows for cell in row) + 2
    lines = ["".join(str(cell).ljust(width) for cell in row) for row in rows]
    for r in results:
        for error, count in sorted(r["errors"].items()):
            lines.append(f"{r['lib']} error x{count}: {error}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=4, metavar=("LIB", "URL", "EXCHANGE", "TOPIC"))
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seconds-between", type=float, default=3.0)
    parser.add_argument("--libs", default="bridge,oslo")
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve, count=2)
        return
    results = []
    for lib_name in args.libs.split(","):
        print(f"{lib_name}: {args.stops} node stops, {args.threads} calling threads, "
              f"timeout {args.timeout:.0f} s", flush=True)
        figures = run(lib_name, args.stops, args.threads, args.timeout, args.seconds_between,
                      log=lambda text: print(text, flush=True))
        results.append(figures)
        print(report([figures]), flush=True)  # kept even if a later step fails
        try:
            cleanup(figures)
        except (RuntimeError, brokers.BrokerUnavailable) as exc:
            print(f"cleanup after {lib_name}: {exc}", flush=True)
    print()
    print(report(results))


if __name__ == "__main__":
    main()
