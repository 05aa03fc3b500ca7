"""Endpoints for ``bridge serve`` tests that call the server from inside its own process.

``make(server)`` returns the shipped endpoints and starts a thread that, once the server
runs, calls ``sleep(seconds=SELFCALL_SECONDS)`` on it over its memory:// transport and
prints ``selfcall: accepted`` when the server has taken the call, then
``selfcall: result <json>`` (or ``selfcall: failed <error>``). ``SELFCALL_METHOD``
names another method to call without arguments (``fail``). It lets a test send
SIGTERM while a call is in flight without any network wire.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import bridge
from endpoints import default_endpoints


def _say(line: str) -> None:
    # One write per line: the server prints from its own thread at the same time.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _call_itself(server: Any, seconds: float) -> None:
    for _ in range(200):
        if getattr(server, "running", False):
            break
        time.sleep(0.05)
    transport = next(t for t in server.transports if t.wire == "memory")
    client = bridge.get_rpc_client(transport, bridge.Target(topic=server.target.topic),
                                   timeout=120)

    def announce_accepted() -> None:
        for _ in range(400):
            if server.in_flight >= 1:
                _say("selfcall: accepted")
                return
            time.sleep(0.025)

    threading.Thread(target=announce_accepted, daemon=True).start()
    method = os.environ.get("SELFCALL_METHOD", "sleep")
    kwargs = {"seconds": seconds} if method == "sleep" else {}
    try:
        result = client.call({"request_id": "req-selfcall"}, method, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported to the test through stdout
        _say(f"selfcall: failed {type(exc).__name__}: {exc}")
        return
    _say(f"selfcall: result {json.dumps(result)}")


def make(server: Any) -> list[Any]:
    """The shipped endpoints, plus a thread that calls ``sleep`` on this very server."""
    seconds = float(os.environ.get("SELFCALL_SECONDS", "1"))
    threading.Thread(target=_call_itself, args=(server, seconds), name="selfcall").start()
    return default_endpoints(server)
