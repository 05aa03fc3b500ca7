"""``memory://``: an in-process broker behind the same driver interface as the real wires.

It keeps the semantics of the AMQP wire: a shared topic queue served round-robin,
a queue per server, a fanout queue per listener, messages waiting in a queue until a
server takes them (calls expire with their timeout), values copied through JSON.
Transports with the same URL in one process share one broker; ``memory://name``
or ``memory:///vhost`` gives a separate one (the query is not part of the broker's
name). For tests of authentication, ``?identity=NAME`` makes a client transport send as
NAME, as a broker-validated AMQP ``user_id`` would (:class:`bridge.auth.Credentials`).
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bridge.auth.identity import Credentials
from bridge.exceptions import (
    MessageUndeliverable,
    MessagingTimeout,
    deserialize_failure,
    serialize_failure,
)
from bridge.target import Target
from bridge.transport.base import Capabilities, Driver, IncomingMessage, Listener

LOG = logging.getLogger(__name__)


@dataclass
class _Envelope:
    body: str  # JSON of {"ctxt", "message"}: the wire copy of the request
    deadline: float | None
    client_timeout: float | None
    reply: _ReplyWaiter | None
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sender: str | None = None  # the sending transport's ?identity=


class _Queue:
    """A named queue: a backlog, and consumers served in turn."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.backlog: deque[_Envelope] = deque()
        self.consumers: list[_MemoryListener] = []
        self._turn = itertools.count()

    def next_consumer(self) -> _MemoryListener | None:
        if not self.consumers:
            return None
        return self.consumers[next(self._turn) % len(self.consumers)]


class _Broker:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.queues: dict[str, _Queue] = {}
        self.fanout: dict[str, set[str]] = {}  # fanout exchange -> queue names

    def declare(self, name: str) -> _Queue:
        with self.lock:
            q = self.queues.get(name)
            if q is None:
                q = self.queues[name] = _Queue(name)
            return q

    def publish(self, name: str, envelope: _Envelope) -> bool:
        """Route to queue ``name``; False when no such queue exists."""
        with self.lock:
            q = self.queues.get(name)
            if q is None:
                return False
            consumer = q.next_consumer()
            if consumer is None:
                q.backlog.append(envelope)
            else:
                consumer.deliver(q, envelope)
            return True

    def publish_fanout(self, exchange: str, envelope: _Envelope) -> None:
        with self.lock:
            for name in list(self.fanout.get(exchange, ())):
                copy = _Envelope(envelope.body, None, None, None, sender=envelope.sender)
                self.publish(name, copy)

    def subscribe(self, q: _Queue, consumer: _MemoryListener) -> None:
        with self.lock:
            q.consumers.append(consumer)
            while q.backlog:
                consumer_now = q.next_consumer()
                assert consumer_now is not None
                consumer_now.deliver(q, q.backlog.popleft())

    def unsubscribe(self, q: _Queue, consumer: _MemoryListener) -> None:
        with self.lock:
            if consumer in q.consumers:
                q.consumers.remove(consumer)

    def requeue(self, q: _Queue, envelope: _Envelope) -> None:
        with self.lock:
            consumer = q.next_consumer()
            if consumer is None:
                q.backlog.appendleft(envelope)
            else:
                consumer.deliver(q, envelope)

    def delete(self, name: str) -> None:
        with self.lock:
            self.queues.pop(name, None)
            for names in self.fanout.values():
                names.discard(name)


_BROKERS: dict[str, _Broker] = {}
_BROKERS_LOCK = threading.Lock()


def _broker_for(key: str) -> _Broker:
    with _BROKERS_LOCK:
        broker = _BROKERS.get(key)
        if broker is None:
            broker = _BROKERS[key] = _Broker()
        return broker


class _ReplyWaiter:
    """Where one call's heartbeats and final reply arrive."""

    def __init__(self) -> None:
        self.replies: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.abandoned = False


class MemoryIncoming(IncomingMessage):
    """A request taken from an in-memory queue."""

    wire = "memory"

    def __init__(self, envelope: _Envelope) -> None:
        data = json.loads(envelope.body)
        self.envelope = envelope
        self.message = data["message"]
        self.client_timeout = envelope.client_timeout
        self.deadline = envelope.deadline
        self.ctxt = dict(data["ctxt"])
        self.ctxt["client_timeout"] = envelope.client_timeout
        self.wants_reply = envelope.reply is not None
        self.credentials = Credentials("memory", broker_user=envelope.sender)

    def reply(self, result: Any = None, failure: BaseException | None = None) -> None:
        waiter = self.envelope.reply
        if waiter is None or waiter.abandoned:
            return
        failure_data = serialize_failure(failure) if failure is not None else None
        waiter.replies.put(json.loads(json.dumps(
            {"result": result, "failure": failure_data, "ending": True})))

    def heartbeat(self) -> None:
        waiter = self.envelope.reply
        if waiter is not None and not waiter.abandoned:
            waiter.replies.put({"result": None, "failure": None, "ending": False})


