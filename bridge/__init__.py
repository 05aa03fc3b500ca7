"""rpc-bridge: oslo.messaging's RPC API, served over gRPC and AMQP through one dispatcher.

A program written against oslo.messaging's server and client API runs with only
its import line changed: ``import bridge as oslo_messaging``.
"""

from bridge.exceptions import (
    ClientSendError,
    DriverLoadFailure,
    ExecutorLoadFailure,
    ExpectedException,
    InvalidTarget,
    InvalidTransportURL,
    MalformedMessage,
    MessageDeliveryFailure,
    MessageUndeliverable,
    MessagingException,
    MessagingServerError,
    MessagingTimeout,
    NoSuchMethod,
    RemoteError,
    RPCDispatcherError,
    RPCVersionCapError,
    ServerListenError,
    TaskTimeout,
    UnsupportedVersion,
)
from bridge.rpc.client import RPCClient, TransportOptions, get_rpc_client
from bridge.rpc.dispatcher import (
    DefaultRPCAccessPolicy,
    ExplicitRPCAccessPolicy,
    LegacyRPCAccessPolicy,
    RPCAccessPolicyBase,
    RPCDispatcher,
    expected_exceptions,
    expose,
    version_is_compatible,
)
from bridge.rpc.server import MessageHandlingServer, RPCServer, get_rpc_server
from bridge.serializer import JsonPayloadSerializer, NoOpSerializer, Serializer
from bridge.target import Target
from bridge.transport import (
    RPCTransport,
    Transport,
    TransportURL,
    get_rpc_transport,
    get_transport,
)
from bridge.values import NotPrimitiveError

__version__ = "0.1.0"

__all__ = [
    "ClientSendError", "DefaultRPCAccessPolicy", "DriverLoadFailure", "ExecutorLoadFailure",
    "ExpectedException", "ExplicitRPCAccessPolicy", "InvalidTarget", "InvalidTransportURL",
    "JsonPayloadSerializer", "LegacyRPCAccessPolicy", "MalformedMessage",
    "MessageDeliveryFailure", "MessageHandlingServer", "MessageUndeliverable",
    "MessagingException", "MessagingServerError", "MessagingTimeout", "NoOpSerializer",
    "NoSuchMethod", "NotPrimitiveError", "RPCAccessPolicyBase", "RPCClient", "RPCDispatcher",
    "RPCDispatcherError", "RPCServer", "RPCTransport", "RPCVersionCapError", "RemoteError",
    "Serializer", "ServerListenError", "Target", "TaskTimeout", "Transport",
    "TransportOptions", "TransportURL", "UnsupportedVersion", "expected_exceptions", "expose",
    "get_rpc_client", "get_rpc_server", "get_rpc_transport", "get_transport",
    "version_is_compatible",
]
