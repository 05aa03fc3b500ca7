"""The options of the gRPC driver (the ``[grpc]`` conf group, overridden by the URL query),
and the grpcio channel arguments they become."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.transport.tls_files import check_tls_options

MIB = 1024 * 1024


def _at_least_0(default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"minimum": 0})


@dataclasses.dataclass(frozen=True)
class GrpcOptions:
    """Options of the gRPC driver: the ``[grpc]`` conf group, overridden by the URL query."""

    #: Largest request (server) or reply (client) accepted, in bytes.
    max_receive_message_length: int = _at_least_0(4 * MIB)
    #: Largest message sent, in bytes.
    max_send_message_length: int = _at_least_0(4 * MIB)
    #: Calls a server address runs at once; more get RESOURCE_EXHAUSTED (0: no limit).
    max_concurrent_calls: int = _at_least_0(0)
    #: Interval of HTTP/2 keepalive pings this side sends, in ms.
    keepalive_time_ms: int = _at_least_0(30_000)
    #: How long a keepalive ping may go unanswered before the connection is closed, in ms.
    keepalive_timeout_ms: int = _at_least_0(20_000)
    #: Shortest interval between client pings a server tolerates, in ms.
    min_ping_interval_ms: int = _at_least_0(5_000)
    #: Send formatted tracebacks of endpoint failures to callers.
    include_traceback: bool = False
    #: The grpcio server: ``sync`` (grpc.server) or ``aio`` (grpc.aio); see docs/performance.md.
    server_flavour: str = dataclasses.field(default="sync",
                                            metadata={"choices": ("sync", "aio")})
    #: Seconds a server waits for replies in flight when its last listener is released.
    shutdown_grace: float = _at_least_0(5.0)
    #: Serve grpc.reflection.v1alpha (and v1) server reflection.
    reflection: bool = True
    #: PEM certificate chain: the server's, or the client's for mutual TLS.
    tls_cert_file: str = ""
    #: PEM private key of ``tls_cert_file``.
    tls_key_file: str = ""
    #: PEM CA bundle: clients verify the server with it (system roots when empty);
    #: servers verify client certificates with it.
    tls_ca_file: str = ""
    #: Servers require a client certificate signed by ``tls_ca_file`` (mutual TLS).
    tls_client_auth: bool = False
    #: Clients expect this name in the server certificate instead of the URL's host.
    tls_server_name: str = ""
    #: Clients send the token this file holds as ``authorization: Bearer <token>`` with
    #: every call and cast (a static token or a JWT; docs/security.md).
    token_file: str = ""
    #: Servers ask a client connection to go away (GOAWAY) after this many ms, so
    #: long-lived clients reconnect and spread over new replicas (0: never).
    max_connection_age_ms: int = _at_least_0(0)
    #: Ms a connection past ``max_connection_age_ms`` keeps for its calls in flight
    #: before it is closed (0: no limit).
    max_connection_age_grace_ms: int = _at_least_0(0)


def check_options(url: Any, options: GrpcOptions) -> None:
    """Refuse options that do not go together, naming them."""
    check_tls_options(url, options, "grpc", "a grpcs://")


def server_args(options: GrpcOptions) -> list[tuple[str, Any]]:
    """The grpcio server arguments of ``options``."""
    return [
        ("grpc.max_receive_message_length", options.max_receive_message_length),
        ("grpc.max_send_message_length", options.max_send_message_length),
        ("grpc.keepalive_time_ms", options.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", options.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", options.min_ping_interval_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", options.min_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ] + [(f"grpc.{name}", value) for name, value in (
        ("max_connection_age_ms", options.max_connection_age_ms),
        ("max_connection_age_grace_ms", options.max_connection_age_grace_ms)) if value]


def channel_args(options: GrpcOptions) -> list[tuple[str, Any]]:
    """The grpcio channel arguments of a client with ``options``."""
    return [
        ("grpc.max_receive_message_length", options.max_receive_message_length),
        ("grpc.max_send_message_length", options.max_send_message_length),
        ("grpc.keepalive_time_ms", options.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", options.keepalive_timeout_ms),
        ("grpc.enable_retries", 0),
    ]


def read_file(path: str) -> bytes:
    """The bytes of a TLS file named by an option."""
    with open(path, "rb") as handle:
        return handle.read()
