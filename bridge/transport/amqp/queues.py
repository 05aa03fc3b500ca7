"""Every exchange and queue the AMQP driver declares, with oslo.messaging's names and flags
(docs/wire.md 2.2, 2.3); the one place that decides them.

A server (listener) declares its topic exchange, the shared ``<topic>`` queue, its
``<topic>.<server>`` queue, the ``<topic>_fanout`` exchange and what it reads fanout
casts from: a fanout queue of its own, or (``rabbit_stream_fanout``) the stream
``<topic>_fanout`` shared by every server of the topic. A client declares its reply
queue on its first call, and before sending the exchange it sends to.

Queues shared with oslo.messaging peers (the topic queues, the stream) keep
oslo.messaging's flags: a peer declaring other flags gets a 406 PRECONDITION_FAILED,
and so would rpc-bridge. Queues only rpc-bridge uses (its reply and fanout queues)
are declared in a form every RabbitMQ accepts, 4.3 with its defaults included:
exclusive (they go with their connection and are declared again on reconnection),
or quorum queues with ``rabbit_transient_quorum_queue``, as oslo.messaging declares them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from concurrent.futures import Future
from typing import Any

from bridge.target import Target
from bridge.transport.amqp.connection import AmqpConnection, ExchangeDeclare
from bridge.transport.amqp.declares import Declarer
from bridge.transport.amqp.options import AmqpOptions
from bridge.transport.amqp.refusals import code_of, denied_feature

LOG = logging.getLogger(__name__)

_memory_limits_noted = False
#: A 406 for a queue that exists durable where the declaration was not.
_INEQUIVALENT_DURABLE = re.compile(
    r"inequivalent arg 'durable' for queue '([^']*)' in vhost '[^']*': received 'false' but "
    r"current is 'true'")


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
    """Arguments of the reply and fanout queues with ``rabbit_transient_quorum_queue``
    (as oslo.messaging declares them)."""
    args: dict[str, Any] = {}
    if opts.rabbit_transient_queues_ttl > 0:
        args["x-expires"] = opts.rabbit_transient_queues_ttl * 1000
    if opts.rabbit_ha_queues:
        args["x-ha-policy"] = "all"
    if opts.rabbit_transient_quorum_queue:
        args.update(_quorum_arguments(opts))
    return args


def _quorum_arguments(opts: AmqpOptions) -> dict[str, Any]:
    global _memory_limits_noted
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if opts.rabbit_quorum_delivery_limit:
        args["x-delivery-limit"] = opts.rabbit_quorum_delivery_limit
    # Sent as oslo.messaging sends them: RabbitMQ 4.x stores and compares them (a
    # declaration without them is a 406) but no longer applies them.
    if opts.rabbit_quorum_max_memory_length:
        args["x-max-in-memory-length"] = opts.rabbit_quorum_max_memory_length
    if opts.rabbit_quorum_max_memory_bytes:
        args["x-max-in-memory-bytes"] = opts.rabbit_quorum_max_memory_bytes
    if not _memory_limits_noted and ("x-max-in-memory-length" in args
                                     or "x-max-in-memory-bytes" in args):
        _memory_limits_noted = True
        LOG.info("rabbit_quorum_max_memory_length/_bytes are declared as oslo.messaging "
                 "declares them; RabbitMQ 4.x keeps quorum queue messages on disk and "
                 "ignores these limits (x-max-length / x-max-length-bytes policies limit a "
                 "queue there)")
    return args


def private_queue_flags(opts: AmqpOptions) -> dict[str, Any]:
    """``durable``, ``exclusive``, ``auto_delete`` and ``arguments`` of a reply queue or a
    server's own fanout queue."""
    if opts.rabbit_transient_quorum_queue:
        return {"durable": True, "exclusive": False, "auto_delete": False,
                "arguments": transient_queue_arguments(opts)}
    if opts.rabbit_transient_queues_ttl > 0:
        # Durable, classic, expiring: it outlives a closed connection with the replies in
        # it (an exclusive queue would go, and take them along), and RabbitMQ 4.3 denies
        # queues that are neither durable nor exclusive, oslo.messaging's form.
        return {"durable": True, "exclusive": False, "auto_delete": False,
                "arguments": {**transient_queue_arguments(opts), "x-queue-type": "classic"}}
    # No expiry configured: exclusive, so that it goes with its connection at least.
    return {"durable": False, "exclusive": True, "auto_delete": False, "arguments": {}}


