"""Transport URLs: ``driver://[user:pass@]host:port[,...]/virtual_host?query``."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from bridge.exceptions import InvalidTransportURL


@dataclass(frozen=True)
class TransportHost:
    """One host of a transport URL."""

    hostname: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class TransportURL:
    """A parsed transport URL, following oslo.messaging's parsing rules."""

    transport: str
    hosts: tuple[TransportHost, ...] = ()
    virtual_host: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    original: str = ""

    @property
    def driver_name(self) -> str:
        """The scheme before any ``+`` (``kombu+memory`` names the ``kombu`` driver)."""
        return self.transport.split("+", 1)[0]

    def __str__(self) -> str:
        return _redact(self.original)

    @classmethod
    def parse(cls, url: str) -> TransportURL:
        """Parse ``url``; raise :class:`InvalidTransportURL` when it is not a URL."""
        if not isinstance(url, str) or "://" not in url:
            raise InvalidTransportURL(str(url), f"Invalid transport URL {_redact(str(url))!r}: "
                                      "expected driver://[user:pass@]host:port[,...]/vhost")
        parts = urlsplit(url)
        if not parts.scheme:
            raise InvalidTransportURL(url, f"No scheme specified in {_redact(url)!r}")
        hosts = []
        for piece in parts.netloc.split(","):
            if piece:
                hosts.append(_parse_host(url, piece))
        if parts.path:
            virtual_host: str | None = unquote(parts.path[1:])
        else:
            virtual_host = None
        query = {key: ",".join(values) for key, values in parse_qs(parts.query).items()}
        return cls(parts.scheme, tuple(hosts), virtual_host, query, url)


def _parse_host(url: str, piece: str) -> TransportHost:
    username = password = None
    if "@" in piece:
        userinfo, _, piece = piece.rpartition("@")
        username, sep, password_part = userinfo.partition(":")
        username = unquote(username)
        password = unquote(password_part) if sep else None
    hostname, port = piece, None
    if piece.startswith("["):
        end = piece.find("]")
        if end < 0:
            raise InvalidTransportURL(url, f"Invalid IPv6 host in {_redact(url)!r}")
        hostname, rest = piece[1:end], piece[end + 1:]
        if rest.startswith(":") and rest[1:]:
            port = _port(url, rest[1:])
    elif ":" in piece:
        hostname, _, port_text = piece.rpartition(":")
        port = _port(url, port_text) if port_text else None
    return TransportHost(unquote(hostname) or None, port, username, password)


def _port(url: str, text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise InvalidTransportURL(url, f"Invalid port {text!r} in {_redact(url)!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidTransportURL(url, f"Port {port} out of range in {_redact(url)!r}")
    return port


def _redact(url: str) -> str:
    """The URL with passwords replaced, for logs and errors."""
    if "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    pieces = []
    for piece in netloc.split(","):
        if "@" in piece:
            userinfo, _, host = piece.rpartition("@")
            user = userinfo.split(":", 1)[0]
            piece = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        pieces.append(piece)
    return f"{scheme}://{','.join(pieces)}{slash}{tail}"
