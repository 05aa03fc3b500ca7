"""The body size limit (``max_body_size``): the same for a plain body and a compressed one,
which is refused while it is decompressed, never inflated in full."""

from __future__ import annotations

import bz2
import json
import queue
import tracemalloc
import zlib

import pytest
from amqp_support import BROKER_URL, Peer, RawWire, delete_queues, unique, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import stats
from bridge.transport.amqp.envelope import COMPRESSION, BadMessage, BodyTooLarge, inflate

LIMIT = 1 << 20


def _compress(kind: str, chunks) -> bytes:
    """Compress an iterable of byte strings without holding them all at once."""
    stream = zlib.compressobj(9) if kind == "gzip" else bz2.BZ2Compressor(9)
    out = [stream.compress(chunk) for chunk in chunks]
    return b"".join(out) + stream.flush()


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["gzip", "bz2"]), extra=st.integers(-3, 3),
       filler=st.binary(min_size=1, max_size=64))
def test_a_compressed_body_has_the_plain_body_limit(kind, extra, filler):
    limit = 4096
    data = (filler * (limit // len(filler) + 2))[:limit + extra]
    compressed = _compress(kind, [data])
    if len(data) <= limit:
        assert inflate(compressed, COMPRESSION[kind], limit) == data
        assert inflate(data, None, limit) == data
        return
    with pytest.raises(BodyTooLarge) as inflated:
        inflate(compressed, COMPRESSION[kind], limit)
    with pytest.raises(BodyTooLarge) as plain:
        inflate(data, None, limit)
    assert str(inflated.value) == str(plain.value) == \
        f"the message body is larger than max_body_size ({limit} bytes)"


@pytest.mark.parametrize("kind", ["gzip", "bz2"])
def test_a_compression_bomb_costs_no_more_than_the_limit(kind):
    bomb = _compress(kind, (b"\0" * (1 << 20) for _ in range(256)))  # 256 MiB inflated
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            inflate(bomb, COMPRESSION[kind], 64 * LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * LIMIT  # steps of decompression and the text kept, not the limit


@pytest.mark.parametrize("body", [b"", b"not compressed", zlib.compress(b"{}")[:-4]])
def test_a_body_that_does_not_decompress_is_refused(body):
    with pytest.raises(BadMessage, match="cannot decompress"):
        inflate(body, COMPRESSION["gzip"], LIMIT)
    with pytest.raises(BadMessage, match="unsupported compression"):
        inflate(body, "application/x-lzma", LIMIT)


@pytest.mark.broker
@pytest.mark.usefixtures("broker_available")
def test_a_server_refuses_oversized_bodies_in_bounded_memory():
    exchange, topic = unique("bx"), unique("limits")
    peer = Peer("bridge", f"{BROKER_URL}?max_body_size={LIMIT}")
    wire = RawWire()
    try:
        peer.server(exchange, topic, "s1", queue.Queue())
        before = stats.refusal_counts().get(("amqp", "resource_exhausted"), 0)
        head = json.dumps({"method": "echo", "_msg_id": "plain", "_reply_q": wire.reply_q,
                           "args": {"value": "x" * LIMIT}})
        wire.publish(exchange, topic, wire.envelope(json.loads(head)))
        prefix = ('{"oslo.version": "2.0", "oslo.message": "{\\"_msg_id\\": \\"bomb\\", '
                  f'\\"_reply_q\\": \\"{wire.reply_q}\\", \\"method\\": \\"echo\\", '
                  '\\"args\\": {\\"value\\": \\"').encode()
        bomb = _compress("gzip", [prefix, *(b"0" * (1 << 20) for _ in range(256))])
        tracemalloc.start()
        try:
            wire.publish(exchange, topic, bomb, headers={"compression": COMPRESSION["gzip"]})
            assert wait_for(lambda: stats.refusal_counts().get(
                ("amqp", "resource_exhausted"), 0) >= before + 2, 30)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * LIMIT  # the plain body itself is 1 MiB, held by py-amqp
        assert wire.wait_replies(["plain"])
        failure = json.loads(wire.replies["plain"][0]["failure"])
        assert failure["class"] == "MalformedMessage"
        assert f"larger than max_body_size ({LIMIT} bytes)" in failure["message"]
        client = peer.client(exchange, topic, timeout=10)
        assert client.call({}, "echo", value="still serving") == "still serving"
    finally:
        peer.close()
        wire.close()
        delete_queues([topic, f"{topic}.s1"], [exchange])
