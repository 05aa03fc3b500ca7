"""AMQP benchmark: oslo.messaging vs rpc-bridge vs raw kombu, on the local RabbitMQ.

    python3 bench/amqp_bench.py [--url rabbit://guest:guest@127.0.0.1:5672/]
                                [--duration 2] [--repeats 3]

Each server runs in a subprocess of its own (so it does not share the client's
GIL); the clients run here. For every pair it measures calls/s with p50/p99 latency
at concurrency 1, 8 and 32 (threads sharing one transport), and casts/s with 8
threads; each figure is the median of ``--repeats`` runs of ``--duration`` s. Each call
line also gives the client's and the server process's CPU time per call.
Pairs: (i) oslo client -> oslo server (threading executor), (ii) oslo client ->
rpc-bridge server, (iii) rpc-bridge client -> rpc-bridge server, and a raw kombu
request/reply echo (one connection and exclusive reply queue per thread, a plain
consumer that publishes the reply) as the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from amqp_support import oslo_conf  # noqa: E402 - after the path set-up
from grpc_bench import _cpu_seconds  # noqa: E402 - bench/ is this script's directory

DEFAULT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
KOMBU_URL = "amqp://guest:guest@127.0.0.1:5672//"
CONCURRENCY = (1, 8, 32)
CAST_THREADS = 8


class Echo:
    def echo(self, ctxt: Any, value: Any) -> Any:
        return value


# -- servers (subprocesses) -----------------------------------------------------------------


def serve(kind: str, url: str, exchange: str, topic: str) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if kind == "raw":
        serve_raw(topic, done)
        return
    if kind == "oslo":
        import oslo_messaging as lib

        transport = lib.get_rpc_transport(oslo_conf(), url=url)
    else:
        import bridge as lib

        transport = lib.get_transport(None, url)
    server = lib.get_rpc_server(transport, lib.Target(exchange=exchange, topic=topic,
                                                      server="bench"), [Echo()],
                                executor="threading")
    server.start()
    print("ready", flush=True)
    done.wait()
    server.stop()
    server.wait()
    transport.cleanup()


def serve_raw(queue_name: str, done: threading.Event) -> None:
    import kombu

    with kombu.Connection(KOMBU_URL) as conn:
        channel = conn.channel()
        producer = kombu.Producer(channel)
        queue = kombu.Queue(queue_name, exchange=kombu.Exchange(""), routing_key=queue_name,
                            durable=False, auto_delete=True)

        def on_message(body: Any, message: Any) -> None:
            props = message.properties
            if "reply_to" not in props:  # a cast
                message.ack()
                return
            producer.publish(body, routing_key=props["reply_to"],
                             correlation_id=props["correlation_id"], serializer="json",
                             delivery_mode=2)
            message.ack()

        with kombu.Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
            print("ready", flush=True)
            while not done.is_set():
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass


# -- clients --------------------------------------------------------------------------------


class RawClient:
    """One kombu connection and exclusive reply queue per calling thread."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.local = threading.local()
        self.connections: list[Any] = []

    def _state(self) -> Any:
        state = getattr(self.local, "state", None)
        if state is None:
            import kombu

            conn = kombu.Connection(KOMBU_URL)
            channel = conn.channel()
            reply = kombu.Queue(f"raw_reply_{uuid.uuid4().hex}", exclusive=True,
                                auto_delete=True)
            results: dict[str, Any] = {}

            def on_reply(body: Any, message: Any) -> None:
                results[message.properties["correlation_id"]] = body

            consumer = kombu.Consumer(channel, [reply], callbacks=[on_reply], no_ack=True,
                                      accept=["json"])
            consumer.consume()
            state = self.local.state = (conn, kombu.Producer(channel), reply.name, results)
            self.connections.append(conn)
        return state

    def call(self, value: Any) -> Any:
        conn, producer, reply_name, results = self._state()
        corr = uuid.uuid4().hex
        producer.publish({"value": value}, routing_key=self.queue_name, reply_to=reply_name,
                         correlation_id=corr, serializer="json", delivery_mode=2)
        while corr not in results:
            conn.drain_events(timeout=10)
        return results.pop(corr)["value"]

    def cast(self, value: Any) -> None:
        _, producer, _, _ = self._state()
        producer.publish({"value": value, "cast": True}, routing_key=self.queue_name,
                         serializer="json", delivery_mode=2)

    def close(self) -> None:
        for conn in self.connections:
            conn.release()


def make_client(kind: str, url: str, exchange: str, topic: str) -> tuple[Any, Any, Any]:
    """(call(value), cast(value), close()) for one client library."""
    if kind == "raw":
        raw = RawClient(topic)
        return raw.call, raw.cast, raw.close
    if kind == "oslo":
        import oslo_messaging as lib

        transport = lib.get_rpc_transport(oslo_conf(), url=url)
    else:
        import bridge as lib

        transport = lib.get_transport(None, url)
    client = lib.get_rpc_client(transport, lib.Target(exchange=exchange, topic=topic),
                                timeout=30)

    def call(value: Any) -> Any:
        return client.call({}, "echo", value=value)

    def cast(value: Any) -> None:
        client.cast({}, "echo", value=value)

    return call, cast, transport.cleanup


