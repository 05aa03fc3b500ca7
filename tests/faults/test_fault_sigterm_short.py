"""The short version of bench/fault_sigterm.py: SIGTERM under load on both wires."""

from __future__ import annotations

import io
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.broker
@pytest.mark.usefixtures("broker_available")
def test_sigterm_under_load_loses_nothing_and_runs_nothing_twice():
    sys.path.insert(0, str(BENCH))
    try:
        import fault_sigterm
    finally:
        sys.path.remove(str(BENCH))
    log = io.StringIO()
    totals = fault_sigterm.run(rounds=1, seconds=2.0, callers=2, out=log)
    assert totals["crashes"] == 0, log.getvalue()
    for wire in fault_sigterm.WIRES:
        row = totals[wire]
        assert row["answered"] > 0, (wire, row)
        assert row["answered"] + row["refused"] == row["sent"], (wire, row, totals["errors"])
        assert (row["lost"], row["duplicated"], row["hung"]) == (0, 0, 0), (wire, row)
