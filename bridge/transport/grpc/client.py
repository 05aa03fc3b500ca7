"""The client side of the gRPC wire: one channel per transport, calls, casts and retries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.exceptions import (
    InvalidTarget,
    InvalidTransportURL,
    MessageDeliveryFailure,
    MessagingTimeout,
    TransportDriverError,
)
from bridge.target import Target
from bridge.transport.grpc.addresses import Address, channel_target, client_host, host_port
from bridge.transport.grpc.credentials import bearer_metadata
from bridge.transport.grpc.options import GrpcOptions, channel_args, read_file
from bridge.transport.grpc.server import SERVICE_NAME
from bridge.transport.grpc.status import exception_for_error, failure_from_metadata
from bridge.transport.grpc.values import decode_error_text, fill_map, from_value

LOG = logging.getLogger(__name__)

#: grpc's status codes by number (a StreamError carries the number).
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}

CALL = f"/{SERVICE_NAME}/Call"
CAST = f"/{SERVICE_NAME}/Cast"
CALL_STREAM = f"/{SERVICE_NAME}/CallStream"


#: grpc's words for a call that failed before any connection took it: no server saw it.
_NOT_SENT = ("failed to connect to all addresses", "dns resolution failed",
             "name resolution failure", "empty address list", "no address")


def never_delivered(details: str, failure: pb.Failure | None) -> bool:
    """True when an UNAVAILABLE call provably reached no endpoint, so sending it again
    cannot run it twice: the bridge refused it before dispatch (a Failure with reason
    UNAVAILABLE and no exception class: its servers are stopping or not started), or it
    never left this process (no connection could be made). A connection lost after the
    request went out may have delivered it, and an exception raised while handling it
    (a gateway that could not forward it) may come after delivery: False."""
    if failure is not None:
        return failure.reason == pb.Failure.REASON_UNAVAILABLE and not failure.class_name
    text = details.lower()
    return any(words in text for words in _NOT_SENT)


def encode_request(target: Target, ctxt: dict[str, Any], message: dict[str, Any],
                   wait_for_reply: bool, default_exchange: str) -> bytes:
    """The encoded CallRequest (``wait_for_reply``) or CastRequest of a message."""
    if wait_for_reply and target.fanout:
        raise InvalidTarget("A call cannot be used with fanout", target)
    request = pb.CallRequest() if wait_for_reply else pb.CastRequest()
    fill_envelope(request.envelope, target, ctxt, message, default_exchange)
    return request.SerializeToString()


def fill_envelope(envelope: pb.Envelope, target: Target, ctxt: dict[str, Any],
                  message: dict[str, Any], default_exchange: str) -> None:
    """Set ``envelope`` to carry ``message`` to ``target`` with ``ctxt``."""
    envelope.target.exchange = target.exchange or default_exchange
    envelope.target.topic = str(target.topic)
    if target.server:
        envelope.target.server = target.server
    if target.fanout:
        envelope.target.fanout = True
    envelope.method = message["method"]
    if message.get("namespace") is not None:
        envelope.namespace = message["namespace"]
    if message.get("version") is not None:
        envelope.version = message["version"]
    fill_map(envelope.context, ctxt, "the request context")
    fill_map(envelope.args, message.get("args") or {}, "argument")


class GrpcClient:
    """Calls and casts to the servers at ``addresses()`` over one channel, made on first use.

    ``addresses`` is a callable: a server of the same transport that was given ports
    for port 0 changes them.
    """

    def __init__(self, url: Any, options: GrpcOptions, addresses: Callable[[], list[Address]],
                 settings: Any, allowed_remote_exmods: list[str]) -> None:
        self.url = url
        self.scheme = url.driver_name
        self.options = options
        self.addresses = addresses
        self.settings = settings
        self.allowed_remote_exmods = allowed_remote_exmods
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: dict[str, Any] = {}
        self._metadata: tuple[tuple[str, str], ...] = ()  # the token_file's, read on connect

    @property
    def connect_address(self) -> str:
        """host:port this client connects to (comma-separated, several hosts)."""
        return ",".join(host_port(client_host(host), port) for host, port in self.addresses())

    def make_channel(self) -> grpc.Channel:
        """A new channel to the servers (the caller closes it)."""
        opts = self.options
        addresses = self.addresses()
        if self.scheme == "grpcs" and len(addresses) > 1 and not opts.tls_server_name:
            raise InvalidTransportURL(
                str(self.url), f"a grpcs:// client of several hosts ({self.url}) needs "
                "tls_server_name, the name every server's certificate holds: one channel "
                "cannot check each server against its own host name")
        target = channel_target(addresses)
        args = channel_args(opts)
        if self.scheme != "grpcs":
            return grpc.insecure_channel(target, args)
        if opts.tls_server_name:
            args.append(("grpc.ssl_target_name_override", opts.tls_server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_file(opts.tls_ca_file) if opts.tls_ca_file else None,
            private_key=read_file(opts.tls_key_file) if opts.tls_key_file else None,
            certificate_chain=read_file(opts.tls_cert_file) if opts.tls_cert_file else None)
        return grpc.secure_channel(target, credentials, args)

    def _stub(self, method: str) -> Any:
        stub = self._stubs.get(method)
        if stub is not None:
            return stub
        with self._lock:
            if self._channel is None:
                try:
                    self._metadata = bearer_metadata(self.options.token_file)
                    self._channel = self.make_channel()
                except (OSError, ValueError) as exc:  # a TLS or token file, an address
                    raise MessageDeliveryFailure(
                        f"cannot connect to gRPC {self.connect_address}: {exc}") from None
            if method == CALL_STREAM:
                stub = self._channel.stream_stream(
                    method, request_serializer=pb.StreamRequest.SerializeToString,
                    response_deserializer=pb.StreamResponse.FromString)
            else:
                stub = self._channel.unary_unary(method)
            self._stubs[method] = stub
            return stub

    def send(self, target: Target, ctxt: dict[str, Any], message: dict[str, Any], *,
             wait_for_reply: bool, timeout: float | None, retry: int | None = None,
             at_least_once: bool = False) -> Any:
        """Send a call (its result) or a cast (None); see :meth:`Driver.send`."""
        data = encode_request(target, ctxt, message, wait_for_reply,
                              self.settings.control_exchange)
        if not wait_for_reply:
            timeout = timeout or self.settings.rpc_response_timeout
        reply = self._invoke(CALL if wait_for_reply else CAST, data, target, timeout, retry,
                             at_least_once)
        if not wait_for_reply:
            return None
        try:
            return from_value(pb.CallResponse.FromString(reply).result, "the result")
        except Exception as exc:  # DecodeError, InvalidValueError: never raw to the caller
            raise TransportDriverError(
                f"the reply from {target} cannot be read: {decode_error_text(exc)}") from None

    def _invoke(self, method: str, data: bytes, target: Target, timeout: float | None,
                retry: int | None, at_least_once: bool) -> bytes:
        """Send ``data``; re-send it (per ``retry``) only while it provably never reached
        an endpoint (see :func:`never_delivered`), or, for a cast with ``at_least_once``,
        after any UNAVAILABLE."""
        stub = self._stub(method)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempts = 0
        delay = 0.05
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise MessagingTimeout(f"Timed out sending to {target} at "
                                       f"{self.connect_address}")
            try:
                return stub(data, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
                details = err.details() if hasattr(err, "details") else str(err)
                failure = failure_from_metadata(
                    err.trailing_metadata() if hasattr(err, "trailing_metadata") else None)
            if code != grpc.StatusCode.UNAVAILABLE:
                if not target.exchange:  # the exchange it was sent to, for MessageUndeliverable
                    target = target(exchange=self.settings.control_exchange)
                raise exception_for_error(code, details, failure, self.allowed_remote_exmods,
                                          at_least_once, target)
            resend = never_delivered(details, failure) or (method == CAST and at_least_once)
            if not resend:
                raise MessageDeliveryFailure(
                    f"gRPC server {self.connect_address} unavailable for {target}, and the "
                    f"request may have reached it, so it is not sent again: {details}")
            if retry is not None and 0 <= retry <= attempts:
                raise MessageDeliveryFailure(
                    f"gRPC server {self.connect_address} unavailable for {target} after "
                    f"{attempts + 1} attempt(s): {details}")
            attempts += 1
            pause = delay if remaining is None else min(delay, max(0.0, remaining))
            LOG.debug("gRPC %s to %s unavailable (%s); retry %d in %.2f s", method,
                      self.connect_address, details, attempts, pause)
            time.sleep(pause)
            delay = min(delay * 2, 1.0)

    def call_many(self, target: Target, ctxt: dict[str, Any],
                  messages: Sequence[dict[str, Any]], *, timeout: float | None,
                  ) -> Iterator[tuple[int, Any]]:
        """The calls of ``messages`` over one ``CallStream``: each request is written as
        the stream takes it, each answer yielded as ``(index, result or exception)`` as it
        comes (see :meth:`Driver.call_many`); the server enforces ``timeout`` per call.

        If the stream itself fails, every call not answered yet yields the exception a
        unary call would have raised for that status.
        """
        if target.fanout:
            raise InvalidTarget("A call cannot be used with fanout", target)
        if not target.exchange:  # the exchange it is sent to, in errors
            target = target(exchange=self.settings.control_exchange)
        requests = [self._stream_request(index, target, ctxt, message, timeout)
                    for index, message in enumerate(messages)]
        pending = set(range(len(requests)))
        if not pending:
            return
        responses = self._stub(CALL_STREAM)(iter(requests), metadata=self._metadata)
        try:
            for data in responses:
                index, outcome = self._stream_outcome(data, target)
                if index in pending:  # an id it did not send, or a second answer: ignored
                    pending.discard(index)
                    yield index, outcome
                if not pending:
                    return
        except grpc.RpcError as err:
            failure = failure_from_metadata(err.trailing_metadata()
                                            if hasattr(err, "trailing_metadata") else None)
            code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
            details = err.details() if hasattr(err, "details") else str(err)
            for index in sorted(pending):
                yield index, exception_for_error(code, details, failure,
                                                 self.allowed_remote_exmods, target=target)
            pending.clear()
        finally:
            if pending:
                responses.cancel()
        for index in sorted(pending):  # the server ended the stream with calls unanswered
            yield index, MessageDeliveryFailure(
                f"gRPC server {self.connect_address} ended the CallStream to {target} "
                f"without answering call {index}")

    def _stream_request(self, index: int, target: Target, ctxt: dict[str, Any],
                        message: dict[str, Any], timeout: float | None) -> pb.StreamRequest:
        request = pb.StreamRequest(id=index, timeout=timeout or 0)
        fill_envelope(request.envelope, target, ctxt, message, self.settings.control_exchange)
        return request

    def _stream_outcome(self, data: Any, target: Target) -> tuple[int, Any]:
        """(index, result or exception) of one StreamResponse."""
        if data.HasField("error"):
            error = data.error
            code = _STATUS_CODES.get(error.code, grpc.StatusCode.UNKNOWN)
            failure = error.failure if error.HasField("failure") else None
            return data.id, exception_for_error(code, error.message, failure,
                                                self.allowed_remote_exmods, target=target)
        try:
            return data.id, from_value(data.result, "the result")
        except Exception as exc:  # InvalidValueError: never raw to the caller
            return data.id, TransportDriverError(
                f"the reply from {target} cannot be read: {decode_error_text(exc)}")

    def check_health(self, service: str = "", timeout: float = 5.0) -> str:
        """Ask the gRPC health service (grpc.health.v1) of the servers; the status name.

        Raises :class:`MessageDeliveryFailure` (``CODE: details``) when the server cannot
        be reached or has no health service, :class:`InvalidTransportURL` when no host
        resolves, ``OSError`` when a TLS file cannot be read.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            channel = self.make_channel()
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise
            raise InvalidTransportURL(str(self.url), f"cannot resolve {self.url}: {exc}") from None
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            raise MessageDeliveryFailure(f"{err.code().name}: {err.details()}") from None
        finally:
            channel.close()
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def describe(self, timeout: float = 5.0) -> dict[str, Any]:
        """Ask the servers what they serve (``bridge.v1.Bridge/Describe``), for this
        client's credentials; the plain description. Raises as :meth:`check_health`."""
        from bridge.transport.grpc.describe import description_from_response

        stub = self._stub("/bridge.v1.Bridge/Describe")
        try:
            data = stub(pb.DescribeRequest().SerializeToString(), timeout=timeout,
                        metadata=self._metadata)
        except grpc.RpcError as err:
            raise MessageDeliveryFailure(f"{err.code().name}: {err.details()}") from None
        return description_from_response(pb.DescribeResponse.FromString(data))

    def close(self) -> None:
        """Close the channel (a later call opens a new one)."""
        with self._lock:
            channel, self._channel = self._channel, None
            self._stubs.clear()
        if channel is not None:
            channel.close()
