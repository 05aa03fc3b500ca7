"""The ``bridge`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

import bridge

LOG = logging.getLogger("bridge.cli")

DEFAULT_TOPIC = "bridge"


def load_endpoints(specs: Sequence[str], server: Any) -> list[Any]:
    """Build endpoints from ``module:Class``, ``module:factory`` or ``module`` specs.

    A class or factory that takes a ``server`` argument receives the server; a
    module (or a ``module:name`` naming a list) contributes every endpoint listed.
    """
    if not specs:
        from endpoints import default_endpoints

        return default_endpoints(server)
    result: list[Any] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SystemExit(
                f"bridge: cannot import endpoint module {module_name!r}: {exc}") from exc
        if not attr:
            listed = getattr(module, "ENDPOINTS", None)
            if listed is None:
                raise SystemExit(f"bridge: module {module_name!r} has no ENDPOINTS list; "
                                 "name a class or factory as module:Name")
            result.extend(listed)
            continue
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise SystemExit(f"bridge: module {module_name!r} has no {attr!r}") from None
        if isinstance(obj, (list, tuple)):
            result.extend(obj)
        elif callable(obj):
            try:
                made = obj(server=server)
            except TypeError:
                made = obj()
            result.extend(made if isinstance(made, (list, tuple)) else [made])
        else:
            result.append(obj)
    return result


def _serve(args: argparse.Namespace) -> int:
    urls = args.transport_url or ["memory://"]
    transports = [bridge.get_transport(None, url) for url in urls]
    target = bridge.Target(topic=args.topic, server=args.server or socket.gethostname(),
                           exchange=args.exchange)
    holder: dict[str, Any] = {}
    endpoints = load_endpoints(args.endpoint, _ServerProxy(holder))
    server = bridge.get_rpc_server(transports, target, endpoints, executor=args.executor)
    holder["server"] = server
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        LOG.info("Received %s: stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start(override_pool_size=args.pool_size)
    for address in server.addresses:
        print(f"bridge: serving topic {target.topic!r} as server {target.server!r} on {address}",
              flush=True)
    while not stop_requested.wait(0.5):
        if not server.running:
            break
    server.stop()
    server.wait()
    for transport in transports:
        transport.cleanup()
    print("bridge: stopped", flush=True)
    return 0


class _ServerProxy:
    """Stands for the server while endpoints are built, before the server exists."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder["server"], name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=bridge.__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve endpoints on one or more transports")
    serve.add_argument("--transport-url", action="append",
                       help="a transport to listen on (repeatable); default memory://")
    serve.add_argument("--topic", default=DEFAULT_TOPIC, help="the target topic")
    serve.add_argument("--server", default=None, help="the server name (default: host name)")
    serve.add_argument("--exchange", default=None, help="the exchange (default: control_exchange)")
    serve.add_argument("--endpoint", action="append", default=[],
                       help="module:Class, module:factory or module (repeatable); "
                            "default: the shipped endpoints")
    serve.add_argument("--executor", default="threading",
                       choices=["threading", "blocking", "asyncio"])
    serve.add_argument("--pool-size", type=int, default=None, help="executor threads (64)")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
