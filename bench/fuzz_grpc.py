#!/usr/bin/env python3
"""Fuzzed envelopes against a live rpc-bridge gRPC server: does every request get one clear
answer, with nothing hung, lost, crashed or leaked?

    python3 bench/fuzz_grpc.py [--requests 20000] [--flavour sync|aio|both] [--seed 1]
                               [--json]

The server runs in a process of its own (``grpc://127.0.0.1:0``, the default endpoints,
``max_concurrent_calls`` 64, ``max_receive_message_length`` 1 MiB). This process sends it
``--requests`` requests per flavour over Call, Cast and CallStream (batches of up to 16 on
one stream), drawn from:

* ``raw``: random bytes;
* ``mutated``: a valid request with bytes flipped, cut, inserted, duplicated or spliced;
* ``limits``: every Value kind at its limits (int64 bounds, big integers of 4,300 and
  4,301 digits, NaN and infinities, long and odd strings, lists and maps nested 32 and 33
  levels, a Value of an unknown kind, many keys, odd CallStream timeouts and ids), whose
  outcome is known;
* ``bombs``: compressed requests that inflate past the size limit.

Each request is counted once as: ``answered`` (a reply that decodes; for ``limits``, the
expected one), ``refused`` (an error status with a clear meaning: the bridge's Failure
detail, or grpc's own size refusal), ``unclear`` (an error without either, or a
``limits`` request answered otherwise than expected), ``lost`` (a CallStream request
that got no response), ``duplicated`` (more than one response), or ``hung`` (no answer
before the client's deadline). Then: whether the server process still runs
(``server crashes``), threads that died of an exception or a per-call timeout that no
longer fires (``dead threads``), and the server's peak RSS against its RSS when idle.
Nothing here asserts: tests/transport/grpc/test_grpc_fuzz.py runs a short version and
checks the figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pathlib
import random
import struct
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALL = "/bridge.v1.Bridge/Call"
CAST = "/bridge.v1.Bridge/Cast"
STREAM = "/bridge.v1.Bridge/CallStream"
#: The client's deadline for one request (or one stream): an answer later is ``hung``.
DEADLINE = 15.0
MAX_RECEIVE = 1024 * 1024
OUTCOMES = ("answered", "refused", "unclear", "lost", "duplicated", "hung")


# -- the server (a child process) ------------------------------------------------------------

class FuzzStats:
    """``fuzz.stats``: what the bench cannot see from outside the server process."""

    target = None  # set in serve()

    def __init__(self, server_ref: list) -> None:
        self.server_ref = server_ref

    def stats(self, ctxt: dict) -> dict:
        import threading as threads

        return {"thread_deaths": THREAD_DEATHS[0], "threads": threads.active_count(),
                "in_flight": self.server_ref[0].in_flight - 1}  # not counting this call


THREAD_DEATHS = [0]


def serve(flavour: str) -> None:
    """Run the server; print its address, then serve until stdin closes."""
    import logging

    import bridge
    from bridge.app.memory import limit_malloc_arenas
    from endpoints import default_endpoints

    logging.basicConfig(level=logging.CRITICAL)
    limit_malloc_arenas()  # as bridge serve does

    def died(args: Any) -> None:
        THREAD_DEATHS[0] += 1

    threading.excepthook = died
    transport = bridge.get_transport(
        {"grpc": {"server_flavour": flavour, "max_concurrent_calls": 64,
                  "max_receive_message_length": MAX_RECEIVE, "shutdown_grace": 1}},
        "grpc://127.0.0.1:0")
    ref: list = []
    FuzzStats.target = bridge.Target(namespace="fuzz")
    server = bridge.get_rpc_server(transport, bridge.Target(topic="topic", server="s"),
                                   [*default_endpoints(), FuzzStats(ref)])
    ref.append(server)
    server.start()
    print(server.addresses[0], flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()


# -- building requests -------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(data: bytes) -> bytes:
    return _varint(len(data)) + data


def _nested(kinds: list[str], leaf: bytes = b"\x18\x02") -> bytes:
    """A Value nesting ``kinds`` (outermost first) around the integer 1, written by hand."""
    data = leaf
    for kind in reversed(kinds):
        if kind == "map":
            data = b"\x3a" + _len(b"\x0a" + _len(b"\x0a\x01k\x12" + _len(data)))
        else:
            data = b"\x32" + _len(b"\x0a" + _len(data))
    return data


class Requests:
    """Draws requests; each is ``(category, rpc, bytes, expected)`` where ``expected`` is
    None (any clear outcome), ``("result", value)`` or ``("error", code name)``."""

    def __init__(self, rng: random.Random) -> None:
        from bridge._proto.bridge.v1 import bridge_pb2 as pb

        self.pb = pb
        self.rng = rng
        self.valid = [self._envelope(method, args) for method, args in (
            ("ping", {}), ("echo", {"value": {"a": [1, 2.5, None, True, "x"]}}),
            ("echo", {"value": "y" * 300}), ("echo_context", {}),
            ("fail", {"message": "boom"}), ("no_such_method", {}))]
        self.limits = list(self._limits())

    def _envelope(self, method: str, args: dict, **target: Any) -> Any:
        from bridge.transport.grpc.values import fill_map

        env = self.pb.Envelope(target=self.pb.Target(topic="topic", **target), method=method)
        fill_map(env.args, args, "argument")
        return env

    def _limits(self):
        """(envelope bytes, expected) at the limits of every Value kind and field."""
        pb = self.pb
        int_cases = [(2**63 - 1, True), (-(2**63), True), (2**63, True), (-(2**63) - 1, True)]
        for value, _ in int_cases:
            yield self._echo_bytes(value), ("result", value)
        for digits, ok in ((4300, True), (4301, False), (40_000, False)):
            text = "9" * digits
            env = self._envelope("echo", {})
            env.args["value"].big_integer_value = text
            yield env.SerializeToString(), (("result", int(text)) if ok
                                            else ("error", "INVALID_ARGUMENT"))
        for text in ("", "12x", "-", "+5", "٣", " 1"):
            env = self._envelope("echo", {})
            env.args["value"].big_integer_value = text
            yield env.SerializeToString(), ("error", "INVALID_ARGUMENT")
        for value in (math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308):
            yield self._echo_bytes(value), ("result", value)
        for value in ("", "\x00", "é" * 1000, "𝄞" * 500, "x" * 500_000):
            yield self._echo_bytes(value), ("result", value)
        # Invalid UTF-8 in a string: protobuf refuses to decode the request.
        raw = self._envelope("echo", {}).SerializeToString()
        yield raw + b"\x32" + _len(b"\x0a\x05value\x12" + _len(b"\x2a\x02\xff\xfe")), (
            "error", "INVALID_ARGUMENT")
        for kinds, ok in ((["map"] * 32, True), (["list"] * 32, True), (["map"] * 33, False),
                          (["list"] * 33, False), (["list"] * 48, False),
                          (["list"] * 60, False), (["map", "list"] * 40, False)):
            value = 1
            for kind in reversed(kinds):
                value = {"k": value} if kind == "map" else [value]
            yield raw + b"\x32" + _len(b"\x0a\x05value\x12" + _len(_nested(kinds))), (
                ("result", value) if ok else ("error", "INVALID_ARGUMENT"))
        for unknown in (b"\x48\x05", b"\x52\x03abc", b"\x28\x01", b"\xf8\xff\xff\xff\x0f\x01"):
            yield raw + b"\x32" + _len(b"\x0a\x05value\x12" + _len(unknown)), (
                "error", "INVALID_ARGUMENT")
        yield self._echo_bytes({f"k{n}": n for n in range(20_000)}), ("result", None)
        yield self._echo_bytes(list(range(50_000))), ("result", None)
        yield self._echo_bytes([None] * 200_000), ("result", None)
        for target, code in (({"topic": ""}, "INVALID_ARGUMENT"),
                             ({"topic": "x" * 100_000}, "NOT_FOUND"),
                             ({"topic": "topic", "fanout": True}, None)):
            env = pb.Envelope(target=pb.Target(**target), method="ping")
            yield env.SerializeToString(), (("error", code) if code else None)
        env = self._envelope("ping", {})
        env.version = "1." + "9" * 5000
        yield env.SerializeToString(), None
        env = self._envelope("ping", {})
        env.namespace = "n" * 100_000
        yield env.SerializeToString(), ("error", "UNIMPLEMENTED")

    def _echo_bytes(self, value: Any) -> bytes:
        return self._envelope("echo", {"value": value}).SerializeToString()

    def draw(self) -> tuple[str, str, bytes, Any, float]:
        """(category, rpc, request bytes, expected, stream timeout)."""
        rng = self.rng
        rpc = rng.choice((CALL, CALL, CAST, STREAM))
        category = rng.choices(("raw", "mutated", "limits", "bombs"), (25, 50, 24, 1))[0]
        expected = None
        timeout = 0.0
        if category == "raw":
            envelope = rng.randbytes(rng.choice((0, 1, 2, 5, 20, 200, 2000)))
            wrapped = False
        elif category == "bombs":
            return category, CALL, b"\x0a" + _len(self._envelope("echo", {}).SerializeToString()
                                               + b"\x32" + _len(b"\x0a\x01v\x12" + _len(
                                                   b"\x2a" + _len(b"\0" * (3 * MAX_RECEIVE))))
                                               ), ("error", "RESOURCE_EXHAUSTED"), 0.0
        elif category == "limits":
            envelope, expected = rng.choice(self.limits)
            wrapped = True
        else:
            envelope = self._mutate(rng.choice(self.valid).SerializeToString())
            wrapped = True
        if rpc == STREAM:
            timeout = rng.choice((0.0, 0.0, 5.0, 1e300, math.inf, math.nan, -1.0, 1e12, 5e-324))
            if category != "raw" or rng.random() < 0.5:
                data = (b"\x08" + _varint(rng.choice((1, 2**64 - 1, rng.getrandbits(64))))
                        + b"\x12" + _len(envelope)
                        + (b"\x19" + struct.pack("<d", timeout) if timeout else b""))
            else:
                data = envelope
            if math.isnan(timeout) or timeout < 0:
                expected = ("error", "INVALID_ARGUMENT")
            elif 0 < timeout < 1:
                expected = None
        else:
            data = b"\x0a" + _len(envelope) if wrapped else envelope
        if rpc == CAST and expected and (expected[0] == "result"
                                         or expected[1] == "UNIMPLEMENTED"):
            expected = ("result", None)  # a cast is accepted before it is dispatched
        return category, rpc, data, expected, timeout

    def _mutate(self, data: bytes) -> bytes:
        rng = self.rng
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            how = rng.randrange(6)
            where = rng.randrange(len(data) + 1)
            if how == 0 and data:  # flip a bit
                index = rng.randrange(len(data))
                data[index] ^= 1 << rng.randrange(8)
            elif how == 1 and data:  # change a byte
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif how == 2:  # cut
                data = data[:where]
            elif how == 3:  # insert
                data[where:where] = rng.randbytes(rng.randint(1, 8))
            elif how == 4 and data:  # duplicate a run
                start = rng.randrange(len(data))
                data[where:where] = data[start:start + rng.randint(1, 16)]
            else:  # splice another valid request in
                other = rng.choice(self.valid).SerializeToString()
                data[where:] = other[rng.randrange(len(other) + 1):]
        return bytes(data)


# -- sending and counting ----------------------------------------------------------------------

class Run:
    """The figures of one run against one server."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.by_category: dict[str, collections.Counter] = collections.defaultdict(
            collections.Counter)
        self.examples: dict[str, str] = {}
        self.sent = 0
        self.lock = threading.Lock()

    def count(self, category: str, outcome: str, note: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            self.by_category[category][outcome] += 1
            if outcome not in ("answered", "refused") and outcome not in self.examples:
                self.examples[outcome] = f"{category}: {note}"[:300]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _judge_error(code: str, details: str, failure: Any, expected: Any) -> tuple[str, str]:
    """(outcome, note) of an error status."""
    if code == "DEADLINE_EXCEEDED" and failure is None:
        return "hung", details
    if expected is not None and expected[0] == "error" and expected[1] != code:
        return "unclear", f"expected {expected[1]}, got {code}: {details}"
    if expected is not None and expected[0] == "result" and code != "RESOURCE_EXHAUSTED":
        return "unclear", f"expected a result, got {code}: {details}"
    if failure is not None or (code == "RESOURCE_EXHAUSTED" and "larger than max" in details):
        return "refused", ""
    return "unclear", f"{code} without a Failure: {details}"


def _failure_of(err: Any) -> Any:
    from bridge.transport.grpc.status import failure_from_metadata

    try:
        return failure_from_metadata(err.trailing_metadata())
    except Exception:
        return None


def send_unary(chan: Any, run: Run, category: str, rpc: str, data: bytes,
               expected: Any) -> None:
    import grpc

    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import from_value

    compression = grpc.Compression.Gzip if category == "bombs" else None
    try:
        reply = chan.unary_unary(rpc)(data, timeout=DEADLINE, compression=compression)
    except grpc.RpcError as err:
        run.count(category, *_judge_error(err.code().name, err.details() or "",
                                          _failure_of(err), expected))
        return
    if rpc == CAST:
        run.count(category, "answered" if expected is None or expected[0] == "result"
                  else "unclear", f"cast accepted, expected {expected}")
        return
    try:
        result = from_value(pb.CallResponse.FromString(reply).result)
    except Exception as exc:
        run.count(category, "unclear", f"undecodable reply: {exc}")
        return
    if expected is None or (expected[0] == "result"
                            and (expected[1] is None or _same(expected[1], result))):
        run.count(category, "answered")
    else:
        run.count(category, "unclear", f"expected {expected}, got {str(result)[:80]}")


def send_stream(chan: Any, run: Run, batch: list) -> None:
    """One CallStream with ``batch``; every request must get exactly one response (counted
    under the category ``stream``: responses cannot be told apart by id, which fuzzed
    requests repeat)."""
    import grpc

    from bridge._proto.bridge.v1 import bridge_pb2 as pb

    got = 0
    try:
        for data in chan.stream_stream(STREAM)(iter([item[2] for item in batch]),
                                               timeout=DEADLINE):
            got += 1
            response = pb.StreamResponse.FromString(data)
            if response.WhichOneof("outcome") != "error":
                run.count("stream", "answered")
            elif response.error.failure.reason:
                run.count("stream", "refused")
            else:
                run.count("stream", "unclear", f"error without a Failure: {response.error}")
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            for _ in range(max(0, len(batch) - got)):
                run.count("stream", "hung", f"stream deadline: {err.details()}")
            return
        for _ in range(max(0, len(batch) - got)):
            run.count("stream", "unclear", f"stream ended: {err.code().name} {err.details()}")
        return
    if got < len(batch):
        for _ in range(len(batch) - got):
            run.count("stream", "lost", f"{len(batch) - got} of {len(batch)} unanswered")
    elif got > len(batch):
        run.count("stream", "duplicated", f"{got} responses to {len(batch)} requests")


# -- the run -------------------------------------------------------------------------------------

def _rss(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def _call_json(chan: Any, method: str, namespace: str | None = None, **args: Any) -> Any:
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import fill_map, from_value

    env = pb.Envelope(target=pb.Target(topic="topic"), method=method)
    if namespace:
        env.namespace = namespace
    fill_map(env.args, args, "argument")
    reply = chan.unary_unary(CALL)(pb.CallRequest(envelope=env).SerializeToString(),
                                   timeout=DEADLINE)
    return from_value(pb.CallResponse.FromString(reply).result)


def _timer_alive(chan: Any) -> bool:
    """A CallStream call with a short timeout still ends with DEADLINE_EXCEEDED."""
    from bridge._proto.bridge.v1 import bridge_pb2 as pb
    from bridge.transport.grpc.values import fill_map

    env = pb.Envelope(target=pb.Target(topic="topic"), method="sleep")
    fill_map(env.args, {"seconds": 3.0}, "argument")
    request = pb.StreamRequest(id=1, envelope=env, timeout=0.2).SerializeToString()
    began = time.monotonic()
    (data,) = list(chan.stream_stream(STREAM)(iter([request]), timeout=DEADLINE))
    response = pb.StreamResponse.FromString(data)
    return (response.error.failure.reason == pb.Failure.REASON_DEADLINE_EXCEEDED
            and time.monotonic() - began < 2.5)


def run_one(flavour: str, requests: int, seed: int, workers: int = 8) -> dict[str, Any]:
    import grpc

    proc = subprocess.Popen([sys.executable, __file__, "--serve", flavour],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT))
    address = proc.stdout.readline().strip().split("://", 1)[1]
    chan = grpc.insecure_channel(address, [("grpc.max_receive_message_length", -1),
                                           ("grpc.max_send_message_length", -1)])
    try:
        for _ in range(20):  # warm up, then the idle figure
            _call_json(chan, "ping")
        idle = _rss(proc.pid)["VmRSS"]
        run = Run()
        source = Requests(random.Random(seed))
        draws = [source.draw() for _ in range(requests)]
        jobs: list = []  # ("unary", draw) or ("stream", [draws])
        for item in draws:
            if item[1] != STREAM:
                jobs.append(("unary", item))
            elif jobs and jobs[-1][0] == "stream" and len(jobs[-1][1]) < 16:
                jobs[-1][1].append(item)
            else:
                jobs.append(("stream", [item]))
        began = time.monotonic()
        lock = threading.Lock()
        queue_index = [0]

        def worker() -> None:
            while True:
                with lock:
                    if queue_index[0] >= len(jobs):
                        return
                    kind, job = jobs[queue_index[0]]
                    queue_index[0] += 1
                try:
                    if kind == "stream":
                        send_stream(chan, run, job)
                    else:
                        send_unary(chan, run, job[0], job[1], job[2], job[3])
                except Exception as exc:  # a defect of this bench, counted as unclear
                    run.count("bench", "unclear", f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - began
        run.sent = sum(len(job) if kind == "stream" else 1 for kind, job in jobs)
        crashed = proc.poll() is not None
        stats: dict[str, Any] = {}
        timer_ok = False
        if not crashed:
            stats = _call_json(chan, "stats", namespace="fuzz")
            timer_ok = _timer_alive(chan)
            memory = _rss(proc.pid)
        else:
            memory = {"VmRSS": 0, "VmHWM": 0}
    finally:
        chan.close()
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(30)
    return {
        "flavour": flavour, "requests sent": run.sent, "seconds": round(seconds, 1),
        **{outcome: run.counts[outcome] for outcome in OUTCOMES},
        "server crashes": int(crashed),
        "dead threads": stats.get("thread_deaths", 0) + (0 if timer_ok else 1),
        "in flight after": stats.get("in_flight"),
        "idle RSS MiB": round(idle / 1024, 1), "peak RSS MiB": round(memory["VmHWM"] / 1024, 1),
        "by category": {key: dict(value) for key, value in sorted(run.by_category.items())},
        "examples": run.examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per flavour")
    parser.add_argument("--flavour", choices=("sync", "aio", "both"), default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    flavours = ("sync", "aio") if args.flavour == "both" else (args.flavour,)
    results = [run_one(flavour, args.requests, args.seed) for flavour in flavours]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for result in results:
        print(f"gRPC fuzz, server_flavour={result['flavour']}: {result['requests sent']} "
              f"requests in {result['seconds']} s")
        for key in ("answered", "refused", "unclear", "lost", "duplicated", "hung",
                    "server crashes", "dead threads", "in flight after"):
            print(f"  {key:16s} {result[key]}")
        print(f"  {'RSS':16s} {result['idle RSS MiB']} MiB idle, "
              f"{result['peak RSS MiB']} MiB peak")
        for category, counts in result["by category"].items():
            print(f"    {category:8s} {counts}")
        for outcome, example in result["examples"].items():
            print(f"  first {outcome}: {example}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
