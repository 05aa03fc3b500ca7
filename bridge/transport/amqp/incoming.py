"""A request taken from RabbitMQ: the driver's :class:`IncomingMessage`."""

from __future__ import annotations

import json
import time
from typing import Any

from bridge.exceptions import MalformedMessage, serialize_failure
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
from bridge.transport.amqp.replies import ReplySender
from bridge.transport.base import IncomingMessage


class AmqpIncoming(IncomingMessage):
    """A request taken from RabbitMQ; its replies go to ``reply_q`` through ``replies``."""

    wire = "amqp"

    def __init__(self, replies: ReplySender, ctxt: dict[str, Any], message: dict[str, Any],
                 msg_id: str | None, reply_q: str | None, client_timeout: float | None,
                 deadline: float | None) -> None:
        self._replies = replies
        self.ctxt = ctxt
        self.message = message
        self.msg_id = msg_id
        self.reply_q = reply_q
        self.client_timeout = client_timeout
        self.deadline = deadline
        self.wants_reply = bool(msg_id and reply_q)
        self._replied = False

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        if not self.wants_reply or self._replied:
            return
        self._replied = True
        failure_text = None
        if failure is not None:
            failure_text = json.dumps(serialize_failure(failure), default=json_default)
        try:
            body = reply_body(self.msg_id, result, failure_text, True)
        except (TypeError, ValueError) as exc:  # a result JSON cannot carry
            body = reply_body(self.msg_id, None, json.dumps(serialize_failure(exc)), True)
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
    incoming = AmqpIncoming(replies, ctxt, message, msg_id, reply_q, client_timeout, deadline)
    return incoming, unique_id


def bad_message_reply(body: Any, error: BadMessage) -> tuple[str, bytes] | None:
    """``(reply queue, reply body)`` telling a bad request's caller why it was refused,
    when its ``_msg_id`` and ``_reply_q`` can be read; else None."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("oslo.message"), str):
            data = json.loads(data["oslo.message"])
    except Exception:
        return None
    if not isinstance(data, dict):
        return None
    msg_id, reply_q = data.get("_msg_id"), data.get("_reply_q")
    if not (isinstance(msg_id, str) and isinstance(reply_q, str) and msg_id and reply_q):
        return None
    failure = json.dumps(serialize_failure(MalformedMessage(f"rejected: {error}"),
                                           include_traceback=False))
    return reply_q, reply_body(msg_id, None, failure, True)
