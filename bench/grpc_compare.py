#!/usr/bin/env python3
"""The gRPC benchmark's servers from two source trees, interleaved run by run.

    git archive main | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python3 bench/grpc_compare.py --before /tmp/before [--payload "small dict"] [--repeat 3]

Starts ``bridge-sync`` from the ``--before`` tree and from this tree with the threading
executor, ``bridge-sync`` from this tree with the blocking executor, and the bare
``bare-sync`` and ``bare-aio`` echoes, then drives them exactly as
``bench/grpc_bench.py`` does (Call at concurrency 8 and 64, CallStream with 64 in
flight), one after the other within each repetition, so that load from other
processes falls on all of them alike. Prints calls/s, p50 latency, server CPU per
call and the bare-aio ratios. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "bench"))
sys.path.insert(0, str(HERE))

import grpc_bench as bench  # noqa: E402 - after the path set-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other source tree (its root)")
    parser.add_argument("--payload", action="append", choices=sorted(bench.PAYLOADS),
                        help="payloads to run (default: all)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    trees = {"before": pathlib.Path(args.before).resolve(), "after": HERE}

    def start(kind: str) -> tuple[subprocess.Popen, str]:
        tree, server_kind, executor = kind.split(":")
        root = trees[tree]
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
        env[bench._EXECUTOR_ENV] = executor
        proc = subprocess.Popen([sys.executable, str(root / "bench" / "grpc_bench.py"),
                                 "--serve", server_kind], cwd=root, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return proc, f"127.0.0.1:{int(proc.stdout.readline())}"

    bench._start = start  # the servers of each tree, from that tree
    kinds = ["before:bridge-sync:threading", "after:bridge-sync:threading",
             "after:bridge-sync:blocking", "after:bare-sync:threading",
             "after:bare-aio:threading"]
    scenarios = []
    for name in args.payload or list(bench.PAYLOADS):
        envelope = bench._envelope(bench.PAYLOADS[name])
        request = b"\x0a" + bench._varint(len(envelope)) + envelope
        scenarios += [(name, request, "call", 8), (name, request, "call", 64),
                      (name, envelope, "stream", bench.STREAM_WINDOW)]
    results = bench.measure(kinds, scenarios, args.duration, args.repeat)
    print(f"bridge-sync before ({trees['before']}) and after ({HERE}); median of "
          f"{args.repeat} x {args.duration:g} s; cpu = server CPU per call; "
          "/aio = over bare-aio (calls/s; calls per CPU-second)")
    print(f"{'payload':12} {'figure':11} {'server':30} {'calls/s':>8} {'p50 ms':>7} "
          f"{'cpu us':>7} {'/aio':>5} {'cpu/aio':>7}")
    for key in results[kinds[0]]:
        aio_rate, _, _, aio_cpu = results["after:bare-aio:threading"][key]
        figure = f"{'Call c' if key[1] == 'call' else 'Stream w'}={key[2]}"
        for kind in kinds:
            rate, p50, _, cpu = results[kind][key]
            print(f"{key[0]:12} {figure:11} {kind:30} {rate:8.0f} {p50 * 1e3:7.2f} "
                  f"{cpu * 1e6:7.0f} {rate / aio_rate:5.2f} {aio_cpu / cpu:7.2f}")
    for kind in kinds[:3]:
        for name in args.payload or list(bench.PAYLOADS):
            stream = results[kind][(name, "stream", bench.STREAM_WINDOW)][0]
            call = results[kind][(name, "call", 64)][0]
            print(f"{kind} CallStream / Call c=64 ({name}): {stream / call:.2f}")


if __name__ == "__main__":
    main()
