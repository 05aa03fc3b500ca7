"""The broker's permanent refusals, told apart from an unreachable broker, and explained.

A refused login, an unknown virtual host, a declaration that conflicts with an
existing queue or exchange (406 PRECONDITION_FAILED), a queue form the broker denies
(541, a deprecated feature such as ``transient_nonexcl_queues``), missing permissions
(403), or a TLS handshake either side refused: trying again changes nothing. Such a
refusal is reported at once, as a :class:`BrokerRefused` whose text names the options
(or the broker setting) to change, instead of being retried as "unreachable".

A queue locked by another connection (405, an exclusive queue whose old connection
the broker has not dropped yet) and a queue whose home node is down (404) pass with
time: they are retried like an unreachable broker.
"""

from __future__ import annotations

import logging
import re
import ssl
import time

import amqp.exceptions

from bridge.exceptions import MessageDeliveryFailure

#: The 406 text names the argument that differs: ``inequivalent arg 'durable' for queue 'q'``.
_EXCHANGE_NAME = re.compile(r"exchange '([^']*)'")
_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for (queue|exchange) '([^']*)'")
#: RabbitMQ 4.3's 541 text: "Feature `transient_nonexcl_queues` is deprecated. Its use is
#: not permitted per the configuration ...".
_DEPRECATED = re.compile(r"[Ff]eature `([a-z_]+)` is deprecated")

#: The options that decide each argument of a queue or exchange, as oslo.messaging names
#: them, for the text of a 406.
OPTIONS_OF_ARGUMENT = {
    "durable": "amqp_durable_queues (topic queues and exchanges), rabbit_quorum_queue, "
               "rabbit_transient_quorum_queue (reply and fanout queues)",
    "auto_delete": "amqp_auto_delete",
    "x-queue-type": "rabbit_quorum_queue (topic queues), rabbit_transient_quorum_queue "
                    "(reply and fanout queues), rabbit_stream_fanout (fanout)",
    "x-expires": "rabbit_transient_queues_ttl",
    "x-max-age": "rabbit_transient_queues_ttl (with rabbit_stream_fanout)",
    "x-delivery-limit": "rabbit_quorum_delivery_limit",
    "x-max-in-memory-length": "rabbit_quorum_max_memory_length",
    "x-max-in-memory-bytes": "rabbit_quorum_max_memory_bytes",
    "x-ha-policy": "rabbit_ha_queues",
    "exclusive": "use_queue_manager, hostname and processname (two processes share a name)",
}

#: What to set when the broker denies transient (non-durable, non-exclusive) queues.
TRANSIENT_QUEUES_HINT = ("set amqp_durable_queues=true or rabbit_quorum_queue=true and "
                         "rabbit_transient_quorum_queue=true")


class ReconnectNow(Exception):  # noqa: N818 - a request, not an error
    """Raised by a connection's ``setup`` that needs a new connection at once (a queue to
    declare otherwise after a refusal), not a failed attempt."""


class BrokerRefused(MessageDeliveryFailure):
    """RabbitMQ refused something for good; the text says what and what to set.

    ``error`` is the broker's (or the TLS layer's) own exception.
    """

    def __init__(self, msg: str, error: BaseException | None = None) -> None:
        super().__init__(msg)
        self.error = error


def code_of(error: BaseException | None) -> int:
    """The AMQP reply code of a broker error (0 when it has none)."""
    return int(getattr(error, "code", 0) or 0) if isinstance(error, amqp.exceptions.AMQPError) \
        else 0


def denied_feature(error: BaseException | None) -> str | None:
    """The deprecated feature a 541 names (``transient_nonexcl_queues``), if it names one."""
    if code_of(error) != 541:
        return None
    match = _DEPRECATED.search(str(error))
    return match.group(1) if match else None


def refused_for_good(error: BaseException | None) -> bool:
    """Whether trying again (the same declarations, the same credentials) cannot help."""
    if isinstance(error, BrokerRefused):
        return True
    if isinstance(error, ssl.SSLError):
        # A TLS connection cut during the handshake may be a broker restarting.
        return not isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError,
                                      ssl.SSLSyscallError, ssl.SSLWantReadError,
                                      ssl.SSLWantWriteError))
    if not isinstance(error, amqp.exceptions.AMQPError):
        return False
    code = code_of(error)
    if code in (404, 405):  # a home node down, a queue still locked: both pass
        return False
    if code == 541:
        return denied_feature(error) is not None
    return isinstance(error, (amqp.exceptions.IrrecoverableChannelError,
                              amqp.exceptions.IrrecoverableConnectionError))