def stream_arguments(opts: AmqpOptions) -> dict[str, Any]:
    """Arguments of the fanout stream: its retention is ``rabbit_transient_queues_ttl``."""
    args: dict[str, Any] = {"x-queue-type": "stream"}
    if opts.rabbit_transient_queues_ttl > 0:
        args["x-max-age"] = f"{opts.rabbit_transient_queues_ttl}s"
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
    #: The server's own fanout queue, or the topic's stream with ``rabbit_stream_fanout``.
    fanout_queue: str
    stream: bool = False

    @classmethod
    def for_target(cls, target: Target, control_exchange: str, fanout_queue: str,
                   stream: bool = False) -> ServerQueues:
        """The names for ``target``, reading fanout casts from ``fanout_queue``."""
        return cls(exchange=target.exchange or control_exchange, topic=str(target.topic),
                   server_key=f"{target.topic}.{target.server}",
                   fanout_exchange=f"{target.topic}_fanout", fanout_queue=fanout_queue,
                   stream=stream)

    def consumed(self) -> tuple[tuple[str, str], ...]:
        """``(consumer tag, queue)`` of each consumer: topic, server, fanout."""
        return (("1", self.topic), ("2", self.server_key), ("3", self.fanout_queue))


def _server_declarations(declarer: Declarer, names: ServerQueues, opts: AmqpOptions,
                         durable: bool) -> list[Future]:
    futures = [declarer.exchange(names.exchange, "topic", durable=topic_durable(opts),
                                 auto_delete=opts.amqp_auto_delete)]
    for name in (names.topic, names.server_key):
        futures.append(declarer.queue(name, durable=durable, auto_delete=opts.amqp_auto_delete,
                                      arguments=topic_queue_arguments(opts)))
        futures.append(declarer.bind(name, names.exchange, name))
    _, type_, fanout_durable, auto_delete = fanout_exchange(names.topic, opts)
    futures.append(declarer.exchange(names.fanout_exchange, type_, durable=fanout_durable,
                                     auto_delete=auto_delete))
    if names.stream:
        futures.append(declarer.queue(names.fanout_queue, durable=True,
                                      arguments=stream_arguments(opts)))
    else:
        futures.append(declarer.queue(names.fanout_queue, **private_queue_flags(opts)))
    futures.append(declarer.bind(names.fanout_queue, names.fanout_exchange, names.topic))
    return futures


def declare_server_queues(conn: AmqpConnection, names: ServerQueues, opts: AmqpOptions,
                          transient_refused: bool = False) -> None:
    """Declare and bind what a server consumes (on the I/O thread, before consuming).

    Topic queues get oslo.messaging's flags, or are durable when ``transient_refused``
    (see :func:`durable_instead`). Raises the broker's refusal.
    """
    conn.settle(_server_declarations(conn.declarer, names, opts,
                                     topic_durable(opts) or transient_refused))


def durable_instead(error: BaseException, conn: AmqpConnection, names: ServerQueues,
                    opts: AmqpOptions) -> bool:
    """Whether the topic queues are to be declared durable next, after ``error``.

    That is when RabbitMQ denies their transient form (4.3's default: a 541 that closes
    the connection; no oslo.messaging peer with the same options can use that broker
    either), or when one exists durable already (406 on ``durable``) on such a broker
    (another server of the topic met the refusal first; :func:`transient_refused`
    asks). They are then declared as ``amqp_durable_queues=true`` declares them; the
    topic exchange keeps its flags.
    """
    if topic_durable(opts):
        return False
    if denied_feature(error) == "transient_nonexcl_queues":
        why = "RabbitMQ refuses transient queues (deprecated feature transient_nonexcl_queues)"
    else:
        match = _INEQUIVALENT_DURABLE.search(str(error))
        if (code_of(error) != 406 or not match
                or match.group(1) not in (names.topic, names.server_key)
                or not transient_refused(conn)):
            return False
        why = (f"the queue {match.group(1)!r} exists durable and RabbitMQ refuses transient "
               "queues (deprecated feature transient_nonexcl_queues)")
    LOG.warning("%s: the queues %r and %r are declared durable, as amqp_durable_queues=true "
                "declares them; oslo.messaging services of this topic need "
                "amqp_durable_queues=true (or the quorum options)", why, names.topic,
                names.server_key)
    return True


def transient_refused(conn: AmqpConnection) -> bool:
    """Whether the broker denies transient queues: declares a throwaway one (it expires
    after 1 s). On a broker that denies them the connection is closed: the caller asks
    for a new one."""
    name = f"rpc-bridge-probe-{uuid.uuid4().hex}"
    try:
        conn.settle([conn.declarer.queue(name, durable=False,
                                         arguments={"x-expires": 1000})])
    except Exception as exc:
        if denied_feature(exc) == "transient_nonexcl_queues":
            return True
        raise
    return False


def declare_reply_queue(declarer: Declarer, name: str, opts: AmqpOptions) -> Future:
    """Declare a client's reply queue (see :func:`private_queue_flags`)."""
    return declarer.queue(name, **private_queue_flags(opts))
