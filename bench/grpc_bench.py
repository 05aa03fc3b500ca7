#!/usr/bin/env python3
"""Throughput and latency of the gRPC wire, beside bare grpcio echo servers.

    python3 bench/grpc_bench.py [--duration 1.0] [--repeat 3] [--executor threading] [--pool N]

Each server runs in a process of its own; this process is the one client for all
of them (grpc.aio, the same pre-encoded requests, the same payloads):

* ``bridge-sync`` and ``bridge-aio``: an rpc-bridge server on grpc:// with each
  ``server_flavour``, the threading executor and the echo endpoint (decode,
  route, executor, dispatcher, encode);
* ``bare-sync``: grpc.server with a thread pool, decoding the request and
  answering the value (no dispatcher);
* ``bare-aio``: the same echo on grpc.aio.

Figures: Call at concurrency 1, 8 and 64, and CallStream with 64 calls in flight
on one stream, for a small dict and a 10 KB string. Each figure is the median of
``--repeat`` runs of ``--duration`` seconds; latencies are the p50/p99 of the
median run. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALL = "/bridge.v1.Bridge/Call"
STREAM = "/bridge.v1.Bridge/CallStream"
PAYLOADS = {
    "small dict": {"id": 1, "name": "bench", "tags": ["a", "b"], "ratio": 0.5},
    "10 KB string": "x" * 10240,
}
CONCURRENCY = (1, 8, 64)
STREAM_WINDOW = 64
_EXECUTOR_ENV = "BRIDGE_BENCH_EXECUTOR"
_POOL_ENV = "BRIDGE_BENCH_POOL"


# -- servers (run as subprocesses) ---------------------------------------------------------

def _echo_handlers():
    import grpc

    from bridge._proto.bridge.v1 import bridge_pb2 as pb

    def call(data, context):
        request = pb.CallRequest.FromString(data)
        return pb.CallResponse(result=request.envelope.args["value"]).SerializeToString()

    def stream(requests, context):
        for data in requests:
            request = pb.StreamRequest.FromString(data)
            yield pb.StreamResponse(id=request.id,
                                    result=request.envelope.args["value"]).SerializeToString()

    async def acall(data, context):
        return call(data, context)

    async def astream(requests, context):
        async for data in requests:
            request = pb.StreamRequest.FromString(data)
            yield pb.StreamResponse(id=request.id,
                                    result=request.envelope.args["value"]).SerializeToString()

    sync = grpc.method_handlers_generic_handler("bridge.v1.Bridge", {
        "Call": grpc.unary_unary_rpc_method_handler(call),
        "CallStream": grpc.stream_stream_rpc_method_handler(stream)})
    aio = grpc.method_handlers_generic_handler("bridge.v1.Bridge", {
        "Call": grpc.unary_unary_rpc_method_handler(acall),
        "CallStream": grpc.stream_stream_rpc_method_handler(astream)})
    return sync, aio


def serve(kind: str) -> None:
    """Serve until stdin closes; print the port first."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    if kind.startswith("bridge-"):
        import logging

        import bridge
        from endpoints import EchoEndpoint

        logging.basicConfig(level=logging.ERROR)
        flavour = kind.split("-", 1)[1]
        transport = bridge.get_transport(None, f"grpc://127.0.0.1:0?server_flavour={flavour}")
        server = bridge.get_rpc_server(transport, bridge.Target(topic="bench", server="s"),
                                       [EchoEndpoint()],
                                       executor=os.environ.get(_EXECUTOR_ENV, "threading"))
        server.start(override_pool_size=int(os.environ.get(_POOL_ENV, "0")) or None)
        print(server.addresses[0].rsplit(":", 1)[1], flush=True)
        sys.stdin.read()
        server.stop()
        server.wait()
        return
    sync_handler, aio_handler = _echo_handlers()
    if kind == "bare-sync":
        server = grpc.server(ThreadPoolExecutor(max_workers=64))
        server.add_generic_rpc_handlers([sync_handler])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(port, flush=True)
        sys.stdin.read()
        server.stop(0)
        return

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([aio_handler])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)),
                         daemon=True).start()
        await done.wait()
        await server.stop(0)

    asyncio.run(main())


# -- the client ----------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _envelope(value) -> bytes:
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import fill_map

    env = pb.Envelope(target=pb.Target(topic="bench"), method="echo")
    fill_map(env.args, {"value": value}, "argument")
    fill_map(env.context, {"user": "bench", "request_id": "req-1"}, "context")
    return env.SerializeToString()


async def _calls(address: str, request: bytes, concurrency: int, duration: float):
    import grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = channel.unary_unary(CALL)
        for _ in range(50):
            await stub(request, timeout=30)
        latencies: list[float] = []
        stop = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                await stub(request, timeout=30)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


