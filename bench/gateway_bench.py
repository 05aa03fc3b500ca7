#!/usr/bin/env python3
"""The gateway path beside a direct oslo.messaging client, against one oslo.messaging server.

    python3 bench/gateway_bench.py [--duration 3] [--repeat 3] [--broker URL]

Processes:

* an oslo.messaging RPC server (threading executor) with an ``echo`` endpoint, on
  RabbitMQ, on a topic of its own;
* an rpc-bridge process: gRPC on 127.0.0.1 and a gateway routing that topic to the
  broker (the path gRPC -> bridge -> AMQP -> oslo server);
* this process, the client of both paths: oslo.messaging's RPCClient from N threads
  (``direct``), and grpc.aio with N calls in flight (``gateway``).

Both paths call the same server with the same small dict, at concurrency 1, 8 and
32, interleaved; each figure is the median of ``--repeat`` runs of ``--duration``
seconds, latencies the p50/p99 of the median run. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from amqp_support import oslo_conf  # noqa: E402 - after the path set-up

BROKER = "rabbit://guest:guest@127.0.0.1:5672/"
PAYLOAD = {"id": 1, "name": "bench", "tags": ["a", "b"], "ratio": 0.5}
CONCURRENCY = (1, 8, 32)


# -- the two server processes --------------------------------------------------------------

def serve_oslo(broker: str, exchange: str, topic: str) -> None:
    import oslo_messaging

    class Echo:
        def echo(self, ctxt, value):
            return value

    transport = oslo_messaging.get_rpc_transport(oslo_conf(), url=broker)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(exchange=exchange, topic=topic, server="oslo-1"),
        [Echo()], executor="threading")
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop()
    server.wait()
    transport.cleanup()


def serve_gateway(broker: str, topic: str, flavour: str = "sync") -> None:
    import bridge
    from bridge.gateway import Forwarder, Route, gateway_server
    from endpoints import default_endpoints

    transport = bridge.get_transport(None, f"grpc://127.0.0.1:0?server_flavour={flavour}")
    local = bridge.get_rpc_server(transport, bridge.Target(topic="bridge", server="bench"),
                                  default_endpoints())
    local.start()
    forwarder = Forwarder([Route(topic=topic, url=broker)])
    gateway = gateway_server([], bridge.Target(topic="gateway", server="bench"), forwarder)
    gateway.start()
    gateway.serve_unrouted(transport)
    print(local.addresses[0].split("://", 1)[1], flush=True)
    sys.stdin.read()
    gateway.stop()
    gateway.wait()
    forwarder.close()
    local.stop()
    local.wait()
    transport.cleanup()


def _spawn(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip()
    if not line:
        raise SystemExit(f"{args[0]} did not start")
    return proc, line


# -- the clients ---------------------------------------------------------------------------

def run_direct(client, concurrency: int, duration: float) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker() -> None:
        mine = []
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            client.call({}, "echo", value=PAYLOAD)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def gateway_request(exchange: str, topic: str) -> bytes:
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import fill_map

    envelope = pb.Envelope(target=pb.Target(topic=topic, exchange=exchange), method="echo")
    fill_map(envelope.args, {"value": PAYLOAD}, "argument")
    return pb.CallRequest(envelope=envelope).SerializeToString()


async def _gateway_calls(address: str, request: bytes, concurrency: int,
                         duration: float) -> list[float]:
    import grpc

    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary("/bridge.v1.Bridge/Call")
        stop_at = time.monotonic() + duration

        async def worker() -> None:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                await call(request, timeout=30)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def summary(latencies: list[float], duration: float) -> dict[str, float]:
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"rate": len(ordered) / duration, "p50": quantile(0.50), "p99": quantile(0.99)}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    rate = statistics.median(run["rate"] for run in runs)
    return min(runs, key=lambda run: abs(run["rate"] - rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker", default=BROKER)
    parser.add_argument("--serve-oslo", nargs=2, metavar=("EXCHANGE", "TOPIC"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--flavour", choices=["sync", "aio"], default="sync",
                        help="the gateway's gRPC server flavour (server_flavour)")
    parser.add_argument("--serve-gateway", metavar="TOPIC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_oslo:
        serve_oslo(args.broker, *args.serve_oslo)
        return
    if args.serve_gateway:
        serve_gateway(args.broker, args.serve_gateway, args.flavour)
        return

    import oslo_messaging

    exchange, topic = f"bench_{uuid.uuid4().hex[:8]}", f"legacy_{uuid.uuid4().hex[:8]}"
    oslo_proc, _ = _spawn("--broker", args.broker, "--serve-oslo", exchange, topic)
    gateway_proc, address = _spawn("--broker", args.broker, "--flavour", args.flavour,
                                   "--serve-gateway", topic)
    transport = oslo_messaging.get_rpc_transport(oslo_conf(), url=args.broker)
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(exchange=exchange, topic=topic), timeout=30)
    request = gateway_request(exchange, topic)
    try:
        client.call({}, "echo", value=PAYLOAD)  # warm both paths up
        asyncio.run(_gateway_calls(address, request, 8, 1.0))
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for concurrency in CONCURRENCY:
                runs = {
                    "direct": lambda c=concurrency: run_direct(client, c, args.duration),
                    "gateway": lambda c=concurrency: asyncio.run(
                        _gateway_calls(address, request, c, args.duration)),
                }
                for path, run in runs.items():
                    results.setdefault((path, concurrency), []).append(
                        summary(run(), args.duration))
    finally:
        transport.cleanup()
        for proc in (gateway_proc, oslo_proc):
            proc.stdin.close()
            proc.wait(30)

    print(f"gRPC -> bridge gateway -> AMQP -> oslo.messaging server, beside oslo.messaging's "
          f"own client; medians of {args.repeat} x {args.duration:g} s")
    print(f"{'concurrency':>11} {'path':>8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ratio':>6}")
    for concurrency in CONCURRENCY:
        direct = median_run(results[("direct", concurrency)])
        for path in ("direct", "gateway"):
            run = median_run(results[(path, concurrency)])
            ratio = run["rate"] / direct["rate"]
            print(f"{concurrency:>11} {path:>8} {run['rate']:>9.0f} {run['p50']:>8.2f} "
                  f"{run['p99']:>8.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
