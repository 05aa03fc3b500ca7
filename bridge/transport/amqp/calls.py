"""The calls a client has in flight: each a Future completed by its reply, or by the timer
on timeout.

A call waits for a reply with its ``_msg_id`` on the client's reply queue. It ends
with the result or the rebuilt remote failure, or :class:`MessagingTimeout` after
its ``timeout`` s, or after ``call_monitor_timeout`` s without a heartbeat (a
heartbeat is a reply with ``ending: false`` and no result; it moves the call-monitor
deadline on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from bridge.exceptions import MessagingException, MessagingTimeout, deserialize_failure
from bridge.timer import Timer

LOG = logging.getLogger(__name__)


def settle(future: Future, result: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``future`` unless it is done already (its caller may have cancelled it)."""
    if future.done():
        return
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled meanwhile


class Call:
    """One call in flight: its Future, deadlines and any partial (old-style) reply."""

    __slots__ = ("future", "msg_id", "monitor_timeout", "monitor_deadline", "timers",
                 "result", "failure")

    def __init__(self, future: Future, msg_id: str, monitor_timeout: float | None) -> None:
        self.future = future
        self.msg_id = msg_id
        self.monitor_timeout = monitor_timeout
        self.monitor_deadline: float | None = None
        self.timers: list[list[Any]] = []
        self.result: Any = None
        self.failure: Any = None


class Calls:
    """The calls in flight, by ``_msg_id``; their timeouts run on ``timer``.

    ``why_timed_out()`` may add a reason to a timeout's message (the broker is
    unreachable, and why).
    """

    def __init__(self, timer: Timer, allowed_remote_exmods: list[str],
                 why_timed_out: Callable[[], str | None]) -> None:
        self._timer = timer
        self._allowed = allowed_remote_exmods
        self._why_timed_out = why_timed_out
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call: Call, timeout: float | None) -> None:
        """Wait for ``call``'s reply, for ``timeout`` s (None or 0: no limit but its monitor)."""
        self._calls[call.msg_id] = call
        # A caller that cancels (a gateway whose gRPC client went away) leaves
        # no pending reply or timer behind.
        call.future.add_done_callback(lambda done: done.cancelled() and self.forget(call))
        now = self._timer.now()
        if timeout:
            call.timers.append(self._timer.schedule(
                now + timeout, lambda: self._expire(call.msg_id, False)))
        if call.monitor_timeout:
            call.monitor_deadline = now + call.monitor_timeout
            call.timers.append(self._timer.schedule(
                call.monitor_deadline, lambda: self._expire(call.msg_id, True)))

    def forget(self, call: Call) -> None:
        """Stop waiting for ``call`` (its Future is settled elsewhere, or cancelled)."""
        if self._calls.pop(call.msg_id, None) is not None:
            self._cancel_timers(call)

    def fail(self, call: Call, exc: BaseException) -> None:
        """End ``call`` with ``exc`` unless it has ended already."""
        if self._calls.pop(call.msg_id, None) is None:
            return
        self._cancel_timers(call)
        settle(call.future, exc=exc)

    def fail_all(self, exc: BaseException) -> None:
        """End every call in flight with ``exc``."""
        for msg_id in list(self._calls):
            call = self._calls.pop(msg_id, None)
            if call is not None:
                self._cancel_timers(call)
                settle(call.future, exc=exc)

    def on_reply(self, data: dict[str, Any]) -> None:
        """A decoded reply (I/O thread): a heartbeat, a partial reply, or the end."""
        msg_id = data.get("_msg_id")
        call = self._calls.get(msg_id) if isinstance(msg_id, str) else None
        if call is None:
            LOG.info("No calling threads waiting for msg_id %s", msg_id)
            return
        if data.get("failure") is not None:
            call.failure = data["failure"]
        if data.get("result") is not None:
            call.result = data["result"]
        if not data.get("ending"):
            if data.get("result") is None and call.monitor_timeout:
                call.monitor_deadline = self._timer.now() + call.monitor_timeout
            return
        if self._calls.pop(call.msg_id, None) is None:
            return
        self._cancel_timers(call)
        if call.failure is not None:
            settle(call.future, exc=self._remote_failure(call))
        else:
            settle(call.future, result=call.result)

    def _remote_failure(self, call: Call) -> BaseException:
        failure = call.failure
        try:
            if isinstance(failure, str):
                failure = json.loads(failure)
            if not isinstance(failure, dict):
                raise ValueError("not an object")
            return deserialize_failure(failure, self._allowed)
        except ValueError as error:
            return MessagingException(
                f"Unreadable failure in the reply to {call.msg_id}: {error}")

    def _cancel_timers(self, call: Call) -> None:
        for entry in call.timers:
            self._timer.cancel(entry)

    def _expire(self, msg_id: str, monitor: bool) -> None:
        """A deadline of the call passed (timer thread): the call, or its monitor's."""
        call = self._calls.get(msg_id)
        if call is None:
            return
        if monitor and call.monitor_deadline is not None:
            if call.monitor_deadline > self._timer.now():  # a heartbeat moved it on
                call.timers.append(self._timer.schedule(
                    call.monitor_deadline, lambda: self._expire(msg_id, True)))
                return
        if self._calls.pop(msg_id, None) is None:
            return
        self._cancel_timers(call)
        reason = "call monitor" if monitor else "reply"
        text = f"Timed out waiting for a {reason} to message ID {msg_id}"
        why = self._why_timed_out()
        if why:
            text += f" ({why})"
        settle(call.future, exc=MessagingTimeout(text))
