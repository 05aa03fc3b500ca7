"""The ``bridge`` command: ``serve``, ``call``, ``cast``, ``health`` and ``describe``.

Exit codes: 0 success; 1 a remote failure, a timeout, an unreachable server, or a
health status other than SERVING; 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

import bridge
from bridge.app import settings as serve_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_TOPIC = "bridge"
DEFAULT_HEALTH_URL = "grpc://127.0.0.1:50051"
TLS_CLIENT_OPTIONS = ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name")


class UsageError(Exception):
    """Bad arguments: reported on stderr with exit code 2."""


# -- serve -----------------------------------------------------------------------------------

def _serve(args: argparse.Namespace) -> int:
    from bridge.app import serve

    flags = {k: v for k, v in vars(args).items()
             if k in serve_settings.OPTIONS_BY_NAME or k == "config"}
    try:
        settings = serve_settings.resolve(flags)
    except serve_settings.SettingsError as exc:
        raise UsageError(str(exc)) from None
    if args.print_settings:
        print(json.dumps(settings.as_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    return serve.run(settings)


# -- call and cast ---------------------------------------------------------------------------

def parse_arguments(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=JSON`` pairs to keyword arguments (``n=1``, ``name='"x"'``, ``v='[1, {}]'``)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"argument {pair!r} is not key=JSON (key a Python identifier)")
        if key in result:
            raise UsageError(f"argument {key!r} given twice")
        try:
            result[key] = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"argument {key!r}: {text!r} is not JSON ({exc}); "
                             f"a string is written {key}='\"text\"'") from None
    return result


def _client_conf(args: argparse.Namespace) -> dict[str, Any]:
    return _client_conf_of({name: getattr(args, name, None) for name in TLS_CLIENT_OPTIONS},
                           args.url)


def _client_conf_of(tls: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """The conf of a client: the TLS options given, in the group of ``url``'s driver (the
    gRPC driver's without a URL, or when the URL names no driver)."""
    group = {name: value for name, value in tls.items() if value}
    if not group:
        return {}
    try:
        driver = bridge.transport.driver_class(url or "grpcs://")
    except bridge.MessagingException:
        driver = bridge.transport.driver_class("grpcs://")
    return {driver.implements.option_group or "": group}


