#!/usr/bin/env python3
"""SIGTERM under load: ``bridge serve`` with gRPC and AMQP, stopped while both carry calls.

    python3 bench/fault_sigterm.py                 # 20 rounds
    python3 bench/fault_sigterm.py --rounds 3 --seconds 1

Each round starts ``bridge serve`` (gRPC on a free port, AMQP on the local RabbitMQ,
a topic of its own, the ledger endpoint of bench/ledger.py), loads it from both wires
(callers in threads, each call with a unique id and a short sleep, casts beside), sends
SIGTERM in the middle of the load, keeps calling for a moment to see what a caller of a
stopping server gets, then waits for the process to exit. Per wire it prints:

* calls: calls made (casts are counted beside: made, and how many ran);
* answered: calls that returned their own id;
* refused: calls that failed with a clear error (gRPC UNAVAILABLE from the stopping
  server or the closed port, an AMQP call that timed out while no server was there and
  never ran);
* lost: calls that ran (they are in the ledger) but whose caller got no result;
* duplicated: ids that ran more than once (calls and casts);
* hung: calls still blocked 10 s past their timeout;
* crashes: rounds whose process exited with a code other than 0 or printed a traceback;
* peak RSS of the server beside its idle RSS (after start, before load).

Goals (docs/reliability.md): 0 lost, 0 duplicated, 0 hung, 0 crashes, peak under 2x idle.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ledger import read_ledger  # noqa: E402

import bridge  # noqa: E402

BROKER = os.environ.get("BRIDGE_BENCH_BROKER", "rabbit://guest:guest@127.0.0.1:5672/")
WIRES = ("grpc", "amqp")


@dataclass
class Tally:
    """What the callers of one wire saw in one round."""

    sent: int = 0  # calls
    casts_sent: int = 0
    answered: int = 0
    refused: int = 0
    failed_other: list[str] = field(default_factory=list)
    hung: int = 0
    casts: list[str] = field(default_factory=list)
    #: id -> "ok" | "refused" | "error"
    outcomes: dict[str, str] = field(default_factory=dict)


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """One ``bridge serve`` process for a round."""

    def __init__(self, topic: str, ledger: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "bench")])
        env["BRIDGE_LEDGER"] = ledger
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--grpc-url", "grpc://127.0.0.1:0",
             "--amqp-url", BROKER, "--topic", topic, "--server", "s1",
             "--endpoint", "ledger:LedgerEndpoint", "--no-default-endpoints",
             "--grace-period", "20", "--log-level", "WARNING"],
            cwd=str(ROOT / "bench"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.grpc_url = ""
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("bridge: listening on grpc://"):
                self.grpc_url = line.split("listening on ", 1)[1].strip().split()[0]
            if line.startswith("bridge: ready") or time.monotonic() > deadline:
                break
        if not self.grpc_url:
            self.proc.kill()
            raise SystemExit(f"bridge serve did not start: {''.join(self.stderr[-20:])}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.idle_kb = _rss_kb(self.proc.pid)
        self.peak_kb = self.idle_kb
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _sample(self) -> None:
        while self._sampling and self.proc.poll() is None:
            self.peak_kb = max(self.peak_kb, _rss_kb(self.proc.pid))
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        self._sampling = False
        return code


def _caller(wire: str, transport: Any, topic: str, tally: Tally, lock: threading.Lock,
            stop: threading.Event, timeout: float, sleep: float) -> None:
    client = bridge.get_rpc_client(transport, bridge.Target(topic=topic), timeout=timeout,
                                   retry=0)
    while not stop.is_set():
        call_id = f"{wire}-{uuid.uuid4().hex}"
        with lock:
            tally.sent += 1
        try:
            result = client.call({}, "record", id=call_id, seconds=sleep)
            outcome = "ok" if result == call_id else "error"
        except (bridge.MessagingTimeout, bridge.MessageDeliveryFailure):
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - every other failure is reported
            outcome = "error"
            with lock:
                tally.failed_other.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        with lock:
            tally.outcomes[call_id] = outcome
        if outcome == "refused":
            time.sleep(0.05)  # a stopping server: do not spin
        cast_id = f"{wire}-cast-{uuid.uuid4().hex}"
        try:
            client.cast({}, "record", id=cast_id)
            with lock:
                tally.casts.append(cast_id)
        except Exception:  # noqa: BLE001 - a refused cast is fine; it never ran
            pass
        with lock:
            tally.casts_sent += 1


def one_round(seconds: float, callers: int, timeout: float, sleep: float) -> dict[str, Any]:
    topic = f"fault_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as scratch:
        ledger = os.path.join(scratch, "ledger")
        server = Server(topic, ledger)
        transports = {"grpc": bridge.get_transport(None, server.grpc_url),
                      "amqp": bridge.get_transport(None, BROKER)}
        tallies = {wire: Tally() for wire in WIRES}
        lock = threading.Lock()
        stop = threading.Event()
        threads = [threading.Thread(target=_caller, args=(wire, transports[wire], topic,
                                                          tallies[wire], lock, stop, timeout,
                                                          sleep), daemon=True)
                   for wire in WIRES for _ in range(callers)]
        for thread in threads:
            thread.start()
        time.sleep(seconds / 2)
        killer = threading.Thread(target=lambda: codes.append(server.stop()), daemon=True)
        codes: list[int | None] = []
        killer.start()
        time.sleep(max(1.0, seconds / 2))
        stop.set()
        for thread in threads:
            thread.join(timeout + 10)
        killer.join(40)
        for wire in WIRES:
            tallies[wire].hung = sum(1 for thread in threads if thread.is_alive()) // len(WIRES)
        for transport in transports.values():
            transport.cleanup()
        ran = read_ledger(ledger)
        traceback = any("Traceback" in line for line in server.stderr)
        code = codes[0] if codes else None
        result: dict[str, Any] = {"exit": code, "crash": code != 0 or traceback,
                                  "idle_kb": server.idle_kb, "peak_kb": server.peak_kb,
                                  "stderr": server.stderr[-5:] if (code != 0 or traceback)
                                  else []}
        for wire, tally in tallies.items():
            calls = tally.outcomes
            lost = sum(1 for key, outcome in calls.items() if outcome != "ok" and key in ran)
            duplicated = sum(1 for key in [*calls, *tally.casts] if ran.get(key, 0) > 1)
            refused = sum(1 for key, outcome in calls.items()
                          if outcome == "refused" and key not in ran)
            result[wire] = {"sent": tally.sent, "casts": tally.casts_sent,
                            "casts_ran": sum(1 for key in tally.casts if key in ran),
                            "answered": sum(1 for o in calls.values() if o == "ok"),
                            "refused": refused, "lost": lost, "duplicated": duplicated,
                            "hung": tally.hung, "errors": tally.failed_other[:3]}
        return result


def run(rounds: int, seconds: float, callers: int, timeout: float = 3.0,
        sleep: float = 0.05, out: Any = None) -> dict[str, Any]:
    """``rounds`` rounds; the totals per wire, crashes and the worst peak/idle RSS ratio."""
    out = out or sys.stdout
    totals: dict[str, Any] = {wire: dict.fromkeys(("sent", "answered", "refused", "lost",
                                                    "duplicated", "hung", "casts",
                                                    "casts_ran"), 0)
                              for wire in WIRES}
    crashes, ratio, errors = 0, 0.0, []
    for number in range(1, rounds + 1):
        result = one_round(seconds, callers, timeout, sleep)
        crashes += int(result["crash"])
        ratio = max(ratio, result["peak_kb"] / max(1, result["idle_kb"]))
        for wire in WIRES:
            for key in totals[wire]:
                totals[wire][key] += result[wire][key]
            errors += result[wire]["errors"]
        print(f"round {number}/{rounds}: exit {result['exit']}, "
              + ", ".join(f"{wire} {result[wire]['answered']}/{result[wire]['sent']} ok"
                          for wire in WIRES)
              + (f"; stderr: {''.join(result['stderr'])}" if result["stderr"] else ""),
              file=out, flush=True)
    totals["crashes"], totals["peak_over_idle"], totals["errors"] = crashes, ratio, errors[:5]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="load per round; SIGTERM half-way (default 4)")
    parser.add_argument("--callers", type=int, default=4, help="caller threads per wire")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="each call's timeout in seconds (default 10)")
    args = parser.parse_args()
    began = time.monotonic()
    totals = run(args.rounds, args.seconds, args.callers, timeout=args.timeout)
    print(f"\nSIGTERM under load, {args.rounds} rounds, {args.callers} callers per wire, "
          f"call timeout {args.timeout:g} s, {time.monotonic() - began:.0f} s")
    print(f"{'wire':6s} {'calls':>7s} {'answered':>9s} {'refused':>8s} {'lost':>5s} "
          f"{'dup':>4s} {'hung':>5s} {'casts':>7s} {'ran':>6s}")
    for wire in WIRES:
        row = totals[wire]
        print(f"{wire:6s} {row['sent']:7d} {row['answered']:9d} {row['refused']:8d} "
              f"{row['lost']:5d} {row['duplicated']:4d} {row['hung']:5d} {row['casts']:7d} "
              f"{row['casts_ran']:6d}")
    print("refused: a clear error, the call never ran; lost: ran, but its caller got no "
          "result; dup: ran twice (calls and casts); ran: casts that ran")
    print(f"server crashes: {totals['crashes']}; peak RSS / idle RSS (worst round): "
          f"{totals['peak_over_idle']:.2f}")
    if totals["errors"]:
        print("other errors seen by callers:", *totals["errors"], sep="\n  ")


if __name__ == "__main__":
    main()
