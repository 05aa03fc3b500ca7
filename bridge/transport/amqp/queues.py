"""Every exchange and queue the AMQP driver declares, with oslo.messaging's names and flags
(docs/wire.md 2.2, 2.3); the one place that decides them.

A server (listener) declares its topic exchange, the shared ``<topic>`` queue, its
``<topic>.<server>`` queue, the ``<topic>_fanout`` exchange and a fanout queue of its
own. A client declares its reply queue, and before sending the exchange it sends to.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from bridge.target import Target
from bridge.transport.amqp.connection import ExchangeDeclare
from bridge.transport.amqp.options import AmqpOptions


def topic_durable(opts: AmqpOptions) -> bool:
    """Whether the topic exchange and topic queues are durable."""
    return bool(opts.amqp_durable_queues or opts.rabbit_quorum_queue)


def topic_queue_arguments(opts: AmqpOptions) -> dict[str, Any]:
    """Arguments of the ``<topic>`` and ``<topic>.<server>`` queues."""
    args: dict[str, Any] = {}
    if opts.rabbit_ha_queues:
        args["x-ha-policy"] = "all"
    if opts.rabbit_quorum_queue:
        args.update(_quorum_arguments(opts))
    return args


def transient_queue_arguments(opts: AmqpOptions) -> dict[str, Any]:
    """Arguments of the reply and fanout queues."""
    args: dict[str, Any] = {}
    if opts.rabbit_transient_queues_ttl > 0:
        args["x-expires"] = opts.rabbit_transient_queues_ttl * 1000
    if opts.rabbit_ha_queues:
        args["x-ha-policy"] = "all"
    if opts.rabbit_transient_quorum_queue:
        args.update(_quorum_arguments(opts))
    return args


def _quorum_arguments(opts: AmqpOptions) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if opts.rabbit_quorum_delivery_limit:
        args["x-delivery-limit"] = opts.rabbit_quorum_delivery_limit
    if opts.rabbit_quorum_max_memory_length:
        args["x-max-in-memory-length"] = opts.rabbit_quorum_max_memory_length
    if opts.rabbit_quorum_max_memory_bytes:
        args["x-max-in-memory-bytes"] = opts.rabbit_quorum_max_memory_bytes
    return args


def consumer_arguments(opts: AmqpOptions) -> dict[str, Any] | None:
    """Arguments of every server consumer."""
    return {"x-cancel-on-ha-failover": True} if opts.enable_cancel_on_failover else None


# -- exchanges a client sends to ---------------------------------------------------------------


def topic_exchange(name: str, opts: AmqpOptions) -> ExchangeDeclare:
    """The topic exchange a call or cast goes to."""
    return (name, "topic", topic_durable(opts), opts.amqp_auto_delete)


def fanout_exchange(topic: str, opts: AmqpOptions) -> ExchangeDeclare:
    """The exchange of a fanout cast (``<topic>_fanout``, no exchange prefix)."""
    return (f"{topic}_fanout", "fanout", bool(opts.rabbit_transient_quorum_queue), True)


# -- a server's queues -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerQueues:
    """The names one server (listener) declares and consumes."""

    exchange: str
    topic: str
    server_key: str
    fanout_exchange: str
    fanout_queue: str

    @classmethod
    def for_target(cls, target: Target, control_exchange: str) -> ServerQueues:
        """The names for ``target``; a new fanout queue name each time."""
        return cls(exchange=target.exchange or control_exchange, topic=str(target.topic),
                   server_key=f"{target.topic}.{target.server}",
                   fanout_exchange=f"{target.topic}_fanout",
                   fanout_queue=f"{target.topic}_fanout_{uuid.uuid4().hex}")

    def consumed(self) -> tuple[tuple[str, str], ...]:
        """``(consumer tag, queue)`` of each consumer: topic, server, fanout."""
        return (("1", self.topic), ("2", self.server_key), ("3", self.fanout_queue))


def declare_server_queues(channel: Any, names: ServerQueues, opts: AmqpOptions) -> None:
    """Declare and bind what a server consumes (on a new connection, before consuming)."""
    durable = topic_durable(opts)
    channel.exchange_declare(names.exchange, "topic", durable=durable,
                             auto_delete=opts.amqp_auto_delete)
    for name in (names.topic, names.server_key):
        channel.queue_declare(name, durable=durable, auto_delete=opts.amqp_auto_delete,
                              exclusive=False, arguments=topic_queue_arguments(opts))
        channel.queue_bind(name, names.exchange, name)
    _, type_, fanout_durable, auto_delete = fanout_exchange(names.topic, opts)
    channel.exchange_declare(names.fanout_exchange, type_, durable=fanout_durable,
                             auto_delete=auto_delete)
    channel.queue_declare(names.fanout_queue, durable=fanout_durable, auto_delete=False,
                          exclusive=False, arguments=transient_queue_arguments(opts))
    channel.queue_bind(names.fanout_queue, names.fanout_exchange, names.topic)


def declare_reply_queue(channel: Any, name: str, opts: AmqpOptions) -> None:
    """Declare a client's reply queue: not exclusive, not auto-delete, ``x-expires``."""
    channel.queue_declare(name, durable=opts.rabbit_transient_quorum_queue, auto_delete=False,
                          exclusive=False, arguments=transient_queue_arguments(opts))


def reply_queue_name() -> str:
    """A new reply queue name (``reply_<uuid4 hex>``)."""
    return f"reply_{uuid.uuid4().hex}"
