"""``bridge check``: validate a whole configuration without serving.

What is checked, and every problem listed (one line each):

* the settings themselves (flags, ``BRIDGE_*`` variables, the config file);
* every URL and its options: each transport is built, which parses the URL and the
  driver's options, without connecting;
* the endpoints: importable and constructible (a constructor that needs arguments,
  a syntax error with its ``file:line``);
* the routes: their URLs and options, and that a wire here can take their callers;
* the TLS files: readable, PEM, and the certificate matching its key;
* whatever the functions of :data:`CHECKS` add (the access policy file registers one).

``bridge serve`` runs the same checks before it listens.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import bridge
from bridge.app.settings import ServeSettings

#: More checks: each takes the settings and returns its problems (one line each).
CHECKS: list[Callable[[ServeSettings], list[str]]] = []


def _transports(settings: ServeSettings, conf: dict[str, Any],
                problems: list[str]) -> list[bridge.Transport]:
    transports = []
    for url in settings.urls:
        try:
            transports.append(bridge.get_transport(conf, url))
        except (bridge.MessagingException, ValueError, OSError) as exc:
            problems.append(f"URL {_masked(url)}: {exc}")
    return transports


def _masked(url: str) -> str:
    try:
        return str(bridge.TransportURL.parse(url))
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown by its scheme
        return url.split("://", 1)[0] + "://..."


class _NoServer:
    """Stands for the server while endpoints are built for a check: there is none."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"bridge check builds endpoints without a server ({name!r})")


def _endpoints(settings: ServeSettings, problems: list[str], build: bool = True) -> int:
    from bridge.app.loading import EndpointLoadError, check_spec, load_spec

    count = 0
    for spec in settings.endpoints:
        try:
            if build:
                count += len(load_spec(spec, _NoServer()))
            else:
                check_spec(spec)
        except EndpointLoadError as exc:
            problems.append(str(exc))
    if settings.default_endpoints:
        from endpoints import default_endpoints

        count += len(default_endpoints(None))
    return count


def _routes(settings: ServeSettings, conf: dict[str, Any],
            transports: list[bridge.Transport], problems: list[str]) -> None:
    if not settings.routes:
        return
    from bridge.app.gateways import plan_gateways
    from bridge.gateway import routes_from_config

    try:
        routes = routes_from_config(settings.routes)
    except (ValueError, TypeError) as exc:
        problems.append(f"routes: {exc}")
        return
    for route in routes:
        try:
            bridge.get_transport(conf, route.url).cleanup()
        except (bridge.MessagingException, ValueError, OSError) as exc:
            problems.append(f"route {route.topic!r}: {exc}")
            return
    if len(transports) == len(settings.urls):
        try:
            plan_gateways(routes, transports, settings.exchange)
        except (ValueError, bridge.MessagingException) as exc:
            problems.append(f"routes: {exc}")


def _tls(settings: ServeSettings, problems: list[str]) -> None:
    files = {"tls_cert_file": settings.tls_cert_file, "tls_key_file": settings.tls_key_file,
             "tls_ca_file": settings.tls_ca_file}
    readable = {}
    for name, path in files.items():
        if not path:
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            problems.append(f"{name} {path!r} cannot be read: {exc.strerror or exc}")
            continue
        if b"-----BEGIN " not in data:
            problems.append(f"{name} {path!r} is not PEM (no -----BEGIN line)")
            continue
        readable[name] = path
    if "tls_cert_file" in readable and "tls_key_file" in readable:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(readable["tls_cert_file"], readable["tls_key_file"])
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"tls_cert_file and tls_key_file do not make a certificate and "
                            f"its key ({exc.args[-1] if exc.args else exc})")
    if "tls_ca_file" in readable:
        try:
            ssl.create_default_context(cafile=readable["tls_ca_file"])
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"tls_ca_file {readable['tls_ca_file']!r} holds no usable CA "
                            f"certificate ({exc})")


def problems(settings: ServeSettings, build_endpoints: bool = True) -> list[str]:
    """Every problem of ``settings`` (resolved), one line each; [] when it can be served.

    ``build_endpoints=False`` imports the endpoints and checks their constructors'
    parameters without building them (``bridge serve`` builds them once, when it starts).
    """
    from bridge.app.serve import driver_conf

    found: list[str] = []
    try:
        conf = driver_conf(settings)
    except (bridge.MessagingException, ValueError) as exc:
        return [str(exc)]
    transports = _transports(settings, conf, found)
    try:
        _endpoints(settings, found, build_endpoints)
        _routes(settings, conf, transports, found)
    finally:
        for transport in transports:
            transport.cleanup()
    _tls(settings, found)
    for check in list(CHECKS):
        try:
            found.extend(check(settings))
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a problem too
            found.append(f"{getattr(check, '__name__', check)}: {type(exc).__name__}: {exc}")
    return found


def summary(settings: ServeSettings) -> str:
    """One line describing what a valid configuration serves."""
    served = [f"{spec}" for spec in settings.endpoints]
    if settings.default_endpoints:
        served.append("the shipped endpoints")
    urls = ", ".join(_masked(url) for url in settings.urls)
    routes = f"; {len(settings.routes)} route(s)" if settings.routes else ""
    return f"topic {settings.topic!r}: {', '.join(served)} over {urls}{routes}"
