"""The serving process's memory allocator: few glibc malloc arenas.

glibc gives threads that allocate at the same time arenas of their own (up to 8 per
core) and keeps what each arena freed for its threads. A server whose gRPC, AMQP and
executor threads each decode a large request now and then ends up holding the peak of
every arena at once (docs/reliability.md has the figures). ``bridge serve`` caps the
arenas at :data:`DEFAULT_ARENAS` at start, as ``MALLOC_ARENA_MAX=2`` would; an
operator's own ``MALLOC_ARENA_MAX`` wins, and a C library other than glibc is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping

LOG = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameter for the most arenas (malloc.h).
M_ARENA_MAX = -8
#: The arenas ``bridge serve`` allows unless ``MALLOC_ARENA_MAX`` is set.
DEFAULT_ARENAS = 2


def limit_malloc_arenas(environ: Mapping[str, str] = os.environ) -> int | None:
    """Cap this process's malloc arenas; return the cap set, or None when left alone
    (``MALLOC_ARENA_MAX`` set, which glibc read at start, or no glibc ``mallopt``)."""
    if environ.get("MALLOC_ARENA_MAX"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_ARENA_MAX, DEFAULT_ARENAS) != 1:
        LOG.debug("mallopt(M_ARENA_MAX) refused; malloc arenas left as they are")
        return None
    return DEFAULT_ARENAS
