"""oslo.messaging's message format on RabbitMQ (docs/wire.md 2.6-2.8): the 2.0 envelope.

A body is a JSON object ``{"oslo.version": "2.0", "oslo.message": "<JSON text>"}``
whose inner message holds the request (``method``, ``args``, ``_msg_id``,
``_reply_q``, ``_timeout``, ``_unique_id``, one ``_context_<key>`` per context key)
or a reply (``result``, ``failure``, ``ending``, ``_msg_id``). Bodies may be
compressed (``compression`` header, gzip or bz2).
"""

from __future__ import annotations

import bz2
import itertools
import json
import math
import os
import zlib
from typing import Any

ENVELOPE_VERSION = "2.0"
CONTEXT_PREFIX = "_context_"
#: ``kombu_compression`` name -> the ``compression`` header value.
COMPRESSION = {"gzip": "application/x-gzip", "bz2": "application/x-bz2"}
#: The longest time a message carries, in seconds (a ``_timeout``, an ``expiration``):
#: ten years, RabbitMQ's own ceiling on a message's ``expiration``.
MAX_SECONDS = 315_360_000
#: Bytes decompressed at a time.
_INFLATE_STEP = 1 << 20
#: What a refusal of a body too large once decompressed keeps of it: its first MiB.
KEPT_TEXT = 1 << 20


class BadMessage(ValueError):
    """A delivery that is not an oslo.messaging RPC message.

    ``body``: its text as far as it was read (decompressed, when it was), from which a
    refusal may still find the caller; ``reason``: the refusal's metrics label.
    """

    reason = "invalid_argument"

    def __init__(self, message: str, body: bytes | None = None) -> None:
        super().__init__(message)
        self.body = body


class BodyTooLarge(BadMessage):
    """A body larger than the limit, sent so or once decompressed."""

    reason = "resource_exhausted"

    def __init__(self, limit: int, body: bytes | None = None) -> None:
        super().__init__(f"the message body is larger than max_body_size ({limit} bytes)",
                         body)


class _Ids:
    """Unique 32-hex-digit ids, like uuid4().hex, without a system call per id.

    80 random bits per process (renewed after a fork) followed by a 48-bit counter.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), os.urandom(10).hex()
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


#: A new ``_msg_id`` / ``_unique_id``.
new_id = _Ids()


def json_default(value: Any) -> Any:
    """What oslo's ``jsonutils.to_primitive`` does for the common non-JSON types."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_envelope(inner: dict[str, Any]) -> bytes:
    """The body oslo.messaging sends: the inner message JSON-encoded inside the envelope."""
    return json.dumps({"oslo.version": ENVELOPE_VERSION,
                       "oslo.message": json.dumps(inner, default=json_default)}).encode()


def short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int past Python's int/str conversion limit
        text = f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= limit else text[:limit] + "..."


def check_seconds(value: Any, name: str) -> float | int | None:
    """A time value from a message (``_timeout``): null, or a number of seconds from 0 to
    :data:`MAX_SECONDS`; :class:`BadMessage` naming ``name`` for anything else (NaN,
    infinities, negatives, text, numbers past the ceiling)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadMessage(f"{name} must be a number of seconds or null, not {short_repr(value)}")
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_SECONDS:
        raise BadMessage(f"{name} must be a number of seconds from 0 to {MAX_SECONDS}, "
                         f"not {short_repr(value)}")
    return value


def expiration_seconds(value: Any) -> float | None:
    """The seconds a message's ``expiration`` property gives its caller, or None without one;
    :class:`BadMessage` unless it is a whole number of milliseconds up to :data:`MAX_SECONDS`."""
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if (not isinstance(value, str) or not value.isascii() or not value.isdigit()
            or len(value) > 15 or int(value) > MAX_SECONDS * 1000):
        raise BadMessage(f"the expiration must be a whole number of milliseconds from 0 to "
                         f"{MAX_SECONDS * 1000}, not {short_repr(value)}")
    return int(value) / 1000.0


def expiration_of(timeout: float) -> str:
    """The ``expiration`` property of a call that waits ``timeout`` s (finite, positive)."""
    return str(int(min(timeout, MAX_SECONDS) * 1000))


def compress(body: bytes, compression: str | None) -> tuple[bytes, dict[str, Any] | None]:
    """``(body, headers)`` to send for a ``kombu_compression`` setting (None: as it is)."""
    if not compression:
        return body, None
    body = zlib.compress(body) if compression == "gzip" else bz2.compress(body)
    return body, {"compression": COMPRESSION[compression]}


def inflate(body: bytes, compression: Any, limit: int) -> bytes:
    """The body as sent, decompressed per its ``compression`` header, of at most ``limit``
    bytes; else :class:`BodyTooLarge`, found by a first pass that keeps nothing but the
    first :data:`KEPT_TEXT` bytes, so a small body that would inflate to gigabytes costs
    no more memory than a step of :data:`_INFLATE_STEP` bytes."""
    if not compression:
        if len(body) > limit:
            raise BodyTooLarge(limit, body)
        return body
    if compression == COMPRESSION["gzip"]:
        new_stream: Any = zlib.decompressobj  # what follows its stream is ignored
    elif compression == COMPRESSION["bz2"]:
        new_stream = bz2.BZ2Decompressor  # bz2 streams may follow one another
    else:
        raise BadMessage(f"unsupported compression {short_repr(compression)}", body)
    _inflate_into(_Output(limit, keep=False), new_stream, body)  # how large, first
    output = _Output(limit, keep=True)
    _inflate_into(output, new_stream, body)
    return b"".join(output.chunks)


def _inflate_into(output: _Output, new_stream: Any, body: bytes) -> None:
    data, first = body, True
    while data and (first or new_stream is not zlib.decompressobj):
        try:
            data = _inflate_stream(new_stream(), data, output, body)
        except BadMessage:
            raise
        except (zlib.error, OSError, ValueError, EOFError) as exc:
            if not first:
                break  # what follows a bz2 stream is not another one: ignored, as bz2 does
            raise BadMessage(f"cannot decompress the body: {exc}", body) from None
        first = False
    if first:
        raise BadMessage("cannot decompress the body: it is empty", body)


class _Output:
    """Decompressed pieces (all of them, or the first :data:`KEPT_TEXT` bytes), never more
    than ``limit`` bytes in all."""

    def __init__(self, limit: int, keep: bool) -> None:
        self.limit = limit
        self.keep = keep
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        kept = self.size if self.keep else min(self.size, KEPT_TEXT)
        self.size += len(chunk)
        if self.keep or kept < KEPT_TEXT:
            self.chunks.append(chunk if self.keep else chunk[:KEPT_TEXT - kept])
        if self.size > self.limit:
            head = b"".join(self.chunks) if not self.keep else b""
            self.chunks = []
            raise BodyTooLarge(self.limit, head[:KEPT_TEXT])


def _inflate_stream(stream: Any, data: bytes, output: _Output, body: bytes) -> bytes:
    """Add one compressed stream's output to ``output``; return the data after it."""
    while True:
        wanted = min(_INFLATE_STEP, output.limit + 1 - output.size)
        chunk = stream.decompress(data, wanted)
        output.add(chunk)
        if stream.eof:
            return stream.unused_data
        data = getattr(stream, "unconsumed_tail", b"")  # zlib keeps input past ``wanted``
        if len(chunk) < wanted and not data and getattr(stream, "needs_input", True):
            raise BadMessage("cannot decompress the body: incomplete or truncated stream",
                             body)


