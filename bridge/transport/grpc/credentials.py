"""What a gRPC request tells about its sender, for the server's admission step, and the
trace context it carries.

:func:`credentials_of` reads the ``authorization`` metadata (``Bearer <token>``) and,
when the server requires client certificates (so the TLS layer verified the peer's
against the CA), the certificate's names: SPIFFE URI SANs, then DNS SANs, then the
subject CN. Without required client authentication a presented certificate is not
verified and its names are ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from bridge._proto.bridge.v1 import bridge_pb2 as pb
from bridge.auth.identity import Credentials, bearer_credentials
from bridge.failures import classify
from bridge.transport.grpc.headers import TRACE_KEYS, trace_headers
from bridge.transport.grpc.status import Rejection

WIRE = "grpc"
#: The credentials of a request that presents none (the common case, made once).
NONE = Credentials(WIRE)


def _texts(values: Any) -> list[str]:
    texts = []
    for value in values or ():
        try:
            texts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError:
            continue
    return [text for text in texts if text and text.isprintable()]


def peer_names(auth_context: dict[str, Any]) -> tuple[str, ...]:
    """The names of a verified client certificate, in order of preference."""
    uris = _texts(auth_context.get("peer_uri"))
    spiffe = _texts(auth_context.get("peer_spiffe_id")) or [
        uri for uri in uris if uri.startswith("spiffe://")]
    names = [*spiffe, *_texts(auth_context.get("peer_dns")),
             *_texts(auth_context.get("x509_common_name"))]
    return tuple(dict.fromkeys(names))


class Sender(NamedTuple):
    """What a request's metadata tells: who sent it, and its W3C trace context."""

    credentials: Credentials
    headers: dict[str, str] | None


#: The sender of a request with no credentials and no trace context (made once).
NOTHING = Sender(NONE, None)


def sender_of(context: Any, verified_peer: bool) -> Sender:
    """The :class:`Sender` of the request behind ``context`` (sync or aio), read in one
    pass over its metadata.

    ``verified_peer``: the server requires client certificates, so the peer's was
    verified against the CA and its names may identify the caller.
    """
    authorization = None
    several = False
    headers: dict[str, str] | None = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            several = authorization is not None
            authorization = value
        elif key in TRACE_KEYS:
            headers = trace_headers(((key, value),), headers)
    if several:
        return Sender(Credentials(WIRE, malformed="several authorization headers"), headers)
    if authorization is None and not verified_peer:
        return Sender(NONE, headers) if headers is not None else NOTHING
    names = peer_names(context.auth_context() or {}) if verified_peer else ()
    return Sender(bearer_credentials(WIRE, authorization, names), headers)


def bearer_metadata(token_file: str) -> tuple[tuple[str, str], ...]:
    """The call metadata of a client with ``token_file`` (empty without one): the token
    it holds (surrounding whitespace ignored) as ``authorization: Bearer <token>``.
    ``OSError`` when it cannot be read, ``ValueError`` when it holds no single token."""
    if not token_file:
        return ()
    with open(token_file, encoding="ascii", errors="replace") as handle:
        token = handle.read().strip()
    if not token or any(ch.isspace() for ch in token):
        raise ValueError(f"the token file {token_file!r} holds no single token")
    return (("authorization", f"Bearer {token}"),)


def refused_cast(incoming: Any) -> None:
    """Raise the :class:`Rejection` of a cast the server's admission step refused, so the
    caller of ``Cast`` gets the refusal instead of an acceptance."""
    refusal = incoming.refusal
    if refusal is not None:
        reason = pb.Failure.Reason.Value("REASON_" + classify(refusal).reason)
        raise Rejection(reason, str(refusal))
