"""``bridge serve``'s side of security (docs/security.md): the guard its settings
describe, and the checks made at start so that nothing dangerous is open by default.

* The control endpoint (namespace ``control``: ``stop``) is served only when named
  among the endpoints; where other machines can reach a wire (a non-loopback address),
  the server refuses to start unless the policy names who may call it.
* gRPC on a non-loopback address with no authentication (no client certificates, no
  tokens, no JWTs) starts with one warning.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from bridge.app import check
from bridge.app.settings import ServeSettings
from bridge.auth.guard import AuthConfig, AuthConfigError, Guard
from bridge.auth.policy import Request
from bridge.transport import TransportURL, driver_class

LOG = logging.getLogger("bridge.serve")

CONTROL_NAMESPACE = "control"
#: The control methods whose call or cast needs a policy naming its callers when exposed.
DANGEROUS_METHODS = ("stop",)


def auth_config(settings: ServeSettings) -> AuthConfig:
    """The :class:`AuthConfig` of the ``auth_*`` settings."""
    return AuthConfig(token_file=settings.auth_token_file,
                      jwt_issuer=settings.auth_jwt_issuer,
                      jwt_audience=tuple(settings.auth_jwt_audience),
                      jwt_key_file=settings.auth_jwt_key_file,
                      jwt_jwks_url=settings.auth_jwt_jwks_url,
                      jwt_algorithms=tuple(settings.auth_jwt_algorithms),
                      policy_file=settings.auth_policy_file,
                      amqp_identity=settings.auth_amqp_identity,
                      trusted_forwarders=tuple(settings.auth_trusted_forwarders))


def _loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True  # the drivers' default host is this machine
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposed_wires(urls: Sequence[str]) -> dict[str, str]:
    """Wire name -> URL (passwords masked) of each of ``urls`` that other machines can
    reach: a remote driver whose URL names a non-loopback host."""
    wires: dict[str, str] = {}
    for url in urls:
        driver = driver_class(url)
        if not driver.implements.remote:
            continue
        parsed = TransportURL.parse(url)
        hosts = parsed.hosts or ()
        if any(not _loopback(host.hostname) for host in hosts):
            wires.setdefault(driver.wire, str(parsed))
    return wires


def check_exposure(settings: ServeSettings, endpoints: Sequence[Any], guard: Guard) -> None:
    """Refuse (``ValueError``) to serve the control endpoint on a reachable wire without a
    policy naming its callers; warn once about gRPC or HTTP reachable without
    authentication."""
    wires = exposed_wires(settings.urls)
    control = any(getattr(getattr(endpoint, "target", None), "namespace", None)
                  == CONTROL_NAMESPACE for endpoint in endpoints)
    if control and wires:
        policy = guard.config.policy_file and guard.policy
        exchange = settings.exchange or "openstack"
        for wire in wires:
            for kind in ("call", "cast"):
                for method in DANGEROUS_METHODS:
                    request = Request(wire=wire, kind=kind, exchange=exchange,
                                      topic=settings.topic, server=settings.server or "",
                                      namespace=CONTROL_NAMESPACE, method=method)
                    if not policy or not policy.names_callers_of(request):
                        raise ValueError(
                            f"the control endpoint (namespace {CONTROL_NAMESPACE!r}, which can "
                            f"stop the server) is served on {wires[wire]}, which other "
                            "machines can reach: set auth_policy_file to a policy with an "
                            f"[[allow]] rule naming the principals that may {kind} "
                            f"{method!r} there, and no rule letting everyone "
                            "(docs/security.md)")
    # The wires bridge serve listens on itself (AMQP callers pass the broker's login).
    listening = exposed_wires([url for url in (settings.grpc_url, settings.http_url) if url])
    if listening and not (settings.tls_ca_file or guard.authenticates):
        LOG.warning("%s is reachable from other machines without authentication: anyone "
                    "who can connect may call every endpoint. Require client certificates "
                    "(tls_ca_file), tokens (auth_token_file) or JWTs (auth_jwt_*), and "
                    "a policy (auth_policy_file); see docs/security.md",
                    ", ".join(listening.values()))


def build_guard(settings: ServeSettings) -> Guard:
    """The guard of ``settings`` (``AuthConfigError``, a ValueError, if a file is bad)."""
    return Guard(auth_config(settings))


def reload_guard(runtime: Any) -> None:
    """SIGHUP (a :data:`bridge.app.serve.RELOAD_HOOKS` hook): the guard reads its files
    again, under the settings just read; a file that does not load keeps its old
    contents in force (logged)."""
    if runtime.guard is not None:
        runtime.guard.reload(auth_config(runtime.settings))


def auth_problems(settings: ServeSettings) -> list[str]:
    """``bridge check`` and ``bridge serve``'s check: the token, JWT and policy settings
    and files load (a :data:`bridge.app.check.CHECKS` function)."""
    try:
        build_guard(settings)
    except AuthConfigError as exc:
        return [str(exc)]
    return []


check.CHECKS.append(auth_problems)
