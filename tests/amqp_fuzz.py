"""Malformed AMQP requests: mutations of a valid oslo.messaging call, for the robustness
tests (driven by hypothesis) and bench/fault_amqp.py (driven by a seeded Random).

Each :class:`Case` knows what its caller may expect: ``reply`` True when its
``_msg_id`` and ``_reply_q`` stay readable (exactly one final reply is due), False when
they are not (no reply can be sent), None when a mutation of raw bytes may have hit
them (at most one); ``value`` is the result a valid call returns (:data:`NO_VALUE`
when the call may fail).
"""

from __future__ import annotations

import bz2
import json
import random
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = object()
MAX_SECONDS = 315_360_000  # bridge.transport.amqp.envelope.MAX_SECONDS


@dataclass
class Case:
    """One request to publish, and what its caller may expect."""

    mutation: str
    msg_id: str
    body: bytes
    content_type: str | None = "application/json"
    headers: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    reply: bool | None = True
    value: Any = NO_VALUE


def inner_call(msg_id: str, reply_q: str, value: Any, unique_id: str | None = None,
               ) -> dict[str, Any]:
    """A valid call of ``echo(value)``, in the bridge client's field order."""
    return {"method": "echo", "args": {"value": value}, "_msg_id": msg_id,
            "_reply_q": reply_q, "_timeout": None,
            "_unique_id": unique_id or uuid.uuid4().hex, "_context_user": "fuzz"}


def envelope(inner: Any, version: Any = "2.0") -> bytes:
    return json.dumps({"oslo.version": version, "oslo.message": json.dumps(inner)}).encode()


