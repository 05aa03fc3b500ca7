"""The reply address of a message that is not a valid request, read as far as it can be.

A request refused before dispatch (not JSON past some point, an unknown envelope
version, a field of the wrong type, too large, nested too deeply for the decoder...)
is still answered when its caller can be found: the top-level ``_msg_id`` and
``_reply_q`` of its inner message, both non-empty strings. This reader walks the
top level of the JSON text only, skipping nested values without decoding them, so
no depth, number or size makes it fail; text cut short is read up to the cut.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Possessive (never backtracking), so matching a long string keeps no state per character.
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_OPEN_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)  # one the text's end cuts short
_SPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{}]')
_SCALAR = re.compile(r"[^,\]}\s]*")


def _after_value(text: str, pos: int) -> int | None:
    """Where the JSON value at ``pos`` ends; None if the text ends first or is not JSON."""
    char = text[pos:pos + 1]
    if char == '"':
        match = _STRING.match(text, pos)
        return match.end() if match else None
    if char not in ("{", "["):
        match = _SCALAR.match(text, pos)
        return match.end() if match and match.end() > pos else None
    depth = 0
    while True:
        match = _STRUCTURE.search(text, pos)
        if match is None:
            return None
        char, pos = match.group(), match.start()
        if char == '"':
            string = _STRING.match(text, pos)
            if string is None:
                return None
            pos = string.end()
            continue
        depth += 1 if char in "{[" else -1
        pos += 1
        if depth == 0:
            return pos


def members(text: str, wanted: set[str]) -> dict[str, str]:
    """The raw JSON text of the top-level members named in ``wanted`` of the object that
    ``text`` holds, as far as they can be read (the last one may be cut short)."""
    found: dict[str, str] = {}
    pos = _SPACE.match(text, 0).end()
    if text[pos:pos + 1] != "{":
        return found
    pos += 1
    while True:
        pos = _SPACE.match(text, pos).end()
        key_match = _STRING.match(text, pos)
        if key_match is None:
            return found
        try:
            key = json.loads(key_match.group())
        except ValueError:
            return found
        pos = _SPACE.match(text, key_match.end()).end()
        if text[pos:pos + 1] != ":":
            return found
        pos = _SPACE.match(text, pos + 1).end()
        end = _after_value(text, pos)
        if key in wanted:
            found[key] = text[pos:] if end is None else text[pos:end]
        if end is None:
            return found
        pos = _SPACE.match(text, end).end()
        if text[pos:pos + 1] != ",":
            return found
        pos += 1


def _string(raw: str | None, partial: bool = False) -> str | None:
    """The string a member's raw text holds (with ``partial``, even cut short)."""
    if raw is None or not raw.startswith('"'):
        return None
    try:
        value = json.loads(raw)
        return value if isinstance(value, str) else None
    except ValueError:
        pass
    if not partial:
        return None
    match = _OPEN_STRING.match(raw)
    body = match.group() if match else raw
    for cut in range(0, 7):  # drop an escape the end of the text split
        try:
            return json.loads(body[:len(body) - cut] + '"')
        except ValueError:
            continue
    return None


def reply_address(body: bytes | str) -> tuple[str, str] | None:
    """``(_msg_id, _reply_q)`` of a request body (an oslo envelope or a bare inner
    message), both non-empty strings; None when they cannot be read.

    Only the first :data:`WINDOW` characters are walked; of a longer body, the last
    :data:`WINDOW` are also searched for the two fields (where oslo.messaging's and
    rpc-bridge's clients put them, before the context), so reading costs little
    whatever the body's size.
    """
    head = body[:WINDOW]
    text = head if isinstance(head, str) else head.decode("utf-8", "replace")
    found = members(text, {"oslo.message", "_msg_id", "_reply_q"})
    inner: Any = found.get("oslo.message")
    if inner is not None:
        inner_text = inner if inner.startswith("{") else _string(inner, partial=True)
        if inner_text is not None:
            found = members(inner_text, {"_msg_id", "_reply_q"})
    msg_id, reply_q = _string(found.get("_msg_id")), _string(found.get("_reply_q"))
    if msg_id and reply_q:
        return msg_id, reply_q
    if len(body) > WINDOW:
        return _search_tail(body[-WINDOW:])
    return None


def _search_tail(tail: bytes | str) -> tuple[str, str] | None:
    """The last ``_msg_id`` and ``_reply_q`` string members in ``tail`` (plain, or escaped
    inside an envelope's ``oslo.message``), values without escapes."""
    text = tail if isinstance(tail, str) else tail.decode("utf-8", "replace")
    address = []
    for name in ("_msg_id", "_reply_q"):
        matches = _TAIL_FIELD[name].findall(text)
        if not matches:
            return None
        address.append(matches[-1][0] or matches[-1][1])
    if all(address):
        return address[0], address[1]
    return None


#: How much of a body :func:`reply_address` reads from its start (and from its end).
WINDOW = 1 << 20
_TAIL_FIELD = {name: re.compile(rf'"{name}"\s*:\s*"([^"\\]*)"|\\"{name}\\"\s*:\s*\\"([^"\\]*)\\"')
               for name in ("_msg_id", "_reply_q")}
