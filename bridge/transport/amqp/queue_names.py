"""The names of a process's own queues (its reply queues and fanout queues).

By default each is new: ``reply_<uuid4 hex>``, ``<topic>_fanout_<uuid4 hex>``. With
``use_queue_manager`` they are stable, as oslo.messaging's queue manager names them:
``reply_<hostname>:<processname>:<n>`` and ``<topic>_fanout_<hostname>:<processname>:<n>``,
``n`` counting from 1 the queues the process asked for, in the order it asked. A
restarted process therefore finds its queues again under the same names, instead of
leaving one more queue per start to expire.

Two live processes with the same ``hostname`` and ``processname`` (forked workers, or
two instances) must not share a name: each number is claimed with an exclusive
``flock`` on a file of its own, held while the queue is used (and released by the
kernel when the process ends). A process takes the lowest numbers free, so a restarted
process, whose predecessor is gone, takes that predecessor's numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import uuid
from pathlib import Path

from bridge.transport.amqp.options import AmqpOptions

#: The most numbers one ``hostname:processname`` may hold at once.
MAX_SLOTS = 10000

_claim_lock = threading.Lock()


def slot_directory() -> Path:
    """Where the claim files live: ``/dev/shm`` (memory, gone at reboot) or the temp dir."""
    base = Path("/dev/shm")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        base = Path(tempfile.gettempdir())
    return base / f"rpc-bridge-queue-names-{os.getuid()}"


def _safe(text: str) -> str:
    return text.replace(os.sep, "_").replace("\0", "_") or "_"


class QueueName:
    """One queue name; a stable one holds its number until :meth:`release`."""

    def __init__(self, name: str, claim: int | None = None) -> None:
        self.name = name
        self._claim = claim

    def release(self) -> None:
        """Give the number back (the queue itself stays, for the next process to reuse)."""
        claim, self._claim = self._claim, None
        if claim is not None:
            with contextlib.suppress(OSError):
                os.close(claim)

    def __str__(self) -> str:
        return self.name


def _claim(hostname: str, processname: str, directory: Path) -> tuple[int, int]:
    """The lowest free number for ``hostname:processname``, and the descriptor holding it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = f"{_safe(hostname)}_{_safe(processname)}"
    with _claim_lock:
        for number in range(1, MAX_SLOTS + 1):
            fd = os.open(directory / f"{prefix}.{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # held by a live process (or by this one)
                continue
            os.set_inheritable(fd, False)
            return number, fd
    raise RuntimeError(f"more than {MAX_SLOTS} queue names claimed for {prefix}")


class QueueNames:
    """Gives the names of reply and fanout queues, per the options."""

    def __init__(self, options: AmqpOptions, directory: Path | None = None) -> None:
        self.stable = options.use_queue_manager
        self.hostname = options.hostname
        self.processname = options.processname
        self._directory = directory or slot_directory()

    def _name(self, prefix: str) -> QueueName:
        if not self.stable:
            return QueueName(f"{prefix}{uuid.uuid4().hex}")
        number, fd = _claim(self.hostname, self.processname, self._directory)
        return QueueName(f"{prefix}{self.hostname}:{self.processname}:{number}", fd)

    def reply(self) -> QueueName:
        """A client transport's reply queue."""
        return self._name("reply_")

    def fanout(self, topic: str) -> QueueName:
        """A server's own fanout queue for ``topic`` (not used with stream fanout)."""
        return self._name(f"{topic}_fanout_")