async def _stream(address: str, envelope: bytes, window: int, duration: float):
    import grpc

    from bridge._proto.bridge.v1 import bridge_pb2 as pb

    prefix = b"\x12" + _varint(len(envelope)) + envelope
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(STREAM)(timeout=duration + 60)
        sent: dict[int, float] = {}
        latencies: list[float] = []
        slots = asyncio.Semaphore(window)
        stop = time.perf_counter() + duration

        async def write() -> None:
            next_id = 1
            while time.perf_counter() < stop:
                await slots.acquire()
                sent[next_id] = time.perf_counter()
                await call.write(b"\x08" + _varint(next_id) + prefix)
                next_id += 1
            await call.done_writing()

        async def read() -> None:
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    return
                reply = pb.StreamResponse.FromString(data)
                latencies.append(time.perf_counter() - sent.pop(reply.id))
                slots.release()

        began = time.perf_counter()
        await asyncio.gather(write(), read())
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(kind: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, f"127.0.0.1:{int(proc.stdout.readline())}"


def measure(kinds, scenarios, duration: float, repeat: int) -> dict:
    """Run every scenario on every server, interleaved so that load from other
    processes falls on all of them alike. Returns {kind: {scenario: figures}}."""
    servers = {kind: _start(kind) for kind in kinds}
    try:
        results: dict = {kind: {} for kind in kinds}
        for name, payload, mode, level in scenarios:
            runs: dict = {kind: [] for kind in kinds}
            for _ in range(repeat):
                for kind, (proc, address) in servers.items():
                    cpu = _cpu_seconds(proc.pid)
                    if mode == "call":
                        rate, lat = asyncio.run(_calls(address, payload, level, duration))
                    else:
                        rate, lat = asyncio.run(_stream(address, payload, level, duration))
                    cpu_per_call = (_cpu_seconds(proc.pid) - cpu) / max(1, len(lat))
                    runs[kind].append((rate, lat, cpu_per_call))
            for kind, items in runs.items():
                items.sort(key=lambda item: item[0])
                _, lat, _ = items[len(items) // 2]
                results[kind][(name, mode, level)] = (
                    statistics.median(r for r, _, _ in items), _quantile(lat, 0.5),
                    _quantile(lat, 0.99), statistics.median(c for _, _, c in items))
        return results
    finally:
        for proc, _ in servers.values():
            proc.stdin.close()
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--executor", default="threading",
                        help="the bridge server's executor (threading, blocking, asyncio)")
    parser.add_argument("--pool", type=int, default=0,
                        help="the bridge server's pool size (default: executor_thread_pool_size)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    os.environ[_EXECUTOR_ENV] = args.executor
    os.environ[_POOL_ENV] = str(args.pool)
    scenarios = []
    for name, value in PAYLOADS.items():
        envelope = _envelope(value)
        call_request = b"\x0a" + _varint(len(envelope)) + envelope
        for level in CONCURRENCY:
            scenarios.append((name, call_request, "call", level))
        scenarios.append((name, envelope, "stream", STREAM_WINDOW))
    kinds = ("bridge-sync", "bridge-aio", "bare-sync", "bare-aio")
    started = time.monotonic()
    results = measure(kinds, scenarios, args.duration, args.repeat)
    print(f"gRPC wire, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, bridge executor "
          f"{args.executor} (pool {args.pool or 'default'}), median of {args.repeat} x "
          f"{args.duration:g} s")
    print("calls/s per server; bs/aio, ba/aio: calls/s of bridge-sync, bridge-aio over the bare "
          "aio echo;\nlatency p50/p99 in ms; server CPU per call in us; cpu bs, ba: bare-aio CPU "
          "per call over the bridge's (calls per CPU-second, relative)")
    header = (f"{'payload':<12} {'figure':<11} {'br-sync':>7} {'br-aio':>7} {'bare-sync':>9} "
              f"{'bare-aio':>8} {'bs/aio':>6} {'ba/aio':>6}  {'br-sync p50/p99':>15}  "
              f"{'br-aio p50/p99':>14}  {'aio p50/p99':>12}  {'cpu bs/ba/s/a':>15}"
              f"  {'cpu bs':>6} {'cpu ba':>6}")
    print(header)
    print("-" * len(header))
    for name, _, mode, level in scenarios:
        key = (name, mode, level)
        bs, ba, s, a = (results[kind][key] for kind in kinds)
        figure = f"Call c={level}" if mode == "call" else f"Stream w={level}"

        def lat(item) -> str:
            return f"{item[1] * 1e3:.2f}/{item[2] * 1e3:.2f}"

        print(f"{name:<12} {figure:<11} {bs[0]:>7.0f} {ba[0]:>7.0f} {s[0]:>9.0f} {a[0]:>8.0f} "
              f"{bs[0] / a[0]:>6.2f} {ba[0] / a[0]:>6.2f}  {lat(bs):>15}  {lat(ba):>14}  "
              f"{lat(a):>12}  "
              f"{bs[3] * 1e6:>3.0f}/{ba[3] * 1e6:.0f}/{s[3] * 1e6:.0f}/{a[3] * 1e6:.0f}"
              f"  {a[3] / bs[3]:>6.2f} {a[3] / ba[3]:>6.2f}")
    print()
    for kind in kinds[:2]:
        for name in PAYLOADS:
            stream = results[kind][(name, "stream", STREAM_WINDOW)][0]
            call = results[kind][(name, "call", 64)][0]
            print(f"{kind} CallStream / Call c=64 ({name}): {stream / call:.2f}")
    print(f"(run took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