class _MemoryListener(Listener):
    def __init__(self, driver: MemoryDriver, target: Target) -> None:
        super().__init__()
        self.broker = driver.broker
        exchange = target.exchange or driver.settings.control_exchange
        self.queues = [
            self.broker.declare(f"{exchange}/{target.topic}"),
            self.broker.declare(f"{exchange}/{target.topic}.{target.server}"),
        ]
        fanout_name = f"{target.topic}_fanout_{uuid.uuid4().hex}"
        self.fanout_queue = self.broker.declare(fanout_name)
        with self.broker.lock:
            self.broker.fanout.setdefault(f"{target.topic}_fanout", set()).add(fanout_name)
        self.queues.append(self.fanout_queue)
        # What a message's queue says about where its caller sent it.
        self.queue_targets = {
            self.queues[0].name: Target(exchange=exchange, topic=target.topic),
            self.queues[1].name: Target(exchange=exchange, topic=target.topic,
                                        server=target.server),
            fanout_name: Target(exchange=exchange, topic=target.topic, fanout=True),
        }
        self.address = f"{driver.url.original} topic={target.topic} server={target.server}"
        self._inbox: deque[tuple[_Queue, _Envelope]] = deque()
        self._cond = threading.Condition()
        # The run its thread serves: stop() ends it without waiting for that thread,
        # which may be running a method (the blocking executor); a restart starts another.
        self._run_id: object | None = None

    def deliver(self, q: _Queue, envelope: _Envelope) -> None:
        with self._cond:
            self._inbox.append((q, envelope))
            self._cond.notify()

    def _start(self) -> None:
        run_id = object()
        with self._cond:
            self._run_id = run_id
        threading.Thread(target=self._run, args=(run_id,), name="bridge-memory-listener",
                         daemon=True).start()
        for q in self.queues:
            self.broker.subscribe(q, self)

    def _run(self, run_id: object) -> None:
        while True:
            with self._cond:
                while not self._inbox and self._run_id is run_id:
                    self._cond.wait()
                if self._run_id is not run_id:
                    return
                q, envelope = self._inbox.popleft()
            if envelope.deadline is not None and time.monotonic() > envelope.deadline:
                continue  # expired in the queue, like an AMQP message with a TTL
            try:
                incoming = MemoryIncoming(envelope)
                incoming.target = self.queue_targets.get(q.name)
            except (ValueError, KeyError, TypeError) as exc:
                LOG.error("Dropping a malformed in-memory message: %s", exc)
                continue
            if not self.hand_over(incoming):
                self.broker.requeue(q, envelope)  # stopped meanwhile: back to its queue
                return

    def _stop(self) -> None:
        for q in self.queues:
            self.broker.unsubscribe(q, self)
        # Whatever was delivered but not taken goes back to its queue; the thread ends
        # once its hand-over in progress, if any, returns (a message it took meanwhile
        # finds the listener stopped and goes back to its queue too).
        with self._cond:
            self._run_id = None
            self._cond.notify_all()
            pending, self._inbox = list(self._inbox), deque()
        for q, envelope in pending:
            self.broker.requeue(q, envelope)

    def cleanup(self) -> None:
        self.broker.delete(self.fanout_queue.name)


class MemoryDriver(Driver):
    """The in-process transport (``memory://``)."""

    wire = "memory"
    implements = Capabilities(schemes=("memory",), remote=False)

    def __init__(self, url: Any, settings: Any, allowed_remote_exmods: list[str]) -> None:
        super().__init__(url, settings, allowed_remote_exmods)
        hosts = ",".join(h.hostname or "" for h in url.hosts)
        self.broker = _broker_for(f"{hosts}/{url.virtual_host or ''}")
        #: Who this transport's messages come from (tests of bridge.auth), or None.
        self.identity = url.query.get("identity") or None

    def listen(self, target: Target) -> Listener:
        return _MemoryListener(self, target)

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None,
             call_monitor_timeout: float | None = None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        body = json.dumps({"ctxt": ctxt, "message": message})
        if target.fanout:
            self.broker.publish_fanout(f"{target.topic}_fanout",
                                       _Envelope(body, None, None, None, sender=self.identity))
            return None
        exchange = target.exchange or self.settings.control_exchange
        name = f"{exchange}/{target.topic}" + (f".{target.server}" if target.server else "")
        deadline = time.monotonic() + timeout if (wait_for_reply and timeout) else None
        waiter = _ReplyWaiter() if wait_for_reply else None
        envelope = _Envelope(body, deadline, call_monitor_timeout if wait_for_reply else None,
                             waiter, sender=self.identity)
        routed = self.broker.publish(name, envelope)
        if not routed and at_least_once:
            raise MessageUndeliverable(None, exchange, name.split("/", 1)[1], message)
        if waiter is None:
            return None
        return self._wait(waiter, envelope.msg_id, deadline, call_monitor_timeout)

    def _wait(self, waiter: _ReplyWaiter, msg_id: str, deadline: float | None,
              call_monitor_timeout: float | None) -> Any:
        monitor_deadline = (time.monotonic() + call_monitor_timeout
                            if call_monitor_timeout else None)
        try:
            while True:
                limits = [d for d in (deadline, monitor_deadline) if d is not None]
                wait_for = max(0.0, min(limits) - time.monotonic()) if limits else None
                try:
                    reply = waiter.replies.get(timeout=wait_for)
                except queue.Empty:
                    raise MessagingTimeout(
                        f"Timed out waiting for a reply to message ID {msg_id}") from None
                if not reply.get("ending"):
                    if call_monitor_timeout:
                        monitor_deadline = time.monotonic() + call_monitor_timeout
                    continue
                if reply.get("failure") is not None:
                    raise deserialize_failure(reply["failure"], self.allowed_remote_exmods)
                return reply.get("result")
        finally:
            waiter.abandoned = True
