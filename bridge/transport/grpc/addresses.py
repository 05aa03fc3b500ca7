"""Host/port pairs of gRPC URLs: the addresses a server binds, and what a client dials.

A URL with several hosts makes one server listen on every address, and a client
fail over between them (see :func:`channel_target`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

from bridge.exceptions import InvalidTransportURL

LOG = logging.getLogger(__name__)

#: The port of a URL host that names none.
DEFAULT_PORT = 50051

#: ``(host, port)``: one address of a server or a client.
Address = tuple[str, int]


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_host(host: str) -> str:
    """Where a client reaches a server listening on ``host`` (a wildcard: this machine)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def hosts_of(url: Any) -> tuple[Address, ...]:
    """The ``(host, port)`` of each host of ``url``; 127.0.0.1:50051 fills in what is missing.

    Raises :class:`InvalidTransportURL` when an address (other than port 0) is listed twice.
    """
    hosts = tuple((host.hostname or "127.0.0.1",
                   DEFAULT_PORT if host.port is None else host.port) for host in url.hosts)
    hosts = hosts or (("127.0.0.1", DEFAULT_PORT),)
    for index, (host, port) in enumerate(hosts):
        if port and (host, port) in hosts[:index]:
            raise InvalidTransportURL(str(url), f"{host_port(host, port)} is listed twice "
                                      f"in {url}")
    return hosts


def channel_target(hosts: Sequence[Address]) -> str:
    """The gRPC channel target that reaches the servers at ``hosts``, ``(host, port)`` pairs.

    A wildcard host (``0.0.0.0``, ``::``) means this machine. One host gives
    ``host:port``, which gRPC's DNS resolver resolves. Several give every address
    they resolve to now (``socket.getaddrinfo``, in the URL's order), as
    ``ipv4:a:p,b:p``, or ``ipv6:[a]:p,...`` with IPv4 addresses IPv4-mapped when
    some are IPv6; the channel's default ``pick_first`` policy then connects to the
    first address that accepts, and to the next when that connection fails. A host
    that does not resolve is skipped; :class:`OSError` when none does.
    """
    hosts = [(client_host(host), port) for host, port in hosts]
    if len(hosts) == 1:
        return host_port(*hosts[0])
    resolved: list[tuple[int, str, int]] = []
    failures = []
    for host, port in hosts:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            LOG.warning("gRPC host %s does not resolve, skipped: %s", host, exc)
            failures.append(f"{host}: {exc}")
            continue
        for family, _, _, _, sockaddr in infos:
            address = (family, str(sockaddr[0]), int(sockaddr[1]))
            if family in (socket.AF_INET, socket.AF_INET6) and address not in resolved:
                resolved.append(address)
    if not resolved:
        raise OSError(f"none of the gRPC hosts resolve ({'; '.join(failures)})")
    if all(family == socket.AF_INET for family, _, _ in resolved):
        return "ipv4:" + ",".join(f"{ip}:{port}" for _, ip, port in resolved)
    return "ipv6:" + ",".join(f"[{ip}]:{port}" if family == socket.AF_INET6
                              else f"[::ffff:{ip}]:{port}" for family, ip, port in resolved)
