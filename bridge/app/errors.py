"""The exit codes of the command line and the errors that carry them.

* 0: success (``health``: SERVING);
* 1: a remote failure: the server answered with an error (the method raised, no such
  method or version, a refusal such as NOT_FOUND), or ``health`` is not SERVING;
  ``serve``: it could not start, or calls still ran when the grace period ended;
* 2: a usage or configuration error: fix the command line or the configuration;
* 3: a connection failure: the server or broker cannot be reached, or refused the
  credentials or the TLS handshake;
* 4: a timeout: nothing answered in time;
* 70: an internal error (a defect: run again with ``--debug`` and report it).

Each failure is one line on stderr that says what to do; ``--debug`` adds the
traceback and the library's log lines.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_TIMEOUT = 4


class CliError(Exception):
    """A failure reported as one line with an exit code."""

    code = EXIT_REMOTE

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    """Bad arguments or configuration: exit code 2."""

    code = EXIT_USAGE


class ConnectFailure(CliError):
    """The server or broker cannot be reached: exit code 3."""

    code = EXIT_CONNECT


class TimedOut(CliError):
    """Nothing answered in time: exit code 4."""

    code = EXIT_TIMEOUT
