"""The ``bridge`` command (also installed as ``rpc-bridge``; ``python -m bridge`` runs it
too): ``serve``, ``check``, ``call``, ``cast``, ``health`` and ``describe``.

Exit codes (:mod:`bridge.app.errors`): 0 success; 1 a remote failure (or health not
SERVING, or ``serve`` could not start); 2 a usage or configuration error; 3 a connection
failure (cannot reach the server or broker, credentials or TLS refused); 4 a timeout;
70 an internal error. Each failure is one line on stderr; ``--debug`` adds the
traceback and the library's log lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import bridge
from bridge.app import settings as serve_settings
from bridge.app.calls import (
    TLS_CLIENT_OPTIONS,
    client_conf,
    masked,
    open_transport,
    parse_arguments,
    positive_seconds,
    send,
    version,
)
from bridge.app.errors import (
    EXIT_OK,
    EXIT_REMOTE,
    EXIT_USAGE,
    CliError,
    ConnectFailure,
    TimedOut,
    UsageError,
)

EXIT_FAILED = EXIT_REMOTE
EXIT_INTERNAL = 70
DEFAULT_TOPIC = "bridge"
DEFAULT_HEALTH_URL = "grpc://127.0.0.1:50051"

__all__ = ["DEFAULT_HEALTH_URL", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError",
           "build_parser", "check_health", "client_conf", "health_url_from_settings", "main",
           "parse_arguments"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a :class:`UsageError`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _prog(argv0: str | None = None) -> str:
    base = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return base if base in ("bridge", "rpc-bridge") else "bridge"


# -- serve and check -------------------------------------------------------------------------

def _settings(args: argparse.Namespace) -> serve_settings.ServeSettings:
    try:
        return serve_settings.resolve(_flags(args))
    except serve_settings.SettingsError as exc:
        if exc.settings is not None and exc.settings.log_format == "json" \
                and not args.print_settings:
            # log_format = "json" parsed: the process writes JSON lines only.
            from bridge.app.announce import Announcer

            announcer = Announcer(sys.stdout, "json")
            for problem in exc.problems:
                announcer.error(f"{args.prog_name} {args.command}: error: {problem}")
            raise SystemExit(EXIT_USAGE) from None
        if len(exc.problems) == 1:
            raise UsageError(exc.problems[0]) from None
        for problem in exc.problems[:-1]:
            print(f"{args.prog_name} {args.command}: error: {problem}", file=sys.stderr)
        raise UsageError(exc.problems[-1]) from None


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items()
            if k in serve_settings.OPTIONS_BY_NAME or k == "config"}


def _report(args: argparse.Namespace, problems: list[str]) -> int:
    for problem in problems:
        print(f"{args.prog_name} {args.command}: problem: {problem}", file=sys.stderr)
    print(f"{args.prog_name} {args.command}: {len(problems)} problem(s); fix them and run "
          f"{args.prog_name} check again", file=sys.stderr)
    return EXIT_USAGE


def _check(args: argparse.Namespace) -> int:
    from bridge.app import check

    try:
        settings = serve_settings.resolve(_flags(args))
        problems = []
    except serve_settings.SettingsError as exc:
        if exc.settings is None:
            return _report(args, exc.problems)
        settings, problems = exc.settings, list(exc.problems)
    problems += [item for item in check.problems(settings) if item not in problems]
    if problems:
        return _report(args, problems)
    print(f"{args.prog_name} check: ok: {check.summary(settings)}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    settings = _settings(args)
    if args.print_settings:
        from bridge.app import check

        problems = check.problems(settings, build_endpoints=False)
        if problems:
            return _report(args, problems)
        print(json.dumps(settings.as_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    from bridge.app import serve
    from bridge.app.announce import command_name

    return serve.run(settings, flags=_flags(args), command=command_name())


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
    except bridge.MessagingException as exc:
        raise UsageError(str(exc)) from None
    transport = open_transport(url, tls or {})
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


def _health(args: argparse.Namespace) -> int:
    url = args.url or health_url_from_settings()
    tls = {name: getattr(args, name) for name in TLS_CLIENT_OPTIONS if getattr(args, name)}
    try:
        status = check_health(url, args.timeout, args.service, tls)
    except OSError as exc:
        raise UsageError(f"cannot read a TLS file: {exc}") from None
    except bridge.MessagingException as exc:
        text = str(exc)
        if text.startswith("NOT_FOUND"):  # grpc.health.v1's answer for an unknown service
            status = "SERVICE_UNKNOWN"
        elif text.startswith("UNIMPLEMENTED"):
            raise CliError(f"{masked(url)} has no gRPC health service: {text}") from None
        else:
            raise ConnectFailure(f"cannot ask {masked(url)} for its health: {text}; check "
                                 "that bridge serve runs there (and the TLS options)") from None
    print(status)
    if status == "SERVICE_UNKNOWN":
        print(f"{args.prog_name} health: the server knows no service {args.service!r}; ask "
              "for liveness, readiness or the whole server (no --service)", file=sys.stderr)
    return EXIT_OK if status == "SERVING" else EXIT_REMOTE


# -- describe --------------------------------------------------------------------------------

def _describe(args: argparse.Namespace) -> int:
    from bridge.rpc.describe import as_text

    tls = {name: getattr(args, name) for name in TLS_CLIENT_OPTIONS if getattr(args, name)}
    transport = open_transport(args.url, tls)
    try:
        if not transport.implements.describe:
            raise UsageError(f"describe needs the URL of a server that answers Describe "
                             f"(http://HOST:PORT or https://...), not {masked(args.url)}")
        try:
            description = transport.describe(args.timeout)
        except OSError as exc:
            raise UsageError(f"cannot read a TLS file: {exc}") from None
        except bridge.MessagingTimeout as exc:
            raise TimedOut(f"no description within {args.timeout:g} s from "
                           f"{masked(args.url)}: {exc}") from None
        except bridge.MessagingException as exc:
            raise ConnectFailure(f"cannot ask {masked(args.url)} what it serves: {exc}; check "
                                 "that bridge serve runs there (and the TLS options)") from None
    finally:
        transport.cleanup()
    print(json.dumps(description, indent=2, ensure_ascii=False) if args.json
          else as_text(description))
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
    parser.add_argument("--token-file", dest="token_file", metavar="FILE",
                        help="gRPC: send the token this file holds as 'authorization: "
                             "Bearer <token>' (a static token or a JWT; docs/security.md)")


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
    parser.add_argument("--version", type=version,
                        help="the requested version, major.minor such as 1.0")
    parser.add_argument("--exchange", help="the AMQP exchange (default: openstack)")
    parser.add_argument("--context", default="{}", metavar="JSON",
                        help="the request context as a JSON object, e.g. "
                             "'{\"request_id\": \"req-1\"}'")
    parser.add_argument("--timeout", type=positive_seconds, default=30.0, metavar="SECONDS",
                        help="seconds to wait for the reply (call) or acceptance (default 30)")
    if not call:
        parser.add_argument("--fanout", action="store_true",
                            help="AMQP: deliver to every server of the topic")
    _add_tls_client_options(parser)


def _debug_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on failure, print the traceback; print the library's log lines")
    return parent


_COMMANDS = ("serve", "check", "call", "cast", "health", "describe")
_EXIT_CODES = ("exit codes: 0 ok; 1 remote failure (the server answered with an error, or "
               "health is not SERVING); 2 usage or configuration error; 3 cannot connect "
               "(server or broker unreachable, credentials or TLS refused); 4 timed out")


def build_parser(prog: str = "bridge") -> argparse.ArgumentParser:
    """The ``bridge`` argument parser with its commands."""
    parser = _Parser(prog=prog, description=bridge.__doc__.splitlines()[0], epilog=_EXIT_CODES,
                     parents=[_debug_parent()])
    parser.add_argument("--version", action="version", version=f"{prog} {bridge.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    debug = [_debug_parent()]

    serve = sub.add_parser(
        "serve", help="serve endpoints over gRPC and AMQP", parents=debug,
        description="Serve endpoints through one dispatcher over gRPC and AMQP at once. "
                    "Each setting is a flag, a BRIDGE_* environment variable or a key of "
                    "the TOML config file; flags win over the environment, which wins over "
                    "the file. SIGTERM/SIGINT stop and drain (grace period); SIGHUP reloads "
                    "the routes (and TLS material) and resets connections.")
    serve_settings.add_arguments(serve)
    serve.add_argument("--print-settings", action="store_true",
                       help="check the configuration, print the resolved settings and their "
                            "sources as JSON, and exit")
    serve.add_argument("--check", action="store_true",
                       help="check the whole configuration and exit (as bridge check)")
    serve.set_defaults(func=_serve)

    check = sub.add_parser(
        "check", help="check a whole configuration without serving", parents=debug,
        description="Check everything bridge serve would use, without serving: settings, "
                    "URLs and their options, endpoints (imported and built), routes, TLS "
                    "files. Lists every problem and exits 2 when there is one, else 0.")
    serve_settings.add_arguments(check)
    check.set_defaults(func=_check)

    call = sub.add_parser("call", help="call a method and print its JSON result", parents=debug,
                          description="Call METHOD and print its result as JSON.",
                          epilog=_EXIT_CODES)
    _add_send_options(call, call=True)
    call.set_defaults(func=lambda args: send(args, wait_for_reply=True))

    cast = sub.add_parser("cast", help="cast a method (no result)", parents=debug,
                          description="Send METHOD without waiting for a result.",
                          epilog=_EXIT_CODES)
    _add_send_options(cast, call=False)
    cast.set_defaults(func=lambda args: send(args, wait_for_reply=False))

    health = sub.add_parser("health", help="exit 0 when the gRPC health service is SERVING",
                            parents=debug,
                            description="Ask the gRPC health service (grpc.health.v1) and "
                                        "print its status; exit 0 only for SERVING. Without "
                                        "URL: the gRPC URL bridge serve is configured with "
                                        "(BRIDGE_GRPC_URL, the config file), else "
                                        f"{DEFAULT_HEALTH_URL}.", epilog=_EXIT_CODES)
    health.add_argument("url", metavar="URL", nargs="?", help="grpc://HOST:PORT or grpcs://...")
    health.add_argument("--timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                        help="seconds to wait for the answer (default 5)")
    health.add_argument("--service", default="",
                        help="liveness (the process serves), readiness (every wire and route "
                             "connected) or empty: the whole server, as readiness")
    _add_tls_client_options(health)
    health.set_defaults(func=_health)

    describe = sub.add_parser("describe", help="list what a server serves", parents=debug,
                              description="Ask the server at URL what it serves: each "
                                          "target, its endpoints (namespace, version) and "
                                          "their methods with parameters and docstrings; "
                                          "routed gateway topics as such.",
                              epilog=_EXIT_CODES)
    describe.add_argument("url", metavar="URL", help="http://HOST:PORT or https://...")
    describe.add_argument("--json", action="store_true", help="print the description as JSON")
    describe.add_argument("--timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                          help="seconds to wait for the answer (default 5)")
    _add_tls_client_options(describe)
    describe.set_defaults(func=_describe)
    return parser


def _configure_cli_logging(debug: bool) -> None:
    """The library's log lines only with ``--debug``: a failure is reported once, as one
    line, by the command."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.CRITICAL + 1,
                        format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bridge`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _prog()
    debug = "--debug" in argv
    command = next((item for item in argv if item in _COMMANDS), "")
    where = f"{prog} {command}" if command else prog
    try:
        parser = build_parser(prog)
        args, extra = parser.parse_known_args(argv)
        command = args.command
        where = f"{prog} {command}"
        # key=JSON arguments may come after options (argparse stops collecting them there).
        if extra and command in ("call", "cast") and not any(x.startswith("-") for x in extra):
            args.args = [*args.args, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.prog_name = prog
        if command not in ("serve",):
            _configure_cli_logging(debug)
        return args.func(args)
    except CliError as exc:
        if debug:
            traceback.print_exc()
        print(f"{where}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # a failure already reported in its own form
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"{where}: internal error: {type(exc).__name__}: {exc} (run again with "
              "--debug for the traceback, and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