def explain(error: BaseException, where: str = "") -> BrokerRefused:
    """A :class:`BrokerRefused` for ``error``, naming what to set; ``where``: the host."""
    if isinstance(error, BrokerRefused):
        return error
    at = f" on {where}" if where else ""
    code = code_of(error)
    # The broker's own words ("PRECONDITION_FAILED - inequivalent arg ..."), first line.
    text = (getattr(error, "reply_text", "") or str(error)).splitlines()[0]
    if isinstance(error, ssl.SSLError):
        hint = ("check ssl_ca_file, ssl_cert_file, ssl_key_file and the host name in the "
                "transport URL (see docs/amqp.md, TLS)")
        return BrokerRefused(f"The TLS handshake{at} was refused ({text}): {hint}", error)
    if code == 541 and denied_feature(error):
        feature = denied_feature(error)
        if feature == "transient_nonexcl_queues":
            return BrokerRefused(f"RabbitMQ{at} refused a transient queue (541, deprecated "
                                 f"feature {feature} denied): {TRANSIENT_QUEUES_HINT}", error)
        return BrokerRefused(f"RabbitMQ{at} refused a deprecated feature (541, {feature} "
                             f"denied): permit it in rabbitmq.conf "
                             f"(deprecated_features.permit.{feature} = true) or stop "
                             "using it", error)
    if code == 406:
        match = _INEQUIVALENT.search(text)
        if match:
            argument, kind, name = match.groups()
            options = OPTIONS_OF_ARGUMENT.get(argument, "the queue options")
            return BrokerRefused(
                f"RabbitMQ{at} refused to declare {kind} {name!r}: it exists with another "
                f"{argument!r} (406 {text}): set {options} as the "
                f"{kind}'s other users (oslo.messaging services) do, or delete the {kind} "
                "if nothing uses it", error)
        return BrokerRefused(f"RabbitMQ{at} refused a declaration (406 {text}): see "
                             "docs/amqp.md, Refusals", error)
    if code == 403:
        if "login" in text.lower():
            return BrokerRefused(f"RabbitMQ{at} refused the login (403 {text}): check the "
                                 "user name and password in the transport URL", error)
        return BrokerRefused(f"RabbitMQ{at} refused access (403 {text}): "
                             "give the user configure, write and read permissions on the "
                             "virtual host (rabbitmqctl set_permissions)", error)
    if code == 530:
        return BrokerRefused(f"RabbitMQ{at} refused the virtual host (530 {text}): check the "
                             "transport URL's virtual host, and that the user may use it", error)
    return BrokerRefused(f"RabbitMQ{at} refused the connection for good ({code} {text})",
                         error)


class RefusalMemory:
    """One connection's refusals: exchanges refused lately, and what was logged.

    A refused exchange declaration (a 406 before a send) is remembered for ``hold`` s,
    so that the sends to that exchange fail at once; the next send after that tries
    the declaration again. A refusal is logged once at error level, its repeats at
    debug level.
    """

    def __init__(self, log: logging.Logger, hold: float = 10.0) -> None:
        self._log = log
        self._hold = hold
        self._exchanges: dict[str, tuple[float, BrokerRefused]] = {}
        self._logged = ""

    def channel_closed(self, reply_code: int, reply_text: str, class_id: int, method_id: int,
                       where: str = "") -> BaseException:
        """The broker closed the publishing channel: the error to raise (and reconnect).

        A refused exchange declaration is remembered (its text names the exchange).
        """
        error = amqp.exceptions.error_for_code(reply_code, reply_text, (class_id, method_id),
                                               amqp.exceptions.ChannelError)
        match = _EXCHANGE_NAME.search(reply_text)
        if (class_id, method_id) == (40, 10) and match and refused_for_good(error):
            self._exchanges[match.group(1)] = (time.monotonic(), explain(error, where))
        return error

    def failed_attempt(self, error: BaseException, where: str,
                       connected_before: bool) -> BrokerRefused | None:
        """A connection attempt failed: its refusal, logged, if it is one."""
        if not refused_for_good(error):
            return None
        refusal = explain(error, where)
        self.log(refusal, "trying again" if connected_before else "")
        return refusal

    def exchange(self, name: str) -> BrokerRefused | None:
        """The recent refusal of exchange ``name``, if any."""
        entry = self._exchanges.get(name)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self._hold:
            self._exchanges.pop(name, None)
            return None
        return entry[1]

    def log(self, refusal: BrokerRefused, then: str = "") -> None:
        """Log ``refusal`` (and what happens next)."""
        text = f"{refusal}" + (f"; {then}" if then else "")
        if str(refusal) == self._logged:
            self._log.debug("%s", text)
            return
        self._logged = str(refusal)
        self._log.error("%s", text)
