"""Executors: where the server runs each message.

* ``threading`` (default): at most ``executor_thread_pool_size`` (64) messages at once,
  each on a pool thread, or on the wire's own thread when the wire says that thread
  would only wait for the reply (``IncomingMessage.may_run_inline``).
* ``blocking``: on the thread that took the message from the wire.
* ``asyncio``: one event loop in its own thread awaits ``async def`` methods;
  plain methods run in a thread pool of the configured size.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bridge.exceptions import ExecutorLoadFailure

LOG = logging.getLogger(__name__)

SyncWork = Callable[[Any], None]
AsyncWork = Callable[[Any, "AsyncioExecutor"], Awaitable[None]]


class Executor(abc.ABC):
    """Runs the server's processing of each message."""

    name = "abstract"

    def __init__(self, max_workers: int, process: SyncWork, process_async: AsyncWork) -> None:
        if max_workers < 1:
            raise ValueError(f"the pool size must be at least 1, not {max_workers}")
        self.max_workers = max_workers
        self._process = process
        self._process_async = process_async

    @abc.abstractmethod
    def submit(self, incoming: Any) -> None:
        """Process one message (now, or later on a worker)."""

    @abc.abstractmethod
    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait``, after the submitted work is done."""


class BlockingExecutor(Executor):
    """Dispatches on the thread that took the message from the wire."""

    name = "blocking"

    def submit(self, incoming: Any) -> None:
        self._process(incoming)

    def shutdown(self, wait: bool = True) -> None:
        pass


class ThreadingExecutor(Executor):
    """Runs at most ``max_workers`` messages at once; the backlog is unbounded.

    One count of ``max_workers`` permits is shared by two ways of running a message:

    * inline, on the thread that calls :meth:`submit`, when the message says that thread
      would otherwise only wait for the reply (``incoming.may_run_inline``, set by the
      gRPC sync driver for ``Call``), a permit is free at once and no message is queued
      before it (so queued messages are not overtaken for ever);
    * on one of ``max_workers`` pool threads otherwise, which takes a permit before it runs
      the message.

    So the messages running at once never exceed ``max_workers``, whatever the wire. An
    inline run saves the hand-off to a pool thread and back (a queue, two thread wake-ups
    under the GIL). Pool threads are daemon threads, made as needed.
    """

    name = "threading"

    def __init__(self, max_workers: int, process: SyncWork, process_async: AsyncWork) -> None:
        super().__init__(max_workers, process, process_async)
        # The hot paths take the bare lock (cheaper than entering the Condition); the
        # Condition, on the same lock, is for the pool threads waiting for a permit.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running = 0  # permits held: messages running, inline or on the pool
        self._pending = 0  # messages queued for the pool and not yet running
        self._idle = 0  # pool threads free to take a queued message
        self._closed = False

    @property
    def running(self) -> int:
        """Messages running now, inline or on the pool."""
        return self._running

    def submit(self, incoming: Any) -> None:
        """Run ``incoming`` inline if it may and a permit is free; else queue it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit a message after shutdown")
            inline = (getattr(incoming, "may_run_inline", False) and not self._pending
                      and self._running < self.max_workers)
            if inline:
                self._running += 1
            else:
                self._pending += 1
                if self._idle:
                    self._idle -= 1  # that thread will take this message
                elif len(self._threads) < self.max_workers:
                    try:
                        self._spawn()
                    except BaseException:  # no thread to be had: refuse the message
                        self._pending -= 1
                        raise
        if not inline:
            self._queue.put(incoming)
            return
        try:
            self._run(incoming)
        finally:
            self._release()

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._work, daemon=True,
                                  name=f"bridge-worker_{len(self._threads)}")
        thread.start()
        self._threads.append(thread)

    def _run(self, incoming: Any) -> None:
        try:
            self._process(incoming)
        except BaseException:  # the server answers its own failures; this is a defect
            LOG.exception("Error while processing %r", incoming)

    def _release(self) -> None:
        with self._lock:
            self._running -= 1
            if self._pending or self._closed:
                self._cond.notify_all()

    def _work(self) -> None:
        cond, lock = self._cond, self._lock
        while True:
            incoming = self._queue.get()
            if incoming is None:  # shutdown
                return
            with lock:
                while self._running >= self.max_workers:
                    cond.wait()
                self._running += 1
                self._pending -= 1
            try:
                self._run(incoming)
            finally:
                with lock:
                    self._running -= 1
                    self._idle += 1
                    if self._pending or self._closed:
                        cond.notify_all()

    def shutdown(self, wait: bool = True) -> None:
        """Take no new messages; with ``wait``, return once every message has run."""
        with self._cond:
            self._closed = True
            threads = list(self._threads)
        # Queued after every message already queued: each thread ends once the queue is done.
        for _ in threads:
            self._queue.put(None)
        if not wait:
            return
        here = threading.current_thread()
        for thread in threads:
            if thread is not here:
                thread.join()
        if here not in threads:  # from a pool thread's own message, nothing more can end
            with self._cond:  # inline runs on other threads
                self._cond.wait_for(lambda: self._running == 0)


class AsyncioExecutor(Executor):
    """Awaits coroutine methods on one event loop; plain methods go to a thread pool."""

    name = "asyncio"

    def __init__(self, max_workers: int, process: SyncWork, process_async: AsyncWork) -> None:
        super().__init__(max_workers, process, process_async)
        self.pool = ThreadPoolExecutor(max_workers, thread_name_prefix="bridge-worker")
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, name="bridge-asyncio",
                                        daemon=True)
        self._thread.start()
        self._started.wait()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def submit(self, incoming: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._process_async(incoming, self), self.loop)

    async def run_blocking(self, func: Callable, *args: Any) -> Any:
        """Run a plain function in the pool without blocking the loop.

        It runs in a copy of the caller's context, so context variables (such as the
        request id that log lines carry) follow the message into the pool.
        """
        context = contextvars.copy_context()
        return await self.loop.run_in_executor(
            self.pool, functools.partial(context.run, func, *args))

    def shutdown(self, wait: bool = True) -> None:
        # The server has already waited for every message it handed over.
        self.loop.call_soon_threadsafe(self.loop.stop)
        if wait:
            self._thread.join()
        self.pool.shutdown(wait=wait)
        if not self.loop.is_running():
            self.loop.close()


EXECUTORS: dict[str, type[Executor]] = {
    "threading": ThreadingExecutor,
    "blocking": BlockingExecutor,
    "asyncio": AsyncioExecutor,
}


def executor_class(name: str | None) -> type[Executor]:
    """The executor class for ``name`` (None means threading)."""
    name = name or "threading"
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ExecutorLoadFailure(
            name, f"unknown executor; choose one of {', '.join(sorted(EXECUTORS))}") from None
