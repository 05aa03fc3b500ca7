"""Secrets never printed: masking for log lines, printed settings and error messages.

:func:`redact_text` masks, anywhere in a text, the password of a URL
(``scheme://user:***@host``), a bearer token (``Bearer ***``), a JWT, a PEM private
key and the value of a ``password=``/``token=``/``secret=`` pair.
:class:`RedactingFormatter` applies it to every formatted log line (tracebacks
included); :func:`redact_value` to settings before they are printed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\"']*:)"
                           r"(?P<secret>[^\s@\"']*)(?P<tail>@)")
# The further hosts of a multi-host URL: ``scheme://u:p@h1:5672,u2:p2@h2:5672/``.
_MORE_HOSTS = re.compile(r"(?P<head>\*\*\*@[^\s,/@\"']*,[^\s:/@,\"']*:)(?P<secret>(?!\*\*\*@)"
                         r"[^\s@/\"',]*)(?P<tail>@)")
# A token is at least 8 characters (so that prose such as "bearer tokens" stays readable).
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PEM_KEY = re.compile(r"-----BEGIN (?P<kind>[A-Z ]*PRIVATE KEY)-----.*?-----END [A-Z ]*PRIVATE "
                      r"KEY-----", re.S)
_PAIR = re.compile(r"(?i)(?P<head>\b[\w.-]*(?:password|passwd|secret|token|api_key|apikey)"
                   r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"'&,;}]+)")
#: Setting or option names whose values are secrets (a ``*_file`` holds a path: kept).
_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_key)")


def redact_text(text: str) -> str:
    """``text`` with every secret it carries masked (see the module doc)."""
    if not text:
        return text
    text = _PEM_KEY.sub(lambda m: f"-----{m.group('kind')} {MASK}-----", text)
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('tail')}", text)
    previous = None
    while previous != text:  # one more host per pass
        previous = text
        text = _MORE_HOSTS.sub(lambda m: f"{m.group('head')}{MASK}{m.group('tail')}", text)
    text = _BEARER.sub(lambda m: f"{m.group('head')}{MASK}", text)
    text = _PAIR.sub(lambda m: f"{m.group('head')}{MASK}", text)
    return text


def secret_name(name: str) -> bool:
    """True for an option name whose value is a secret (not for ``*_file`` paths)."""
    return bool(_SECRET_NAME.search(name)) and not name.lower().endswith(("_file", "_path"))


def redact_value(value: Any, name: str = "") -> Any:
    """A copy of ``value`` (settings: dicts, lists, strings) with secrets masked: the whole
    value of a key named like a secret, and every secret inside strings."""
    if isinstance(value, dict):
        return {key: redact_value(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, name) for item in value]
    if name and secret_name(name) and value not in (None, "", False):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks every secret of the whole line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self.inner.format(record))
