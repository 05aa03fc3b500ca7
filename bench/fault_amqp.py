"""Fault and fuzz runner for the AMQP wire: rpc-bridge's server beside oslo.messaging's.

    python3 bench/fault_amqp.py [--closes 20] [--fuzz 20000] [--broker 3.10|4.3]
                                [--seed 1] [--json]

Two runs, each against an rpc-bridge server and an oslo.messaging server (threading
executor) at once, each server in a process of its own, in a virtual host of the run's
own (so closing its connections touches no one else):

(a) ``--closes`` N: every client's and server's connection closed N times
    (``rabbitmqctl close_all_connections -p <vhost>``) under a steady load of calls and
    casts, each side by its own library's client;
(c) ``--fuzz`` M: M malformed requests (tests/amqp_fuzz.py: mutations of a valid call,
    a few compression bombs among them) published raw to each server, ``--batch`` at a
    time (the next batch once this one's replies came, or none came for 2 s).

For each run and side it prints: requests sent; answered correctly; refused with a
clear error (a failure reply naming its class and reason); dropped (a cast the server
did not run because the broker delivered it again and its first delivery may have run:
at most once, one log line each); lost (a caller left without an answer: a call timed
out, a cast never ran and was not dropped so, a request naming its reply queue never
answered); duplicated (run more than once, or answered more than once); hung (a call
still waiting at the end, or a server whose stop()+wait() did not return); server
crashes (the process died, or stopped answering); the server's peak RSS beside its
RSS when idle.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import amqp.exceptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from amqp_fuzz import NO_VALUE, inner_call, mutate, same  # noqa: E402 - after the path set-up
from amqp_support import FAST_RECONNECT, RawWire, oslo_conf  # noqa: E402

SIDES = ("bridge", "oslo")
CALL_THREADS = 4
CALL_TIMEOUT = 10.0
FIELDS = ("sent", "correct", "refused", "dropped", "lost", "duplicated", "hung", "crashes")


class DroppedCasts(logging.Handler):
    """Counts the server's "Refused a cast" lines: casts not run again (at most once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Refused a cast of"):
            self.count += 1


# -- the servers (subprocesses) ---------------------------------------------------------------


class Endpoint:
    """``work`` counts each token's runs; ``echo`` returns its value."""

    def __init__(self) -> None:
        self.runs: Counter = Counter()
        self.lock = threading.Lock()

    def work(self, ctxt: Any, token: str) -> str:
        with self.lock:
            self.runs[token] += 1
        return token

    def echo(self, ctxt: Any, value: Any) -> Any:
        return value


def serve(kind: str, url: str, exchange: str, topic: str) -> None:
    """Serve until SIGTERM; then print the runs and whether stop()+wait() returned."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if kind == "oslo":
        import oslo_messaging as lib

        transport = lib.get_rpc_transport(oslo_conf(), url=url)
    else:
        import bridge as lib

        transport = lib.get_transport(None, url)
    dropped = DroppedCasts()
    logging.getLogger("bridge").addHandler(dropped)
    endpoint = Endpoint()
    server = lib.get_rpc_server(transport, lib.Target(exchange=exchange, topic=topic,
                                                      server="fault"), [endpoint],
                                executor="threading")
    server.start()
    print("ready", flush=True)
    done.wait()
    server.stop()
    waiter = threading.Thread(target=server.wait, daemon=True)
    waiter.start()
    waiter.join(60)
    with endpoint.lock:
        runs = dict(endpoint.runs)
    print(json.dumps({"runs": runs, "wait_returned": not waiter.is_alive(),
                      "dropped_casts": dropped.count}), flush=True)
    if not waiter.is_alive():
        transport.cleanup()
    os._exit(0)


class Server:
    """A server subprocess: its RSS, whether it is alive, its final report."""

    def __init__(self, kind: str, url: str, exchange: str, topic: str) -> None:
        self.kind = kind
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, "--url", url, "--exchange", exchange,
             "--topic", topic], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        if not ready or self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the {kind} server did not start")
        self.idle_rss = 0

    def memory(self, field: str) -> int:
        """VmRSS or VmHWM (peak) in bytes; 0 once the process is gone."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def finish(self) -> tuple[dict[str, Any], bool, bool, int]:
        """Stop it: ``(report, crashed, hung, peak RSS)``; the report has ``runs`` (token
        -> times run) and ``dropped_casts``."""
        crashed = self.proc.poll() is not None
        peak = self.memory("VmHWM")
        if crashed:
            return {}, True, False, peak
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {}, False, True, peak
        report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        return report, not report, not report.get("wait_returned", False), peak


