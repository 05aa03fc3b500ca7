"""An endpoint that records every run in a ledger file, for fault runs.

``LEDGER`` (environment variable ``BRIDGE_LEDGER``) is a file each run of ``record``
appends one line to (``<id>\\n``, one write in append mode, so lines of concurrent runs
never mix). A fault runner reads it afterwards: an id written twice ran twice; an id
written once whose caller got no answer lost its reply.
"""

from __future__ import annotations

import os
import time

LEDGER = os.environ.get("BRIDGE_LEDGER", "")


class LedgerEndpoint:
    """``record(id, seconds)``: sleep ``seconds`` (at most 5), write ``id``, return it."""

    def __init__(self) -> None:
        self._fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) \
            if LEDGER else None

    def record(self, ctx: dict, id: str, seconds: float = 0.0) -> str:  # noqa: A002
        """Sleep ``seconds`` (at most 5), then write ``id`` to the ledger; return ``id``."""
        time.sleep(min(max(float(seconds), 0.0), 5.0))
        if self._fd is not None:
            os.write(self._fd, f"{id}\n".encode())
        return id


def read_ledger(path: str) -> dict[str, int]:
    """How many times each id ran."""
    counts: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key = line.strip()
                if key:
                    counts[key] = counts.get(key, 0) + 1
    except FileNotFoundError:
        pass
    return counts
