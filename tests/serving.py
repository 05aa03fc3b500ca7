"""Run ``bridge serve`` as a child process and read what it announces (a test helper)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent


def source_env(**extra: str) -> dict[str, str]:
    """The environment for a child that imports bridge from this source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    # bridge serve's HTTP default is a fixed port (8080): off unless a test asks for it.
    env["BRIDGE_HTTP_URL"] = "none"
    paths = [str(ROOT), str(ROOT / "tests")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                        else paths)
    env.update(extra)
    return env


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m bridge ARGV`` from this source tree, as a user runs the command."""
    return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                          text=True, env=source_env(), cwd=ROOT, timeout=timeout)


def scrape(url: str) -> dict[tuple, float]:
    """The samples of a Prometheus endpoint: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return result


class ServeProcess:
    """A running ``bridge serve``; its stdout lines are collected as they come."""

    def __init__(self, args: Sequence[str], *, command: Sequence[str] | None = None,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 ) -> None:
        argv = list(command or [sys.executable, "-m", "bridge"]) + ["serve", *args]
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.json_lines: list[str] = []  # stdout lines as written, in JSON mode
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env if env is not None else source_env(),
                                     cwd=str(cwd or ROOT))
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, is_stdout: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if is_stdout and line.startswith("{"):  # log_format json: the status line's text
                self.json_lines.append(line)
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    line = json.loads(line)["message"]
            if is_stdout:
                self.stdout_lines.append(line)
                self._lines.put(line)
            else:
                self.stderr_lines.append(line)
        if is_stdout:
            self._lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        """Wait for a stdout line starting with ``prefix`` (bounded); return the rest."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from bridge serve after {timeout} s; "
                                     "stderr:\n" + "\n".join(self.stderr_lines[-30:])) from None
            if line is None:
                self.proc.wait(10)
                raise AssertionError(f"bridge serve exited with {self.proc.returncode} before "
                                     f"{prefix!r}; stderr:\n" + "\n".join(self.stderr_lines[-30:]))
            if line.startswith(prefix):
                return line[len(prefix):]

    def wait_ready(self, timeout: float = 30.0) -> list[str]:
        """Wait for ``bridge: ready``; return the ``listening on`` addresses."""
        self.wait_for("bridge: ready", timeout)
        return self.addresses

    @property
    def addresses(self) -> list[str]:
        prefix = "bridge: listening on "
        return [line[len(prefix):] for line in self.stdout_lines if line.startswith(prefix)]

    def address(self, scheme: str) -> str:
        """The first announced address of a scheme, as a URL (``grpc://127.0.0.1:PORT``)."""
        for address in self.addresses:
            if address.startswith(scheme + "://"):
                return address.split()[0]
        raise AssertionError(f"no {scheme}:// address in {self.addresses}")

    def line_starting(self, prefix: str) -> str:
        for line in self.stdout_lines:
            if line.startswith(prefix):
                return line[len(prefix):]
        raise AssertionError(f"no line starting {prefix!r} in {self.stdout_lines}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        """Make sure the child is gone (used in finally blocks)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
