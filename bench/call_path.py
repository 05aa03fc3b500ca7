#!/usr/bin/env python3
"""The server's own work per gRPC Call, in CPU time and in instructions.

    python3 bench/call_path.py                       # CPU microseconds per Call
    python3 bench/call_path.py --instructions        # instructions per Call (valgrind)
    python3 bench/call_path.py --instructions --before /tmp/perf-before

It starts an rpc-bridge server (grpc://127.0.0.1:0, sync flavour, the threading executor
and the echo endpoint) and calls its Call handler directly with a stand-in for the gRPC
context: decode, route, executor (an inline run), dispatcher, encode and hand back,
without the network or grpcio's own threads. So it measures only what rpc-bridge adds
to each call.

``--instructions`` runs this script under ``valgrind --tool=callgrind`` twice (0 calls
and ``--calls`` calls) and prints the difference per call: a count that does not move
with the load on the machine, for comparing two trees on a shared machine where
calls/s move by ±30 %. ``--before TREE`` measures another source tree (its root) the
same way, beside this one.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAYLOADS = {
    "small dict": {"id": 1, "name": "bench", "tags": ["a", "b"], "ratio": 0.5},
    "10 KB string": "x" * 10240,
}


class _Context:
    """What the Call handler asks of a grpc.ServicerContext on its success path."""

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple:
        return (("user-agent", "grpc-python/bench"),)  # what a client sends unasked

    def add_callback(self, callback) -> bool:
        return True

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def abort(self, code, message):
        raise RuntimeError(f"{code}: {message}")


def _call_handler(grpc_wire):
    """The sync server's Call handler, in this layout or an older one (``--before``)."""
    try:
        return grpc_wire.servers()[0].call  # the bridge.transport.grpc package
    except AttributeError:  # before: one module, the handler a private method
        return next(iter(grpc_wire._SERVERS.values()))._sync_call


def run_calls(tree: pathlib.Path, payload: str, calls: int, repeat: int) -> float:
    """Run ``calls`` Calls ``repeat`` times in this process; the best CPU seconds per call."""
    sys.path.insert(0, str(tree))
    import logging

    import bridge
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport import grpc as grpc_wire
    try:
        from bridge.transport.grpc.values import fill_map
    except ImportError:  # a tree from before the gRPC driver was a package
        from bridge.grpc_values import fill_map
    from endpoints import EchoEndpoint

    logging.basicConfig(level=logging.ERROR)
    transport = bridge.get_transport(None, "grpc://127.0.0.1:0")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="bench", server="s"),
                                   [EchoEndpoint()])
    server.start()
    try:
        call = _call_handler(grpc_wire)
        envelope = pb.Envelope(target=pb.Target(topic="bench", server="s"), method="echo")
        fill_map(envelope.args, {"value": PAYLOADS[payload]}, "argument")
        request = pb.CallRequest(envelope=envelope).SerializeToString()
        context = _Context()
        if not call(request, context):
            raise SystemExit("the Call handler gave no reply")
        best = float("inf")
        for _ in range(repeat):
            began = time.process_time()
            for _ in range(calls):
                call(request, context)
            best = min(best, (time.process_time() - began) / max(calls, 1))
        return best
    finally:
        server.stop()
        server.wait()


def instructions(tree: pathlib.Path, payload: str, calls: int) -> float:
    """Instructions per Call: callgrind totals of ``calls`` Calls minus those of none."""
    totals = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in (0, calls):
            out = pathlib.Path(scratch, f"callgrind.{count}")
            done = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, __file__, "--one", "--tree", str(tree), "--payload", payload,
                 "--calls", str(count), "--repeat", "1"],
                capture_output=True, text=True, check=False)
            found = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode != 0 or not found:
                raise SystemExit(f"valgrind run failed:\n{done.stderr[-2000:]}")
            totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind instead of timing")
    parser.add_argument("--before", type=pathlib.Path, help="another tree to measure beside")
    parser.add_argument("--tree", type=pathlib.Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--payload", choices=sorted(PAYLOADS), help="one payload (default: all)")
    parser.add_argument("--calls", type=int, default=None,
                        help="calls per run (default: 20000 timed, 1000 under valgrind)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs (the best counts)")
    args = parser.parse_args()
    payloads = [args.payload] if args.payload else list(PAYLOADS)
    if args.one:  # one measurement in this process (what each run below executes)
        seconds = run_calls(args.tree, payloads[0],
                            20000 if args.calls is None else args.calls, args.repeat)
        print(f"{seconds * 1e6:.2f} us per Call")
        return
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on the PATH")
    trees = [("before", args.before.resolve())] if args.before else []
    trees.append(("this tree", ROOT))
    unit = "instructions per Call" if args.instructions else "CPU us per Call (best run)"
    print(f"rpc-bridge's own work per gRPC Call (in-process, no network): {unit}")
    for payload in payloads:
        for name, tree in trees:
            if args.instructions:
                figure = f"{instructions(tree, payload, args.calls or 1000):,.0f}"
            else:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", "--tree", str(tree), "--payload",
                     payload, "--calls", str(args.calls or 20000), "--repeat", str(args.repeat)],
                    capture_output=True, text=True, check=True)
                figure = done.stdout.split()[0]
            print(f"{payload:14s} {name:10s} {figure:>12s}  ({tree})")


if __name__ == "__main__":
    main()
