"""Reading the reply address of a request that is not valid (no broker)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.transport.amqp.salvage import reply_address

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=12)
NAME = st.text(min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_text_is_read_without_failing(data):
    reply_address(data)


@settings(max_examples=300, deadline=None)
@given(others=st.dictionaries(st.text(max_size=6).filter(lambda k: k not in (
    "_msg_id", "_reply_q", "oslo.message")), JSON, max_size=5), msg_id=NAME, reply_q=NAME,
    position=st.integers(0, 5), wrapped=st.booleans(), tail=st.binary(max_size=6),
    as_object=st.booleans())
def test_the_address_is_found_wherever_it_is_and_whatever_surrounds_it(
        others, msg_id, reply_q, position, wrapped, tail, as_object):
    items = list(others.items())
    items.insert(min(position, len(items)), ("_reply_q", reply_q))
    items.insert(min(position, len(items)), ("_msg_id", msg_id))
    inner = dict(items)
    if wrapped:
        message = inner if as_object else json.dumps(inner)
        body = json.dumps({"oslo.version": "9.9", "oslo.message": message}).encode()
    else:
        body = json.dumps(inner).encode()
    assert reply_address(body + tail) == (msg_id, reply_q)


def test_depth_size_and_a_cut_do_not_hide_the_address():
    deep = '{"args": ' + "[" * 50_000 + "]" * 50_000 + ', "_msg_id": "m", "_reply_q": "q"}'
    assert reply_address(deep) == ("m", "q")
    big = '{"args": 1' + "0" * 10_000 + ', "_msg_id": "m", "_reply_q": "q", "x": "cut'
    assert reply_address(json.dumps({"oslo.version": "2.0", "oslo.message": big})[:-10]) == \
        ("m", "q")
    assert reply_address('{"_msg_id": "m", "_reply_q": "q') is None  # the queue is cut
    assert reply_address('{"_msg_id": "", "_reply_q": "q"}') is None
    assert reply_address('{"args": {"_msg_id": "m", "_reply_q": "q"}}') is None  # not top


def test_a_long_body_is_read_at_both_ends_only():
    inner = {"method": "echo", "args": {"v": "x" * (3 << 20), "_msg_id": "nested"},
             "_msg_id": "m", "_reply_q": "q", "_unique_id": "u", "_context_user": "a"}
    assert reply_address(json.dumps({"oslo.version": "2.0",
                                     "oslo.message": json.dumps(inner)})) == ("m", "q")
    assert reply_address(json.dumps(inner).encode()) == ("m", "q")
    first = {"_msg_id": "m", "_reply_q": "q", "args": {"v": "x" * (3 << 20)}}
    assert reply_address(json.dumps(first)) == ("m", "q")