# -- the broker and its virtual host -------------------------------------------------------------


class Broker:
    def __init__(self, version: str) -> None:
        self.version = version
        self.port = 5672 if version == "3.10" else 5673
        self.ctl = (["rabbitmqctl"] if version == "3.10"
                    else [str(ROOT / "scripts" / "rabbitmq"), "ctl", "single"])
        self.vhost = f"fault_{uuid.uuid4().hex[:8]}"

    def rabbitmqctl(self, *args: str) -> None:
        subprocess.run([*self.ctl, *args], check=True, capture_output=True, timeout=120)

    def __enter__(self) -> Broker:
        self.rabbitmqctl("add_vhost", self.vhost)
        self.rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: Any) -> None:
        for _ in range(10):  # the broker may be restarting (a shared broker)
            try:
                self.rabbitmqctl("delete_vhost", self.vhost)
                return
            except subprocess.CalledProcessError:
                time.sleep(3)

    def restarts(self) -> int:
        """How many times the broker started so far (its log says), to tell a run that a
        restart of a shared broker by someone else cut across it."""
        log = Path("/var/log/rabbitmq/rabbit@localhost.log")
        if self.version != "3.10":
            return 0
        try:
            return log.read_text(errors="replace").count("RabbitMQ is asked to start")
        except OSError:
            return -1

    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/{self.vhost}?{FAST_RECONNECT}"

    def kombu_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{self.vhost}"

    def close_connections(self) -> None:
        self.rabbitmqctl("close_all_connections", "-p", self.vhost, "fault")


def _client(kind: str, url: str, exchange: str, topic: str) -> tuple[Any, Any]:
    if kind == "oslo":
        import oslo_messaging as lib

        transport = lib.get_rpc_transport(oslo_conf(), url=url)
    else:
        import bridge as lib

        transport = lib.get_transport(None, url)
    client = lib.get_rpc_client(transport, lib.Target(exchange=exchange, topic=topic),
                                timeout=CALL_TIMEOUT)
    return client, transport


# -- (a) connection closes under load -----------------------------------------------------------