def measure(func: Callable[[Any], Any], threads: int, duration: float,
            ) -> tuple[float, float, float, float]:
    """(operations/s, p50 ms, p99 ms, client CPU µs per operation) of ``threads`` threads
    calling ``func`` for ``duration`` s."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start_gate = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(index: int) -> None:
        out = latencies[index]
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            began = time.perf_counter()
            func(index)
            out.append(time.perf_counter() - began)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    stop_at[0] = time.monotonic() + duration
    began, cpu = time.monotonic(), time.process_time()
    start_gate.wait()
    for worker_thread in workers:
        worker_thread.join()
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
    flat = sorted(x for items in latencies for x in items)
    if not flat:
        return 0.0, 0.0, 0.0, 0.0
    p50 = flat[len(flat) // 2] * 1000
    p99 = flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000
    return len(flat) / elapsed, p50, p99, cpu / len(flat) * 1e6


def start_server(kind: str, url: str, exchange: str, topic: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--url", url,
                             "--exchange", exchange, "--topic", topic],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the {kind} server did not start")
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_pair(name: str, client_kind: str, server_kind: str, url: str, duration: float,
             repeats: int) -> dict[str, Any]:
    exchange, topic = f"bench_{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    proc = start_server(server_kind, url, exchange, topic)
    call, cast, close = make_client(client_kind, url, exchange, topic)
    results: dict[str, Any] = {"name": name}
    try:
        for _ in range(20):
            call(0)  # warm-up: connections, reply queue
        for threads in CONCURRENCY:
            measure(lambda i: call(i), threads, min(0.5, duration))
            server_cpu = _cpu_seconds(proc.pid)
            runs = [measure(lambda i: call(i), threads, duration) for _ in range(repeats)]
            calls = sum(r[0] for r in runs) * duration
            server_cpu = (_cpu_seconds(proc.pid) - server_cpu) / max(calls, 1) * 1e6
            rate, p50, p99, cpu = (statistics.median(r[k] for r in runs) for k in range(4))
            results[f"c{threads}"] = (rate, p50, p99, cpu, server_cpu)
            print(f"  {name:<28} c={threads:<3} {rate:9.0f} calls/s  p50 {p50:6.2f} ms  "
                  f"p99 {p99:6.2f} ms  client CPU {cpu:5.0f} us/call  "
                  f"server CPU {server_cpu:5.0f} us/call", flush=True)
        runs = [measure(lambda i: cast(i), CAST_THREADS, duration) for _ in range(repeats)]
        results["casts"] = statistics.median(r[0] for r in runs)
        cast_cpu = statistics.median(r[3] for r in runs)
        print(f"  {name:<28} casts (8 threads) {results['casts']:9.0f} casts/s  "
              f"client CPU {cast_cpu:5.0f} us/cast", flush=True)
        time.sleep(1.0)  # let the server drain the casts before it stops
    finally:
        close()
        stop_server(proc)
        _delete(url, exchange, [topic, f"{topic}.bench"])
    return results


def _delete(url: str, exchange: str, queues: list[str]) -> None:
    import kombu

    with kombu.Connection(KOMBU_URL) as conn:
        channel = conn.channel()
        for name in queues:
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()
        try:
            channel.exchange_delete(exchange)
        except Exception:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", choices=["oslo", "bridge", "raw"])
    parser.add_argument("--exchange", default="openstack")
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.url, args.exchange, args.topic)
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    pairs = [("(i) oslo -> oslo", "oslo", "oslo"), ("(ii) oslo -> bridge", "oslo", "bridge"),
             ("(iii) bridge -> bridge", "bridge", "bridge"), ("raw kombu echo", "raw", "raw")]
    print(f"AMQP benchmark: {args.repeats} x {args.duration:g} s per figure (median), "
          f"{os.cpu_count()} CPUs", flush=True)
    results = [run_pair(name, client, server, args.url, args.duration, args.repeats)
               for name, client, server in pairs]
    oslo, mixed, ours, raw = results
    print("\n| pair | c=1 calls/s (p50/p99 ms) | c=8 calls/s (p50/p99 ms) | "
          "c=32 calls/s (p50/p99 ms) | casts/s |")
    print("|---|---|---|---|---|")
    for item in results:
        cells = [f"{item[f'c{c}'][0]:.0f} ({item[f'c{c}'][1]:.2f}/{item[f'c{c}'][2]:.2f})"
                 for c in CONCURRENCY]
        print(f"| {item['name']} | " + " | ".join(cells) + f" | {item['casts']:.0f} |")
    print("\nRatios (goals in brackets):")
    for c in CONCURRENCY:
        print(f"  c={c:<3} (ii)/(i) {mixed[f'c{c}'][0] / oslo[f'c{c}'][0]:5.2f} [>= 1.3]   "
              f"(iii)/(i) {ours[f'c{c}'][0] / oslo[f'c{c}'][0]:5.2f} [>= 3]   "
              f"(iii)/raw {ours[f'c{c}'][0] / raw[f'c{c}'][0]:5.2f} [>= 0.85 at c=8]")
    print(f"  casts (iii)/(i) {ours['casts'] / oslo['casts']:5.2f} [>= 2]   "
          f"(ii)/(i) {mixed['casts'] / oslo['casts']:5.2f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