def _odd_json(rnd: random.Random, depth: int = 0) -> Any:
    """A JSON value of any kind, at its limits now and then."""
    kind = rnd.randrange(10)
    if kind == 0:
        return rnd.choice([None, True, False, 0, -1, 2**63, 1.5, float("nan"), float("inf")])
    if kind == 1:
        return int("9" * rnd.choice([20, 300, 4000]))
    if kind == 2:
        return "".join(rnd.choice(["a", "é", "\u0000", "\ud7ff", "\"", "\\", "😀", "\n"])
                       for _ in range(rnd.randrange(12)))
    if kind == 3:
        nested: Any = "deep"
        for _ in range(rnd.choice([10, 63, 64, 65, 200, 900])):
            nested = [nested] if rnd.random() < 0.5 else {"k": nested}
        return nested
    if kind in (4, 5) and depth < 3:
        return [_odd_json(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if kind in (6, 7) and depth < 3:
        return {str(rnd.randrange(100)): _odd_json(rnd, depth + 1)
                for _ in range(rnd.randrange(4))}
    return rnd.choice(["x", "", "echo", [], {}, 0.0])


def _compress(kind: str, data: bytes) -> bytes:
    return zlib.compress(data) if kind == "gzip" else bz2.compress(data)


_COMPRESSION = {"gzip": "application/x-gzip", "bz2": "application/x-bz2"}


_BOMB_TAILS: dict[int, bytes] = {}


def bomb(msg_id: str, reply_q: str, size: int) -> bytes:
    """A bz2 body that inflates to ``size`` bytes and more: a first stream holding the start
    of a call (its reply address included), then ``size`` zeros in a second stream, made
    once per size."""
    start = json.dumps({"_msg_id": msg_id, "_reply_q": reply_q, "method": "echo"})
    inner_start = start[:-1] + ', "args": {"value": "'  # the value goes on in the tail
    head = ('{"oslo.version": "2.0", "oslo.message": ' + json.dumps(inner_start)[:-1]).encode()
    tail = _BOMB_TAILS.get(size)
    if tail is None:
        stream = bz2.BZ2Compressor(9)
        chunk = b"0" * (1 << 20)
        parts = [stream.compress(chunk) for _ in range(size >> 20)]
        parts.append(stream.compress(b'\\"}}"}'))
        tail = _BOMB_TAILS[size] = b"".join(parts) + stream.flush()
    return bz2.compress(head) + tail


def mutate(rnd: random.Random, reply_q: str, index: int, used_ids: list[str],
           bomb_rate: float = 0.0, bomb_size: int = 32 << 20) -> Case:
    """One malformed (or odd but valid) call of ``echo(index)``; a compression bomb of
    ``bomb_size`` bytes once in ``1 / bomb_rate`` calls."""
    msg_id = f"fuzz-{uuid.uuid4().hex}"
    inner = inner_call(msg_id, reply_q, index)
    name = rnd.choice(MUTATIONS)
    if bomb_rate and rnd.random() < bomb_rate:
        name = "compression_bomb"
    case = Case(name, msg_id, b"", value=index)
    if name == "compression_bomb":
        case.body, case.value = bomb(msg_id, reply_q, bomb_size), NO_VALUE
        case.headers = {"compression": _COMPRESSION["bz2"]}
    elif name == "content_type":
        case.content_type = rnd.choice([None, "", "text/plain", "application/octet-stream",
                                        "application/json; charset=utf-8", "\u00e9/x"])
        if case.content_type not in (None, "", "application/json"):
            case.value = NO_VALUE
    elif name == "envelope_version":
        version = rnd.choice(["2.0", "2.1", "2", "3.0", "", "1.0", "two", 2.0, None, [], {}])
        case.body = envelope(inner, version)
        case.value = index if isinstance(version, str) and version.split(".")[0] == "2" \
            else NO_VALUE
    elif name == "message_not_a_string":
        case.body = json.dumps({"oslo.version": "2.0", "oslo.message": inner}).encode()
        case.value = NO_VALUE
    elif name == "timeout":
        inner["_timeout"] = rnd.choice([float("nan"), float("inf"), -float("inf"), -1, 1e300,
                                        10**400, MAX_SECONDS + 1, "30", True, [], 0, 2.5,
                                        MAX_SECONDS])
        timeout = inner["_timeout"]
        valid = (not isinstance(timeout, bool) and isinstance(timeout, (int, float))
                 and 0 <= timeout <= MAX_SECONDS)
        case.value = index if valid else NO_VALUE
    elif name == "method":
        inner["method"] = rnd.choice([None, 1, "", [], {}, "no_such_method", "_private"])
        case.value = NO_VALUE
    elif name == "args":
        inner["args"] = rnd.choice([{"value": _odd_json(rnd)}, _odd_json(rnd), None, []])
        case.value = NO_VALUE
    elif name == "compression":
        kind = rnd.choice(["gzip", "bz2"])
        header = rnd.choice([_COMPRESSION[kind], _COMPRESSION["bz2" if kind == "gzip" else
                                                               "gzip"],
                             "application/x-lzma", "gzip", ""])
        form = rnd.choice(["compressed", "plain", "random"])
        case.headers = {"compression": header} if header or rnd.random() < 0.5 else None
        case.body = {"compressed": lambda: _compress(kind, envelope(inner)),
                     "plain": lambda: envelope(inner),
                     "random": lambda: rnd.randbytes(rnd.randrange(1, 40))}[form]()
        matches = (form == "compressed" and header == _COMPRESSION[kind]) or \
            (form == "plain" and not header)
        # The address is readable where the body is plain JSON, or decompresses.
        case.reply = True if form == "plain" or matches else None
        case.value = index if matches else NO_VALUE
    elif name == "extra_fields":
        inner[rnd.choice(["_foo", "namespace", "version", "_context_", "ending"])] = \
            _odd_json(rnd)
        case.value = NO_VALUE
    elif name == "reused_unique_id" and used_ids:
        inner["_unique_id"] = rnd.choice(used_ids)
        case.value = NO_VALUE
    elif name == "trailing_garbage":
        case.body = envelope(inner) + rnd.choice([b"garbage", b"}", b"\xff", b",{}"])
        case.value = NO_VALUE
    elif name == "invalid_utf8":
        inner["args"]["value"] = "BAD-UTF-8"
        case.body = envelope(inner).replace(b"BAD-UTF-8", b"\xff\xfe\xc3")
        case.value = NO_VALUE
    elif name == "bare_inner":
        case.body = json.dumps(inner).encode()
    elif name == "unreadable_address":
        inner[rnd.choice(["_msg_id", "_reply_q"])] = rnd.choice([1, None, [], ""])
        case.reply, case.value = False, NO_VALUE
    elif name == "bit_flips":
        data = bytearray(envelope(inner))
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        case.body, case.reply, case.value = bytes(data), None, NO_VALUE
    elif name == "truncated":
        data = envelope(inner)
        case.body, case.reply, case.value = data[:rnd.randrange(len(data))], None, NO_VALUE
    elif name == "expiration":
        case.properties = {"expiration": str(rnd.choice([60_000, 3_600_000,
                                                         MAX_SECONDS * 1000]))}
    if not case.body:
        case.body = envelope(inner)
    used_ids.append(inner["_unique_id"] if isinstance(inner.get("_unique_id"), str)
                    else uuid.uuid4().hex)
    return case


MUTATIONS = ["content_type", "envelope_version", "message_not_a_string", "timeout", "method",
             "args", "compression", "extra_fields", "reused_unique_id", "trailing_garbage",
             "invalid_utf8", "bare_inner", "unreadable_address", "bit_flips", "truncated",
             "expiration"]


def same(result: Any, expected: Any) -> bool:
    """Equal as JSON (NaN included)."""
    return json.dumps(result, sort_keys=True) == json.dumps(expected, sort_keys=True)
