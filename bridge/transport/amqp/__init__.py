"""``rabbit://`` (also ``kombu://``, ``amqp://``): oslo.messaging's RabbitMQ wire, through kombu.

Servers declare exactly the exchanges and queues an oslo.messaging server
declares (docs/wire.md 2.2, 2.3) and speak its envelope (2.6-2.8), so oslo peers and
rpc-bridge peers share topics in either direction. See docs/amqp.md.

The modules, one concept each:

* :mod:`~bridge.transport.amqp.options`: the ``[oslo_messaging_rabbit]`` options, URLs;
* :mod:`~bridge.transport.amqp.queues`: every exchange and queue declared, with
  :mod:`~bridge.transport.amqp.queue_names` (random or queue-manager names) and
  :mod:`~bridge.transport.amqp.streams` (fanout through a stream);
* :mod:`~bridge.transport.amqp.envelope`: the message format (encode, decode, ids);
* :mod:`~bridge.transport.amqp.connection`: one self-healing connection and its I/O
  thread, with :mod:`~bridge.transport.amqp.confirms` (publishes awaiting the broker's
  confirm), :mod:`~bridge.transport.amqp.declares` (declarations on a channel of their
  own), :mod:`~bridge.transport.amqp.refusals` (permanent refusals, explained),
  :mod:`~bridge.transport.amqp.hosts` (which host next),
  :mod:`~bridge.transport.amqp.frames` (a publish's raw frames) and
  :mod:`~bridge.transport.amqp.sockets` (how the socket is read and cut);
* :mod:`~bridge.transport.amqp.listener`, :mod:`~bridge.transport.amqp.incoming` and
  :mod:`~bridge.transport.amqp.replies`: the server side;
* :mod:`~bridge.transport.amqp.client`, :mod:`~bridge.transport.amqp.reply_queue` and
  :mod:`~bridge.transport.amqp.calls`: the client side.

Every listener and every client transport owns one connection, whose I/O thread
reads (deliveries, confirms, replies, heartbeats) while callers only write. A call
is a Future completed by the reply consumer (or by the driver's timer thread on
timeout), so :meth:`AmqpDriver.send_async` keeps any number of calls in flight
without a thread each; :meth:`AmqpDriver.send` just waits on that Future.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from bridge.target import Target
from bridge.timer import MONOTONIC, Clock, Timer
from bridge.transport.amqp.client import AmqpClient
from bridge.transport.amqp.listener import AmqpListener
from bridge.transport.amqp.options import GROUP, AmqpOptions, kombu_urls
from bridge.transport.base import Capabilities, Driver, Listener

__all__ = ["AmqpDriver", "AmqpListener"]


class AmqpDriver(Driver):
    """The RabbitMQ driver: oslo.messaging's wire format over kombu/py-amqp."""

    wire = "amqp"
    implements = Capabilities(schemes=("rabbit", "kombu", "amqp"), option_group=GROUP,
                              options_type=AmqpOptions, non_blocking_send=True, reset=True)
    #: The clock of the driver's timer (call timeouts, reply retries); tests may set a
    #: :class:`~bridge.timer.ManualClock` on the class before building a transport.
    clock: Clock = MONOTONIC

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        self.hosts = kombu_urls(url)
        #: One timer thread for every call's timeouts and every listener's reply retries.
        self.timer = Timer("bridge-amqp-timeouts", self.clock)
        self.client = AmqpClient(self.hosts, self.options, settings.control_exchange,
                                 self.timer, allowed_remote_exmods)

    @property
    def connected(self) -> bool:
        """False while the client's connection, once started, is down."""
        conn = self.client.connection
        return conn is None or conn.connected

    @property
    def reply_queue(self) -> str:
        """The name of this transport's reply queue."""
        return self.client.reply_queue

    def listen(self, target: Target) -> Listener:
        return AmqpListener(self, target)

    def send_async(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
                   wait_for_reply: bool = True, timeout: float | None = None,
                   call_monitor_timeout: float | None = None, retry: int | None = None,
                   at_least_once: bool = False) -> Future:
        """Send a call (or a cast) without blocking; return a Future of its outcome.

        For a call the Future gets the result, the rebuilt remote exception,
        :class:`MessagingTimeout` (after ``timeout`` s, or ``call_monitor_timeout`` s
        without a heartbeat), :class:`MessageUndeliverable` (``at_least_once`` and no
        queue bound) or :class:`MessageDeliveryFailure` (``retry`` exhausted). For a
        cast it gets None once the broker confirmed the message. Callbacks added to
        the Future run on the driver's I/O or timer thread and must not block. Any
        number of calls may be in flight at once on one connection and reply queue.
        """
        return self.client.send_async(target, ctxt, message, wait_for_reply=wait_for_reply,
                                      timeout=timeout,
                                      call_monitor_timeout=call_monitor_timeout, retry=retry,
                                      at_least_once=at_least_once)

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        future = self.send_async(target, ctxt, message, wait_for_reply=wait_for_reply,
                                 timeout=timeout, call_monitor_timeout=call_monitor_timeout,
                                 retry=retry, at_least_once=at_least_once)
        return future.result()

    def cleanup(self) -> None:
        self.client.cleanup()
        self.timer.close()
