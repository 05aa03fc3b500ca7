#!/usr/bin/env python3
"""HTTP/JSON calls beside gRPC ``Call`` on the same endpoint, in one run.

    python3 bench/http_bench.py [--duration 2.0] [--repeat 3] [--no-wrk]

One rpc-bridge server runs in a process of its own, serving the echo endpoint on
``grpc://`` (sync flavour) and ``http://`` at once: one dispatcher, one threading
executor. This process is the client of both, in turn, at concurrency 1, 8 and 64:

* ``grpc``: grpc.aio with pre-encoded ``Call`` requests (bench/grpc_bench.py's client);
* ``http``: an asyncio client of its own writing pre-encoded ``POST /v1/call`` requests on
  one keep-alive connection per concurrent caller (no HTTP library in the way);
* ``wrk`` (when ``wrk`` is installed): the same request from wrk (C, a Lua script for
  the POST body), a load generator that is not the bottleneck.

Payloads: a small dict and a 10 KB string, as in bench/grpc_bench.py. Each figure is the
median of ``--repeat`` runs of ``--duration`` seconds, the runs of the wires interleaved;
latencies are the p50/p99 of the median run; the server's CPU time per call is read from
/proc. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from grpc_bench import PAYLOADS, _calls, _cpu_seconds, _quantile, _varint  # noqa: E402

CONCURRENCY = (1, 8, 64)
CONTEXT = {"user": "bench", "request_id": "req-1"}


# -- the server (a subprocess) -------------------------------------------------------------

def serve() -> None:
    """Serve echo on gRPC and HTTP until stdin closes; print both ports first."""
    import logging

    import bridge
    from endpoints import EchoEndpoint

    logging.basicConfig(level=logging.ERROR)
    transports = [bridge.get_transport(None, "grpc://127.0.0.1:0"),
                  bridge.get_transport(None, "http://127.0.0.1:0")]
    server = bridge.get_rpc_server(transports, bridge.Target(topic="bench", server="s"),
                                   [EchoEndpoint()])
    server.start()
    print(" ".join(address.rsplit(":", 1)[1] for address in server.addresses), flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()
    for transport in transports:
        transport.cleanup()


# -- requests ------------------------------------------------------------------------------

def grpc_request(value) -> bytes:
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import fill_map

    env = pb.Envelope(target=pb.Target(topic="bench"), method="echo")
    fill_map(env.args, {"value": value}, "argument")
    fill_map(env.context, CONTEXT, "context")
    data = env.SerializeToString()
    return b"\x0a" + _varint(len(data)) + data


def http_body(value) -> bytes:
    return json.dumps({"target": {"topic": "bench"}, "method": "echo", "context": CONTEXT,
                       "args": {"value": value}}).encode()


def http_request(port: int, body: bytes) -> bytes:
    return (f"POST /v1/call HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def _http_calls(port: int, request: bytes, concurrency: int, duration: float):
    """calls/s and latencies of ``concurrency`` keep-alive connections sending ``request``."""

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected reply: {head[:80]!r}")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        await reader.readexactly(length)

    connections = [await asyncio.open_connection("127.0.0.1", port)
                   for _ in range(concurrency)]
    try:
        for reader, writer in connections:
            for _ in range(20):
                await call(reader, writer)
        latencies: list[float] = []
        stop = time.perf_counter() + duration

        async def worker(reader, writer) -> None:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                await call(reader, writer)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker(r, w) for r, w in connections))
        elapsed = time.perf_counter() - began
    finally:
        for _, writer in connections:
            writer.close()
    return len(latencies) / elapsed, latencies


_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


def _wrk(port: int, body: bytes, concurrency: int, duration: float) -> tuple[float, float, float]:
    """(calls/s, p50 s, p99 s) from wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA.format(body=json.dumps(body.decode())))
    try:
        done = subprocess.run(
            ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
             "--latency", "-s", script.name, f"http://127.0.0.1:{port}/v1/call"],
            capture_output=True, text=True, timeout=duration + 60, check=True)
    finally:
        os.unlink(script.name)
    out = done.stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rate, _wrk_latency(out, "50%"), _wrk_latency(out, "99%")


def _wrk_latency(out: str, quantile: str) -> float:
    match = re.search(rf"^\s+{quantile}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]
    return float(match.group(1)) * scale


# -- the run -------------------------------------------------------------------------------

def measure(duration: float, repeat: int, use_wrk: bool) -> tuple[list, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    grpc_port, http_port = (int(item) for item in proc.stdout.readline().split())
    wires = ["grpc", "http"] + (["wrk"] if use_wrk else [])
    rows = []
    try:
        for name, value in PAYLOADS.items():
            body = http_body(value)
            requests = {"grpc": grpc_request(value), "http": http_request(http_port, body)}
            for level in CONCURRENCY:
                runs: dict[str, list] = {wire: [] for wire in wires}
                for _ in range(repeat):
                    for wire in wires:
                        cpu = _cpu_seconds(proc.pid)
                        if wire == "grpc":
                            rate, lat = asyncio.run(_calls(f"127.0.0.1:{grpc_port}",
                                                           requests["grpc"], level, duration))
                            figures = (rate, _quantile(lat, 0.5), _quantile(lat, 0.99))
                            calls = len(lat)
                        elif wire == "http":
                            rate, lat = asyncio.run(_http_calls(http_port, requests["http"],
                                                                level, duration))
                            figures = (rate, _quantile(lat, 0.5), _quantile(lat, 0.99))
                            calls = len(lat)
                        else:
                            figures = _wrk(http_port, body, level, duration)
                            calls = figures[0] * max(1, round(duration))
                        runs[wire].append((*figures, (_cpu_seconds(proc.pid) - cpu) /
                                           max(1, calls)))
                row = {}
                for wire, items in runs.items():
                    items.sort(key=lambda item: item[0])
                    median = items[len(items) // 2]
                    row[wire] = (statistics.median(item[0] for item in items), median[1],
                                 median[2], statistics.median(item[3] for item in items))
                rows.append((name, level, row))
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return wires, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--no-wrk", action="store_true", help="leave wrk out")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    use_wrk = not args.no_wrk and shutil.which("wrk") is not None
    started = time.monotonic()
    wires, rows = measure(args.duration, args.repeat, use_wrk)
    print(f"HTTP/JSON beside gRPC Call, one bridge server (echo, threading executor), "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, median of {args.repeat} x "
          f"{args.duration:g} s")
    print("calls/s; latency p50/p99 in ms; server CPU per call in us; x grpc: calls/s over "
          "gRPC Call's")
    header = f"{'payload':<12} {'conc':>4}  " + "  ".join(
        f"{wire + ' calls/s':>13} {'p50/p99':>11} {'cpu':>4}" + ("" if wire == "grpc"
                                                                 else f" {'x grpc':>6}")
        for wire in wires)
    print(header)
    print("-" * len(header))
    for name, level, row in rows:
        cells = []
        for wire in wires:
            rate, p50, p99, cpu = row[wire]
            cell = f"{rate:>13.0f} {p50 * 1e3:>5.2f}/{p99 * 1e3:<5.2f} {cpu * 1e6:>4.0f}"
            if wire != "grpc":
                cell += f" {rate / row['grpc'][0]:>6.2f}"
            cells.append(cell)
        print(f"{name:<12} {level:>4}  " + "  ".join(cells))
    print(f"(run took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
