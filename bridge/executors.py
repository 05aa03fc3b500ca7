"""Executors: where the server runs each message.

* ``threading`` (default): a pool of threads (``executor_thread_pool_size``, 64).
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
    """Dispatches on a pool of ``max_workers`` threads; the backlog is unbounded."""

    name = "threading"

    def __init__(self, max_workers: int, process: SyncWork, process_async: AsyncWork) -> None:
        super().__init__(max_workers, process, process_async)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="bridge-worker")

    def submit(self, incoming: Any) -> None:
        self._pool.submit(self._process, incoming)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


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