def decode_body(body: Any, properties: dict[str, Any], limit: int) -> dict[str, Any]:
    """Decode one delivery into the inner message dict (docs/wire.md 2.6); BadMessage if not.

    A body larger than ``limit`` bytes, sent so or once decompressed, is
    :class:`BodyTooLarge`. Every :class:`BadMessage` carries the text read so far.
    """
    headers = properties.get("application_headers") or {}
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = inflate(body, headers.get("compression") if isinstance(headers, dict) else None,
                   limit)
    content_type = properties.get("content_type")
    if content_type not in (None, "", "application/json"):
        raise BadMessage(f"unsupported content type {short_repr(content_type)}", body)
    data = _json_object(body, "the body", body)
    if "oslo.version" in data and "oslo.message" in data:
        version = data["oslo.version"]
        if not isinstance(version, str) or version.split(".")[0] != ENVELOPE_VERSION[0]:
            raise BadMessage(f"unsupported envelope version {short_repr(version)}", body)
        inner = data["oslo.message"]
        if not isinstance(inner, str):
            raise BadMessage("the envelope's oslo.message is not a string", body)
        data = _json_object(inner, "the envelope's oslo.message", body)
    return data


def _json_object(text: bytes | str, what: str, body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise BadMessage(f"{what} is nested too deeply to decode", body) from None
    except ValueError as exc:  # also UnicodeDecodeError, and an int past 4300 digits
        raise BadMessage(f"{what} is not JSON: {exc}", body) from None
    if not isinstance(data, dict):
        raise BadMessage(f"{what} is a JSON {type(data).__name__}, not an object", body)
    return data


def reply_body(msg_id: str | None, result: Any, failure: str | None, ending: bool) -> bytes:
    """A reply (``ending``) or a call-monitor heartbeat (not ``ending``, no result)."""
    return encode_envelope({"result": result, "failure": failure, "ending": ending,
                            "_msg_id": msg_id, "_unique_id": new_id()})


def request_message(message: dict[str, Any], ctxt: dict[str, Any], msg_id: str | None,
                    reply_q: str | None, monitor_timeout: float | None) -> dict[str, Any]:
    """The inner message of a call (``msg_id`` and ``reply_q`` set) or a cast, with its
    fields in oslo.messaging's order."""
    inner: dict[str, Any] = {"method": message.get("method"), "args": message.get("args", {})}
    for key in ("namespace", "version"):
        if message.get(key) is not None:
            inner[key] = message[key]
    for key, value in message.items():
        if key not in inner and key not in ("namespace", "version"):
            inner[key] = value
    if msg_id is not None:
        inner["_msg_id"] = msg_id
        inner["_reply_q"] = reply_q
        inner["_timeout"] = monitor_timeout
    inner["_unique_id"] = new_id()
    for key, value in ctxt.items():
        inner[CONTEXT_PREFIX + str(key)] = value
    return inner
