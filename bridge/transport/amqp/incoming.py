"""A request taken from RabbitMQ (the driver's :class:`IncomingMessage`), and the body of
its final reply."""

from __future__ import annotations

import json
import time
from typing import Any

from bridge.auth.identity import Credentials
from bridge.exceptions import MessagingException, serialize_failure
from bridge.transport.amqp.envelope import (
    CONTEXT_PREFIX,
    BadMessage,
    check_seconds,
    decode_body,
    expiration_seconds,
    json_default,
    reply_body,
    short_repr,
)
from bridge.transport.amqp.headers import trace_headers
from bridge.transport.amqp.replies import ReplySender
from bridge.transport.base import IncomingMessage


class RequestRedelivered(MessagingException):
    """The broker delivered a request again; its first delivery may have run, so this one
    was not run (the AMQP wire runs a request at most once)."""


def _failure_text(failure: BaseException) -> str:
    try:
        return json.dumps(serialize_failure(failure), default=json_default)
    except Exception:  # arguments JSON cannot carry: the class and the message only
        return json.dumps({"class": type(failure).__name__, "module": "builtins",
                           "message": str(failure)[:2000], "tb": [], "args": [],
                           "kwargs": {}})


def final_reply(msg_id: str, result: Any, failure: BaseException | None, limit: int) -> bytes:
    """The body of a final reply; a failure instead when the result (or the failure) cannot
    be sent: not JSON, or a body over ``limit`` bytes, which the caller would refuse."""
    try:
        body = reply_body(msg_id, result, None if failure is None else _failure_text(failure),
                          True)
    except Exception as exc:  # a type, an int, a depth that JSON cannot carry
        body = reply_body(msg_id, None, _failure_text(exc), True)
    if len(body) > limit:
        body = reply_body(msg_id, None, _failure_text(MessagingException(
            f"the reply is {len(body)} bytes, larger than max_body_size ({limit} bytes)")), True)
    return body


class AmqpIncoming(IncomingMessage):
    """A request taken from RabbitMQ; its replies go to ``reply_q`` through ``replies``."""

    wire = "amqp"

    def __init__(self, replies: ReplySender, ctxt: dict[str, Any], message: dict[str, Any],
                 msg_id: str | None, reply_q: str | None, client_timeout: float | None,
                 deadline: float | None, limit: int) -> None:
        self._replies = replies
        self.ctxt = ctxt
        self.message = message
        self.msg_id = msg_id
        self.reply_q = reply_q
        self.client_timeout = client_timeout
        self.deadline = deadline
        self.wants_reply = bool(msg_id and reply_q)
        self._limit = limit
        self._replied = False

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if not self.wants_reply or self._replied:
            return
        self._replied = True
        body = final_reply(self.msg_id or "", result, failure, self._limit)
        seconds_left = None if self.deadline is None else self.deadline - time.monotonic()
        self._replies.send(self.reply_q or "", body, seconds_left, self.method)

    def heartbeat(self) -> None:
        if not self.wants_reply or self._replied:
            return
        self._replies.heartbeat(self.reply_q or "", reply_body(self.msg_id, None, None, False))


def parse_request(msg: Any, replies: ReplySender, limit: int,
                  ) -> tuple[AmqpIncoming, str | None]:
    """``(incoming, _unique_id)`` of one delivery; :class:`BadMessage` if it is not a request
    (or has a body over ``limit`` bytes).

    The inner message's ``_context_<key>`` entries become the context, the other
    ``_`` fields are the envelope's; the rest (``method``, ``args``...) is the
    message, checked by the server.
    """
    data = decode_body(msg.body, msg.properties, limit)
    ctxt: dict[str, Any] = {}
    message: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith(CONTEXT_PREFIX):
            ctxt[key[len(CONTEXT_PREFIX):]] = value
        else:
            message[key] = value
    msg_id = message.pop("_msg_id", None)
    reply_q = message.pop("_reply_q", None)
    unique_id = message.pop("_unique_id", None)
    if msg_id is not None and not isinstance(msg_id, str):
        raise BadMessage(f"_msg_id must be a string, not {short_repr(msg_id)}")
    if reply_q is not None and not isinstance(reply_q, str):
        raise BadMessage(f"_reply_q must be a string, not {short_repr(reply_q)}")
    client_timeout = check_seconds(message.pop("_timeout", None), "_timeout")
    expires_in = expiration_seconds(msg.properties.get("expiration"))
    if not isinstance(unique_id, str):
        unique_id = None
    ctxt["client_timeout"] = client_timeout
    deadline = None if expires_in is None else time.monotonic() + expires_in
    incoming = AmqpIncoming(replies, ctxt, message, msg_id, reply_q, client_timeout, deadline,
                            limit)
    # RabbitMQ refuses a user_id property other than the publishing connection's user:
    # when present, it names the sender (bridge.auth).
    user_id = msg.properties.get("user_id")
    incoming.credentials = Credentials(
        "amqp", broker_user=user_id if isinstance(user_id, str) and user_id else None,
        brokered=True)
    incoming.headers = trace_headers(msg.properties.get("application_headers"))
    return incoming, unique_id
