"""``bridge call`` and ``bridge cast``: one request from the command line.

A request is sent once (``retry=0``): the command line is its own retry, so a server
or broker that refuses the connection or the credentials is reported at once. On a
wire with a health service (gRPC), a short probe first tells "cannot connect" (exit
3) from a failure the server answered (exit 1) and bounds the wait for a host that
does not answer at all. Results print as JSON; a float that JSON cannot write (NaN,
infinities) prints as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, as
protobuf's JSON mapping writes them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
from typing import Any

import bridge
from bridge.app.errors import EXIT_OK, CliError, ConnectFailure, TimedOut, UsageError
from bridge.exceptions import NoSuchMethod, UnsupportedVersion, relayed_failure

TLS_CLIENT_OPTIONS = ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name",
                      "token_file")
#: Seconds the connection probe may take (a host that does not answer at all).
CONNECT_TIMEOUT = 2.0
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")
#: Health answers that still prove a server is there (it just has no health service).
_REACHED = ("UNIMPLEMENTED", "NOT_FOUND")
_HINTS = {
    "NoSuchMethod": "check the method name, --namespace and --version",
    "UnsupportedVersion": "check --namespace and --version against the served endpoints",
}


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """``value`` as valid JSON text (non-finite floats as protobuf's JSON strings)."""
    return json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False)


def client_conf(tls: dict[str, Any], url: str | None = None) -> dict[str, Any]:
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


def positive_seconds(text: str) -> float:
    """An argparse type: seconds > 0 (finite)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def version(text: str) -> str:
    """An argparse type: ``major.minor`` or ``major.minor.revision``."""
    if not _VERSION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a version is major.minor such as 1.0 or 2.3.1, "
                                         f"not {text!r}")
    return text


def masked(url: Any) -> str:
    """The URL without its password."""
    try:
        return str(bridge.TransportURL.parse(str(url)))
    except bridge.MessagingException:
        return str(url).split("://", 1)[0] + "://..."


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def open_transport(url: str, tls: dict[str, Any]) -> bridge.Transport:
    """The client transport of ``url``; a bad URL or option is a usage error."""
    try:
        return bridge.get_transport(client_conf(tls, url), url)
    except (bridge.MessagingException, ValueError) as exc:
        raise UsageError(str(exc)) from None


def probe(transport: bridge.Transport, timeout: float) -> bool:
    """Check that the server at the transport's URL answers (wires with a health
    service); True when probed. :class:`ConnectFailure` when it cannot be reached."""
    if not transport.implements.health_check:
        return False
    try:
        transport.check_health("", timeout)
    except bridge.InvalidTransportURL as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read a TLS file: {exc}") from None
    except bridge.MessagingException as exc:
        text = str(exc)
        if not text.startswith(_REACHED):
            raise ConnectFailure(_cannot_reach(transport.url, text)) from exc
    return True


def _cannot_reach(url: Any, detail: str) -> str:
    return (f"cannot reach {masked(url)}: {_first_line(detail)}; check that the server or "
            "broker runs there and that the URL's host, port and credentials are right")


def remote_failure(exc: BaseException) -> CliError:
    """The one-line error of a failure the server answered with."""
    if isinstance(exc, bridge.RemoteError):
        name, text = str(exc.exc_type), _first_line(str(exc.value))
    else:
        name, text = type(exc).__name__.removesuffix("_Remote"), _first_line(str(exc))
    hint = _HINTS.get(name)
    return CliError(f"remote failure: {name}: {text}" + (f" ({hint})" if hint else ""))


def send(args: argparse.Namespace, wait_for_reply: bool) -> int:
    """Run ``call`` (``wait_for_reply``) or ``cast``; print a call's result as JSON."""
    kwargs = parse_arguments(args.args)
    try:
        ctxt = json.loads(args.context)
    except ValueError as exc:
        raise UsageError(f"--context is not JSON: {exc}") from None
    if not isinstance(ctxt, dict):
        raise UsageError("--context must be a JSON object, such as '{\"request_id\": \"r1\"}'")
    tls = {name: getattr(args, name, None) for name in TLS_CLIENT_OPTIONS}
    transport = open_transport(args.url, tls)
    try:
        probed = probe(transport, min(args.timeout, CONNECT_TIMEOUT))
        try:
            target = bridge.Target(topic=args.topic, server=args.server,
                                   namespace=args.namespace, version=args.version,
                                   exchange=args.exchange, fanout=getattr(args, "fanout", False))
            client = bridge.get_rpc_client(transport, target, timeout=args.timeout, retry=0)
        except (bridge.MessagingException, ValueError) as exc:
            raise UsageError(str(exc)) from None
        try:
            if wait_for_reply:
                print(to_json(client.call(ctxt, args.method, **kwargs)))
            else:
                _cast_within(client, ctxt, args.method, kwargs, args.timeout)
        except bridge.MessagingTimeout as exc:
            if not wait_for_reply:
                raise ConnectFailure(_cannot_reach(args.url, str(exc))) from exc
            raise TimedOut(f"no answer within {args.timeout:g} s from topic {args.topic!r} "
                           f"at {masked(args.url)}: is a server of that topic running there? "
                           "(a slow method needs a larger --timeout)") from exc
        except (bridge.RemoteError, NoSuchMethod, UnsupportedVersion) as exc:
            raise remote_failure(exc) from exc
        except bridge.MessageDeliveryFailure as exc:
            if probed or relayed_failure(exc) is not None:
                raise remote_failure(exc) from exc
            raise ConnectFailure(_cannot_reach(args.url, str(exc))) from exc
        except (bridge.InvalidTarget, TypeError, ValueError) as exc:
            if relayed_failure(exc) is not None:
                raise remote_failure(exc) from exc
            raise UsageError(_first_line(str(exc))) from exc
        except Exception as exc:  # noqa: BLE001 - any other failure came from the server
            raise remote_failure(exc) from exc
        return EXIT_OK
    finally:
        transport.cleanup()


def _cast_within(client: Any, ctxt: dict[str, Any], method: str, kwargs: dict[str, Any],
                 timeout: float) -> None:
    """Cast, but give up after ``timeout`` seconds (a driver may wait for a lost broker)."""
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
        raise bridge.MessagingTimeout(f"the cast was not accepted within {timeout:g} s")
    if "error" in box:
        raise box["error"]
