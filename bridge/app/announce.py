"""What ``bridge serve`` prints on stdout: where it listens, a command to try, ``ready``.

In text mode each status line is ``bridge: ...``; in JSON mode (``log_format =
"json"``) each is one JSON object like a log line (``time``, ``level``, ``logger``,
``message``), so every line the process writes is JSON. The hint is a ``call`` of a
method the served endpoints really have and that needs no argument, written with the
command this process was started as, so it works when pasted as it is.
"""

from __future__ import annotations

import inspect
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from bridge.app.logs import JsonFormatter
from bridge.message import DEFAULT_VERSION
from bridge.rpc.dispatcher import version_is_compatible

_CTXT_PARAMETERS = 1  # every endpoint method takes the context first


def command_name(argv0: str | None = None) -> str:
    """How to run this program again from a shell: ``bridge``/``rpc-bridge`` when that
    name on PATH is this program, else the path it was started by (``python -m bridge``,
    or the interpreter and the script for any other launcher)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    base = os.path.basename(argv0)
    if base in ("__main__.py", "-m", "-c", ""):
        python = sys.executable or "python3"
        found = shutil.which("python3")
        if found and os.path.abspath(found) == os.path.abspath(python):
            python = "python3"
        return f"{shlex.quote(python)} -m bridge"
    if base in ("bridge", "rpc-bridge"):
        found = shutil.which(base)
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return base
        return shlex.quote(os.path.abspath(argv0))
    return f"{shlex.quote(sys.executable or 'python3')} {shlex.quote(os.path.abspath(argv0))}"


def _no_argument_methods(endpoint: Any) -> list[str]:
    """Public methods of ``endpoint`` callable with the context alone."""
    names = []
    for name in sorted(dir(type(endpoint))):
        if name.startswith("_"):
            continue
        method = getattr(endpoint, name, None)
        if not callable(method) or inspect.isclass(method):
            continue
        try:
            parameters = list(inspect.signature(method).parameters.values())
        except (TypeError, ValueError):
            continue
        rest = parameters[_CTXT_PARAMETERS:]
        if len(parameters) >= _CTXT_PARAMETERS and all(
                p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                for p in rest):
            names.append(name)
    return names


def pick_method(endpoints: Sequence[Any]) -> tuple[str, list[str]] | None:
    """``(method, extra CLI arguments)`` of a call that works on ``endpoints``, or None.

    ``echo value='"hello"'`` when a null-namespace endpoint has ``echo``; else the
    first method that needs no argument, with its ``--namespace`` and ``--version``.
    """
    candidates = []
    for endpoint in endpoints:
        target = getattr(endpoint, "target", None)
        namespace = getattr(target, "namespace", None)
        version = getattr(target, "version", None)
        options: list[str] = []
        if namespace:
            options += ["--namespace", namespace]
        if version and not version_is_compatible(version, DEFAULT_VERSION):
            options += ["--version", version]
        methods = _no_argument_methods(endpoint)
        if namespace is None and "echo" in methods:
            return "echo", [*options, "value='\"hello\"'"]
        candidates += [(name, options) for name in methods if name not in ("stop",)]
    return candidates[0] if candidates else None


def call_hint(url: str | None, settings: Any, topic: str, endpoints: Sequence[Any] = (),
              command: str = "bridge") -> str | None:
    """A ready-to-paste ``call`` of a served method at a listener's client URL, or None."""
    if not url:
        return None
    for wildcard, local in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
        url = url.replace(f"://{wildcard}:", f"://{local}:")
    picked = pick_method(endpoints) if endpoints else ("echo", ["value='\"hello\"'"])
    if picked is None:
        return None
    method, options = picked
    extra = ""
    if getattr(settings, "exchange", None):
        extra += f" --exchange {shlex.quote(settings.exchange)}"
    if url.startswith("grpcs://") and getattr(settings, "tls_ca_file", None):
        extra += f" --tls-ca {shlex.quote(settings.tls_ca_file)}"
    return (f"{command} call{extra} {url} {shlex.quote(topic)} {method}"
            + "".join(f" {item}" for item in options))


class Announcer:
    """Writes the status lines, one write each (endpoints may print at the same time)."""

    def __init__(self, out: TextIO, log_format: str = "text",
                 err: TextIO | None = None) -> None:
        self.out = out
        self.err = err
        self.json = log_format == "json"
        self._formatter = JsonFormatter()

    def _line(self, text: str, level: int) -> str:
        if not self.json:
            return text
        record = logging.LogRecord("bridge.serve", level, __file__, 0, text, None, None)
        return self._formatter.format(record)

    def say(self, text: str) -> None:
        """One status line on stdout."""
        self.out.write(self._line(text, logging.INFO) + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        """One error line on stderr."""
        err = self.err or sys.stderr
        err.write(self._line(text, logging.ERROR) + "\n")
        err.flush()

    def announce(self, runtime: Any, command: str) -> None:
        """The lines printed once ``bridge serve`` listens."""
        server, settings = runtime.server, runtime.settings
        target = server.target
        endpoints = list(server.dispatcher.endpoints) if server.dispatcher else []
        self.say(f"bridge: serving topic {target.topic!r} as server {target.server!r} with "
                 f"{len(endpoints)} endpoints")
        hint = None
        for listener in server.listeners:
            self.say(f"bridge: listening on {listener.address}")
            hint = hint or call_hint(listener.client_url, settings, target.topic, endpoints,
                                     command)
        if runtime.metrics_http is not None:
            self.say(f"bridge: metrics on {runtime.metrics_http.url}")
        if hint:
            self.say(f"bridge: try: {hint}")
        self.say("bridge: ready")
