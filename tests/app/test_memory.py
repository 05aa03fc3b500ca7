"""``bridge serve``'s malloc arenas: capped at two unless the operator chose."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bridge.app.memory import DEFAULT_ARENAS, limit_malloc_arenas

CHECK = "from bridge.app.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_arenas_are_capped_on_glibc():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60, check=True)
    assert done.stdout.strip() == str(DEFAULT_ARENAS)


def test_an_operators_malloc_arena_max_wins():
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is None