class Load:
    """Calls (``CALL_THREADS`` threads) and casts (one thread) from one side's client."""

    def __init__(self, kind: str, url: str, exchange: str, topic: str) -> None:
        self.kind = kind
        self.client, self.transport = _client(kind, url, exchange, topic)
        self.stop = threading.Event()
        self.calls: dict[str, str] = {}  # token -> outcome
        self.casts: dict[str, str] = {}
        self.threads = [threading.Thread(target=self._calls, args=(n,), daemon=True)
                        for n in range(CALL_THREADS)]
        self.threads.append(threading.Thread(target=self._casts, daemon=True))

    def _calls(self, n: int) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            token = f"{self.kind}-c{n}-{i}"
            self.calls[token] = "waiting"
            try:
                result = self.client.call({}, "work", token=token)
                self.calls[token] = "correct" if result == token else "wrong"
            except Exception as exc:  # noqa: BLE001 - every outcome is counted
                self.calls[token] = "lost" if "Timeout" in type(exc).__name__ else (
                    "refused" if str(exc) else "unclear")

    def _casts(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            token = f"{self.kind}-k{i}"
            try:
                self.client.cast({}, "work", token=token)
                self.casts[token] = "sent"
            except Exception:  # noqa: BLE001
                self.casts[token] = "refused"
            time.sleep(0.005)

    def figures(self, runs: dict[str, int]) -> Counter:
        figures: Counter = Counter()
        for token, outcome in list(self.calls.items()) + list(self.casts.items()):
            figures["sent"] += 1
            ran = runs.get(token, 0)
            if ran > 1:
                figures["duplicated"] += 1
            if outcome == "waiting":
                figures["hung"] += 1
            elif outcome == "sent":  # a cast: run once, or lost (or duplicated, above)
                if ran <= 1:
                    figures["correct" if ran == 1 else "lost"] += 1
                    figures["lost_casts"] += ran == 0
            elif outcome in ("correct", "refused", "lost"):
                figures[outcome] += 1
            else:
                figures["unclear"] += 1
        return figures


def run_closes(broker: Broker, closes: int, interval: float, sides: list[str],
               ) -> dict[str, dict[str, Any]]:
    exchange, topic = "fault", f"closes_{uuid.uuid4().hex[:8]}"
    servers = {kind: Server(kind, broker.url(), exchange, f"{topic}_{kind}") for kind in sides}
    loads = {kind: Load(kind, broker.url(), exchange, f"{topic}_{kind}") for kind in sides}
    for kind in sides:
        assert loads[kind].client.call({}, "echo", value=1) == 1  # connected, warm
        servers[kind].idle_rss = servers[kind].memory("VmRSS")
    print("  load started", flush=True)
    for load in loads.values():
        for thread in load.threads:
            thread.start()
    for n in range(closes):
        time.sleep(interval)
        broker.close_connections()
        print(f"  close {n + 1}/{closes}", flush=True)
    time.sleep(interval)
    for load in loads.values():
        load.stop.set()
    deadline = time.monotonic() + CALL_TIMEOUT + 30
    for load in loads.values():
        for thread in load.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
    time.sleep(2)  # the last casts reach their server
    print("  load stopped", flush=True)
    return {kind: _side(servers[kind], loads[kind]) for kind in sides}


def _side(server: Server, load: Load) -> dict[str, Any]:
    """One side's figures once its load stopped: is it still serving, what did it run."""
    try:
        alive = load.client.call({}, "echo", value="alive") == "alive"
    except Exception:  # noqa: BLE001
        alive = False
    report, crashed, hung, peak = server.finish()
    figures = load.figures(report.get("runs", {}))
    # Casts that never ran, as many as the server dropped as redelivered: dropped.
    figures["dropped"] = min(figures["lost_casts"], report.get("dropped_casts", 0))
    figures["lost"] -= figures["dropped"]
    figures["crashes"] += int(crashed or not alive)
    figures["hung"] += int(hung)
    load.transport.cleanup()
    return {**{name: figures.get(name, 0) for name in FIELDS},
            "unclear": figures.get("unclear", 0) + figures.get("wrong", 0),
            "idle_rss": server.idle_rss, "peak_rss": peak}


# -- (c) fuzzed requests ---------------------------------------------------------------------


def run_fuzz(broker: Broker, count: int, seed: int, sides: list[str], batch: int,
             ) -> dict[str, dict[str, Any]]:
    results = {}
    for kind in sides:
        for attempt in range(5):
            started = broker.restarts()
            try:
                results[kind] = _fuzz_side(broker, kind, count, seed, batch)
            except (OSError, amqp.exceptions.AMQPError) as exc:
                print(f"  {kind}: the run broke ({exc!r})", flush=True)
            if broker.restarts() == started and kind in results:
                print(f"  {kind}: {results[kind]}", flush=True)
                break
            print(f"  {kind}: the broker restarted during attempt {attempt + 1} (someone "
                  "else's doing): again", flush=True)
            time.sleep(10)
    return results


def _fuzz_side(broker: Broker, kind: str, count: int, seed: int, batch: int,
               ) -> dict[str, Any]:
    """M fuzzed requests to one side's server, ``batch`` at a time."""
    exchange, topic = "fault", f"fuzz_{kind}_{uuid.uuid4().hex[:8]}"
    server = Server(kind, broker.url(), exchange, topic)
    wire = RawWire(broker.kombu_url())
    try:
        first = f"warm-{uuid.uuid4().hex}"
        wire.publish(exchange, topic, wire.envelope(inner_call(first, wire.reply_q, 1)))
        wire.wait_replies([first])
        server.idle_rss = server.memory("VmRSS")
        rnd, used = random.Random(seed), []
        cases = []
        for start in range(0, count, batch):
            sent = [mutate(rnd, wire.reply_q, index, used, bomb_rate=0.001,
                           bomb_size=64 << 20)
                    for index in range(start, min(count, start + batch))]
            for case in sent:
                wire.publish(exchange, topic, case.body, content_type=case.content_type,
                             headers=case.headers, **case.properties)
            cases += sent
            _wait_quiet(wire, [c.msg_id for c in sent if c.reply is True], quiet=2)
        _wait_quiet(wire, [c.msg_id for c in cases if c.reply is True])
        last = f"last-{uuid.uuid4().hex}"
        wire.publish(exchange, topic, wire.envelope(inner_call(last, wire.reply_q, "last")))
        alive = wire.wait_replies([last], 60)
        _wait_quiet(wire, [], quiet=3)
        figures = _fuzz_figures(cases, wire.replies)
        _, crashed, hung, peak = server.finish()
        figures["crashes"] += int(crashed or not alive)
        figures["hung"] += int(hung)
        return {**{name: figures.get(name, 0) for name in FIELDS},
                "unclear": figures["unclear"] + figures["wrong"],
                "no_reply_due": figures["no_reply_due"],
                "idle_rss": server.idle_rss, "peak_rss": peak,
                "lost_by_mutation": dict(figures["lost_by"]),
                "duplicated_by_mutation": dict(figures["duplicated_by"])}
    finally:
        wire.close()
        if server.proc.poll() is None:
            server.proc.kill()


def _wait_quiet(wire: RawWire, due: list[str], quiet: float = 15.0, limit: float = 600) -> None:
    """Read replies until every one ``due`` came, or none came for ``quiet`` s."""
    last_change, end = time.monotonic(), time.monotonic() + limit
    while time.monotonic() < end:
        if wire.read_replies():
            last_change = time.monotonic()
        if all(msg_id in wire.replies for msg_id in due):
            return
        if time.monotonic() - last_change > quiet:
            return
        time.sleep(0.1)


def _fuzz_figures(cases: list, replies: dict[str, list[dict]]) -> Counter:
    figures: Counter = Counter()
    figures["lost_by"] = Counter()
    figures["duplicated_by"] = Counter()
    for case in cases:
        figures["sent"] += 1
        got = replies.get(case.msg_id, [])
        if len(got) > 1:
            figures["duplicated"] += 1
            figures["duplicated_by"][case.mutation] += 1
        if not got:
            if case.reply is True:
                figures["lost"] += 1
                figures["lost_by"][case.mutation] += 1
            else:
                figures["no_reply_due"] += 1
            continue
        reply = got[0]
        if reply.get("failure") is None:
            ok = case.value is NO_VALUE or same(reply.get("result"), case.value)
            figures["correct" if ok else "wrong"] += 1
        else:
            try:
                failure = json.loads(reply["failure"])
                clear = bool(failure.get("class") and failure.get("message"))
            except (TypeError, ValueError, AttributeError):
                clear = False
            wrong = case.value is not NO_VALUE  # a valid call refused
            figures["wrong" if wrong else "refused" if clear else "unclear"] += 1
    return figures


# -- report ---------------------------------------------------------------------------------------


def _table(title: str, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print("| server | " + " | ".join(FIELDS) + " | peak RSS / idle |")
    print("|---" * (len(FIELDS) + 2) + "|")
    for kind, row in results.items():
        name = "rpc-bridge" if kind == "bridge" else "oslo.messaging 18.3.1"
        peak, idle = row["peak_rss"] / 2**20, max(row["idle_rss"], 1) / 2**20
        extra = {k: v for k, v in row.items() if k not in FIELDS and not k.endswith("_rss")
                 and v}
        print(f"| {name} | " + " | ".join(str(row[f]) for f in FIELDS)
              + f" | {peak:.0f} MB / {idle:.0f} MB ({peak / idle:.2f}x) |"
              + (f" {extra}" if extra else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closes", type=int, default=20, help="connection closes (a)")
    parser.add_argument("--interval", type=float, default=3.0,
                        help="seconds of load between two closes")
    parser.add_argument("--fuzz", type=int, default=20000, help="fuzzed requests (c)")
    parser.add_argument("--broker", choices=["3.10", "4.3"], default="3.10")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500,
                        help="fuzzed requests published before their replies are awaited")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES),
                        help="the servers to run (both by default)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--exchange", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.url, args.exchange, args.topic)
        return
    logging.basicConfig(level=logging.CRITICAL)
    results: dict[str, Any] = {}
    with Broker(args.broker) as broker:
        print(f"RabbitMQ {args.broker}, virtual host {broker.vhost}", flush=True)
        if args.closes:
            print(f"(a) {args.closes} connection closes under load", flush=True)
            started = broker.restarts()
            results["closes"] = run_closes(broker, args.closes, args.interval, args.sides)
            _table(f"(a) {args.closes} connection closes under load", results["closes"])
            if broker.restarts() != started:
                print("The broker was restarted during (a) (by someone else): run it again.")
                results["interrupted"] = True
        if args.fuzz:
            print(f"(c) {args.fuzz} fuzzed requests", flush=True)
            results["fuzz"] = run_fuzz(broker, args.fuzz, args.seed, args.sides, args.batch)
            _table(f"(c) {args.fuzz} fuzzed requests", results["fuzz"])
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
