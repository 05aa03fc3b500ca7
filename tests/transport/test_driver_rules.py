"""Rules every driver shares: strict booleans in options, and no hand-over under the
listener's lock."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bridge
from bridge.conf import FALSE_WORDS, TRUE_WORDS, parse_bool
from bridge.transport.base import ListenerLockHeld


@given(st.text(max_size=12))
def test_a_boolean_is_one_of_the_accepted_words_or_refused(text):
    word = text.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        assert parse_bool(text) is (word in TRUE_WORDS)
    else:
        with pytest.raises(ValueError, match="true/false"):
            parse_bool(text, "flag")


@pytest.mark.parametrize("url", [
    "grpc://127.0.0.1:0?include_traceback=ture",
    "rabbit://guest:guest@127.0.0.1:5672/?amqp_durable_queues=flase",
    "http://127.0.0.1:0?tls_client_auth=yess",
])
def test_a_misspelled_boolean_in_a_url_is_a_clear_error(url):
    with pytest.raises(bridge.InvalidTransportURL, match="true/false"):
        bridge.get_transport(None, url)


def test_a_hand_over_under_the_listener_lock_is_refused():
    transport = bridge.get_transport(None, "memory://lock-rule")
    listener = transport.driver.listen(bridge.Target(topic="t", server="s"))
    taken: list = []
    listener.start(taken.append)
    try:
        with listener.lock, pytest.raises(ListenerLockHeld, match="deadlock"):
            listener.hand_over(object())
        assert not taken
        done = threading.Thread(target=listener.hand_over, args=("message",))
        done.start()
        done.join(5)
        assert taken == ["message"]
    finally:
        listener.stop()
        listener.cleanup()
        transport.cleanup()
