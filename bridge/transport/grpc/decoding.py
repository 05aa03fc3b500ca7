"""Bounded memory while requests are decoded.

Decoding costs far more memory than a request's size on the wire: protobuf's parser
spends about 10 bytes per wire byte on a request made of many small Values (4 MiB of
``null`` Values take about 40 MB to parse), and Python's objects add a little more. With
the sync flavour's thread pool, several such requests decoded at once would multiply
that, and glibc keeps what each thread freed in an arena of that thread.

:class:`DecodeBudget` bounds the wire bytes being decoded at once on the threads of one
server: a request under :data:`SMALL` bytes never waits; a larger one waits until the
budget has room for it (one request larger than the whole budget decodes alone). After
a request of :data:`TRIM_AFTER` bytes or more, the memory the parser freed is handed back
to the system (``malloc_trim``, where the C library has it), so that a burst of large
requests does not leave the server's resident size at its peak.

The aio flavour decodes on its one event loop thread: its requests are decoded one at a
time already, and it uses only :func:`release_freed_memory`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

#: Requests up to this many bytes on the wire decode without waiting.
SMALL = 64 * 1024
#: The wire bytes the threads of one server decode at once (see :class:`DecodeBudget`).
DEFAULT_BUDGET = 1024 * 1024
#: After decoding a request this large, give the freed memory back to the system.
TRIM_AFTER = 256 * 1024


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_freed_memory(size: int) -> None:
    """After decoding ``size`` wire bytes: return freed heap memory to the system when the
    request was large (every arena's free top, not only this thread's)."""
    if size >= TRIM_AFTER and _TRIM is not None:
        _TRIM(0)


class DecodeBudget:
    """At most ``budget`` wire bytes of large requests decoded at once on one server."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._in_use = 0
        self._changed = threading.Condition()

    def decoding(self, size: int) -> AbstractContextManager[None]:
        """Hold ``size`` bytes of the budget while the block decodes a request (a request
        of :data:`SMALL` bytes or fewer holds nothing: the common case costs no lock)."""
        return _NOTHING if size <= SMALL else _Held(self, size)

    def _take(self, size: int) -> None:
        with self._changed:
            # A request larger than the budget waits until it can decode alone.
            self._changed.wait_for(lambda: self._in_use == 0 or
                                   self._in_use + size <= self.budget)
            self._in_use += size

    def _give_back(self, size: int) -> None:
        with self._changed:
            self._in_use -= size
            self._changed.notify_all()
        release_freed_memory(size)


_NOTHING = nullcontext()


class _Held:
    """``size`` bytes of a :class:`DecodeBudget`, held for a ``with`` block."""

    __slots__ = ("_budget", "_size")

    def __init__(self, budget: DecodeBudget, size: int) -> None:
        self._budget, self._size = budget, size

    def __enter__(self) -> None:
        self._budget._take(self._size)

    def __exit__(self, *exc: object) -> None:
        self._budget._give_back(self._size)


def detached(part: M, size: int) -> M:
    """``part`` of a parsed request of ``size`` wire bytes, or a copy of it when the request
    was large: a part keeps the whole parsed request's memory alive while it is held."""
    if size <= SMALL:
        return part
    copy = type(part)()
    copy.CopyFrom(part)
    return copy
