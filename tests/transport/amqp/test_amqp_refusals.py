"""Which broker errors are refusals for good, and what their text tells the operator."""

from __future__ import annotations

import ssl

import amqp.exceptions
import pytest
from amqp.exceptions import error_for_code

from bridge.transport.amqp.refusals import BrokerRefused, denied_feature, explain, refused_for_good

# The broker's own texts, as RabbitMQ 4.3 sends them.
DENIED = ("INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\n"
          "Its use is not permitted per the configuration (overriding the default, which is "
          "permitted):")
INEQUIVALENT = ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'topic' in "
                "vhost '/': received none but current is the value 'quorum' of type 'longstr'")
LOGIN = ("ACCESS_REFUSED - Login was refused using authentication mechanism AMQPLAIN. For "
         "details see the broker logfile.")


def _error(code: int, text: str, method: tuple[int, int] = (50, 10)) -> Exception:
    return error_for_code(code, text, method, amqp.exceptions.ChannelError)


@pytest.mark.parametrize(("code", "text", "permanent"), [
    (541, DENIED, True),
    (541, "INTERNAL_ERROR - timed out waiting for the leader", False),
    (406, INEQUIVALENT, True),
    (403, LOGIN, True),
    (530, "NOT_ALLOWED - vhost nope not found", True),
    (404, "NOT_FOUND - home node 'rabbit@n1' of durable queue 'q' is down", False),
    (405, "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q'", False),
    (320, "CONNECTION_FORCED - broker forced connection closure", False),
])
def test_refusals_for_good(code, text, permanent):
    assert refused_for_good(_error(code, text)) is permanent


def test_network_and_tls_errors():
    assert not refused_for_good(ConnectionRefusedError(111, "Connection refused"))
    assert not refused_for_good(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert refused_for_good(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    assert refused_for_good(BrokerRefused("already explained"))


def test_each_refusal_names_what_to_set():
    denied = explain(_error(541, DENIED), "rabbit-1:5672")
    assert denied_feature(_error(541, DENIED)) == "transient_nonexcl_queues"
    assert str(denied) == (
        "RabbitMQ on rabbit-1:5672 refused a transient queue (541, deprecated feature "
        "transient_nonexcl_queues denied): set amqp_durable_queues=true or "
        "rabbit_quorum_queue=true and rabbit_transient_quorum_queue=true")
    conflict = str(explain(_error(406, INEQUIVALENT)))
    assert "queue 'topic'" in conflict and "'x-queue-type'" in conflict
    assert "rabbit_quorum_queue" in conflict and "rabbit_transient_quorum_queue" in conflict
    login = str(explain(_error(403, LOGIN, (10, 11))))
    assert "refused the login" in login and "user name and password" in login
    vhost = str(explain(_error(530, "NOT_ALLOWED - vhost nope not found", (10, 40))))
    assert "virtual host" in vhost
    tls = str(explain(ssl.SSLCertVerificationError(1, "certificate verify failed")))
    assert "ssl_ca_file" in tls
    for refusal in (denied, explain(_error(406, INEQUIVALENT))):
        assert isinstance(refusal, BrokerRefused) and refusal.error is not None