def _send(args: argparse.Namespace, wait_for_reply: bool) -> int:
    kwargs = parse_arguments(args.args)
    try:
        ctxt = json.loads(args.context)
    except ValueError as exc:
        raise UsageError(f"--context is not JSON: {exc}") from None
    if not isinstance(ctxt, dict):
        raise UsageError("--context must be a JSON object")
    try:
        transport = bridge.get_transport(_client_conf(args), args.url)
    except bridge.MessagingException as exc:
        raise UsageError(str(exc)) from None
    try:
        target = bridge.Target(topic=args.topic, server=args.server, namespace=args.namespace,
                               version=args.version, exchange=args.exchange,
                               fanout=getattr(args, "fanout", False))
        client = bridge.get_rpc_client(transport, target, timeout=args.timeout)
        if wait_for_reply:
            result = client.call(ctxt, args.method, **kwargs)
            print(json.dumps(result, ensure_ascii=False))
        else:
            _cast_within(client, ctxt, args.method, kwargs, args.timeout)
        return EXIT_OK
    except bridge.RemoteError as exc:
        print(f"bridge: remote failure: {exc.exc_type}: {exc.value}", file=sys.stderr)
        return EXIT_FAILED
    except bridge.MessagingTimeout as exc:
        print(f"bridge: timed out: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - any remote or transport failure is reported
        name = type(exc).__name__.removesuffix("_Remote")
        print(f"bridge: {'remote failure' if wait_for_reply else 'failed'}: {name}: "
              f"{_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        transport.cleanup()


def _cast_within(client: Any, ctxt: dict[str, Any], method: str, kwargs: dict[str, Any],
                 timeout: float) -> None:
    """Cast, but give up after ``timeout`` seconds (a driver may retry a lost broker forever)."""
    box: dict[str, BaseException] = {}

    def cast() -> None:
        try:
            client.cast(ctxt, method, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=cast, name="bridge-cast", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise bridge.MessagingTimeout(f"the cast was not accepted within {timeout} s "
                                      "(is the server or the broker reachable?)")
    if "error" in box:
        raise box["error"]


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def _call(args: argparse.Namespace) -> int:
    return _send(args, wait_for_reply=True)


def _cast(args: argparse.Namespace) -> int:
    return _send(args, wait_for_reply=False)


# -- health ----------------------------------------------------------------------------------

def health_url_from_settings() -> str:
    """The gRPC URL ``bridge serve`` would listen on (env and config file), for probing."""
    try:
        settings = serve_settings.resolve({})
        url = settings.grpc_url
    except serve_settings.SettingsError:
        url = None
    if not url:
        return DEFAULT_HEALTH_URL
    for wildcard, local in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
        url = url.replace(f"://{wildcard}:", f"://{local}:")
    return url


def check_health(url: str, timeout: float = 5.0, service: str = "",
                 tls: dict[str, str] | None = None) -> str:
    """Ask the health service of the server at ``url``; return the status name
    (``SERVING``, ...). With several hosts in ``url`` the first one that accepts a
    connection answers, as for an RPC client of that URL.

    Raises :class:`bridge.MessagingException` when the server cannot be reached or has
    no health service, ``OSError`` when a TLS file cannot be read, and
    :class:`UsageError` for a URL whose wire has no health check.
    """
    try:
        parsed = bridge.TransportURL.parse(url)
        transport = bridge.get_transport(_client_conf_of(tls or {}, url), parsed)
    except bridge.MessagingException as exc:
        raise UsageError(str(exc)) from None
    try:
        if not transport.implements.health_check or not parsed.hosts:
            raise UsageError(f"health needs the URL of a server with a health service "
                             f"(grpc://HOST:PORT or grpcs://...), not {parsed}")
        try:
            return transport.check_health(service, timeout)
        except bridge.InvalidTransportURL as exc:
            raise UsageError(str(exc)) from None
    finally:
        transport.cleanup()


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _health(args: argparse.Namespace) -> int:
    url = args.url or health_url_from_settings()
    tls = {name: getattr(args, name) for name in TLS_CLIENT_OPTIONS if getattr(args, name)}
    try:
        status = check_health(url, args.timeout, args.service, tls)
    except bridge.MessagingException as exc:
        print(f"bridge: health of {bridge.TransportURL.parse(url)}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        raise UsageError(f"cannot read a TLS file: {exc}") from None
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_FAILED


# -- describe --------------------------------------------------------------------------------

def _describe(args: argparse.Namespace) -> int:
    from bridge.rpc.describe import as_text

    try:
        transport = bridge.get_transport(_client_conf(args), args.url)
    except bridge.MessagingException as exc:
        raise UsageError(str(exc)) from None
    try:
        if not transport.implements.describe:
            raise UsageError(f"describe needs the URL of a server that answers Describe "
                             f"(http://HOST:PORT or https://...), not {transport.url}")
        try:
            description = transport.describe(args.timeout)
        except (bridge.MessagingException, OSError) as exc:
            print(f"bridge: describe {transport.url}: {type(exc).__name__}: "
                  f"{_first_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        transport.cleanup()
    if args.json:
        print(json.dumps(description, indent=2, ensure_ascii=False))
    else:
        print(as_text(description))
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------

def _add_tls_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", dest="tls_ca_file", metavar="FILE",
                        help="grpcs://, https://: PEM CA bundle that signed the server's "
                             "certificate")
    parser.add_argument("--tls-cert", dest="tls_cert_file", metavar="FILE",
                        help="grpcs://, https://: client certificate (mutual TLS)")
    parser.add_argument("--tls-key", dest="tls_key_file", metavar="FILE",
                        help="grpcs://, https://: client private key (mutual TLS)")
    parser.add_argument("--tls-server-name", dest="tls_server_name", metavar="NAME",
                        help="grpcs://, https://: the name expected in the server's certificate "
                             "(default: the URL's host; required with several hosts)")


def _add_send_options(parser: argparse.ArgumentParser, call: bool) -> None:
    parser.add_argument("url", metavar="URL",
                        help="grpc://HOST:PORT, grpcs://HOST:PORT, rabbit://USER:PASS@HOST:PORT/, "
                             "or memory://")
    parser.add_argument("topic", metavar="TOPIC", help="the target topic (bridge serve: bridge)")
    parser.add_argument("method", metavar="METHOD", help="the endpoint method")
    parser.add_argument("args", metavar="key=JSON", nargs="*",
                        help="keyword arguments, each value JSON: n=1 name='\"x\"' v='[1,2]'")
    parser.add_argument("--server", help="send to this server only")
    parser.add_argument("--namespace", help="the endpoint namespace (for example counter)")
    parser.add_argument("--version", help="the requested version, such as 1.0")
    parser.add_argument("--exchange", help="the AMQP exchange (default: openstack)")
    parser.add_argument("--context", default="{}", metavar="JSON",
                        help="the request context as a JSON object, e.g. "
                             "'{\"request_id\": \"req-1\"}'")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds to wait for the reply (call) or acceptance (default 30)")
    if not call:
        parser.add_argument("--fanout", action="store_true",
                            help="AMQP: deliver to every server of the topic")
    _add_tls_client_options(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``bridge`` argument parser with its commands."""
    parser = argparse.ArgumentParser(prog="bridge", description=bridge.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bridge {bridge.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="serve endpoints over gRPC and AMQP",
        description="Serve endpoints through one dispatcher over gRPC and AMQP at once. "
                    "Each setting is a flag, a BRIDGE_* environment variable or a key of "
                    "the TOML config file; flags win over the environment, which wins over "
                    "the file. SIGTERM/SIGINT stop and drain (grace period), SIGHUP resets "
                    "connections.")
    serve_settings.add_arguments(serve)
    serve.add_argument("--print-settings", action="store_true",
                       help="print the resolved settings and their sources as JSON, and exit")
    serve.set_defaults(func=_serve)

    call = sub.add_parser("call", help="call a method and print its JSON result",
                          description="Call METHOD and print its result as JSON. A remote "
                                      "failure goes to stderr with exit code 1.")
    _add_send_options(call, call=True)
    call.set_defaults(func=_call)

    cast = sub.add_parser("cast", help="cast a method (no result)",
                          description="Send METHOD without waiting for a result.")
    _add_send_options(cast, call=False)
    cast.set_defaults(func=_cast)

    health = sub.add_parser("health", help="exit 0 when the gRPC health service is SERVING",
                            description="Ask the gRPC health service (grpc.health.v1) and "
                                        "print its status; exit 0 only for SERVING. Without "
                                        "URL: the gRPC URL bridge serve is configured with "
                                        "(BRIDGE_GRPC_URL, the config file), else "
                                        f"{DEFAULT_HEALTH_URL}.")
    health.add_argument("url", metavar="URL", nargs="?", help="grpc://HOST:PORT or grpcs://...")
    health.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="seconds to wait for the answer (default 5)")
    health.add_argument("--service", default="", help="the service name to ask about "
                                                      "(default: the whole server)")
    _add_tls_client_options(health)
    health.set_defaults(func=_health)

    describe = sub.add_parser("describe", help="list what a server serves",
                              description="Ask the server at URL what it serves: each "
                                          "target, its endpoints (namespace, version) and "
                                          "their methods with parameters and docstrings; "
                                          "routed gateway topics as such.")
    describe.add_argument("url", metavar="URL", help="http://HOST:PORT or https://...")
    describe.add_argument("--json", action="store_true", help="print the description as JSON")
    describe.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                          help="seconds to wait for the answer (default 5)")
    _add_tls_client_options(describe)
    describe.set_defaults(func=_describe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bridge`` command; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=JSON arguments may come after options (argparse stops collecting them there).
    if extra and args.command in ("call", "cast") and not any(x.startswith("-") for x in extra):
        args.args = [*args.args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command != "serve":
        logging.basicConfig(level=logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"bridge {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
