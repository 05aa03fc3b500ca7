"""A short run of bench/fuzz_grpc.py (fuzzed envelopes against a live server process):
every request gets one clear answer; nothing hangs, is lost, crashes or leaks."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_fuzzed_envelopes_get_clear_answers(flavour):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_grpc.py"), "--requests",
                           "300", "--flavour", flavour, "--seed", "7", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(done.stdout)
    assert result["requests sent"] == 300
    assert result["answered"] + result["refused"] == 300, result
    for figure in ("unclear", "lost", "duplicated", "hung", "server crashes", "dead threads",
                   "in flight after"):
        assert result[figure] == 0, (figure, result)
    assert result["peak RSS MiB"] < 2 * result["idle RSS MiB"], result
