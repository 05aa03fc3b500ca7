"""Who is calling: the credentials a driver finds on a request, and the identity the
server establishes from them.

A driver fills :class:`Credentials` with what its wire tells about the sender (a
bearer token, the names of a verified client certificate, the broker-validated user
id) and sets it on the :class:`~bridge.transport.base.IncomingMessage`. The server's
admission step (:class:`bridge.auth.guard.Guard`) turns them into an :class:`Identity`
before any handler runs, and puts that identity in the request context under
:data:`IDENTITY_KEY`, a key no caller can set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The reserved context key under which endpoints find the caller's identity: a dict
#: ``{"principal": str, "mechanism": str, "groups": [str, ...]}`` (plus ``"via"``, the
#: principal of a trusted gateway, for an identity it forwarded). A value a caller sends
#: under this key is dropped on every wire; the key is absent for anonymous callers.
IDENTITY_KEY = "bridge_identity"

#: How an identity was established.
MTLS, TOKEN, JWT, BROKER, ANONYMOUS = "mtls", "token", "jwt", "broker", "anonymous"
MECHANISMS = (MTLS, TOKEN, JWT, BROKER, ANONYMOUS)

#: The longest principal or group name kept (longer ones are refused as malformed).
MAX_NAME = 512
#: The most groups kept for one identity.
MAX_GROUPS = 64


@dataclass(frozen=True)
class Identity:
    """The established identity of a caller."""

    #: Who: a token's principal, a JWT's ``sub``, a certificate's SPIFFE ID, DNS name or
    #: common name, a broker user; ``"anonymous"`` for a caller nobody identified.
    principal: str
    #: How it was established: ``mtls``, ``token``, ``jwt``, ``broker`` or ``anonymous``.
    mechanism: str
    #: Groups the identity belongs to (from the token file or the JWT's ``groups`` claim).
    groups: tuple[str, ...] = ()
    #: The principal of the trusted gateway that forwarded this identity, else None.
    via: str | None = None

    @property
    def anonymous(self) -> bool:
        """True for a caller that presented nothing the server could verify."""
        return self.mechanism == ANONYMOUS

    def as_context(self) -> dict[str, Any]:
        """The value endpoints find under :data:`IDENTITY_KEY`."""
        value: dict[str, Any] = {"principal": self.principal, "mechanism": self.mechanism,
                                 "groups": list(self.groups)}
        if self.via is not None:
            value["via"] = self.via
        return value

    @classmethod
    def from_context(cls, value: Any, via: str) -> Identity | None:
        """The identity a trusted gateway (``via``) forwarded under :data:`IDENTITY_KEY`,
        or None when ``value`` is not a well-formed identity."""
        if not isinstance(value, dict):
            return None
        principal, mechanism = value.get("principal"), value.get("mechanism")
        groups = value.get("groups", [])
        if not (_good_name(principal) and mechanism in MECHANISMS and mechanism != ANONYMOUS
                and isinstance(groups, list) and len(groups) <= MAX_GROUPS
                and all(_good_name(group) for group in groups)):
            return None
        return cls(principal, mechanism, tuple(groups), via)

    def __str__(self) -> str:
        return f"{self.principal} ({self.mechanism})"


ANONYMOUS_IDENTITY = Identity("anonymous", ANONYMOUS)


def _good_name(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable())


@dataclass(frozen=True)
class Credentials:
    """What a driver found on one request about its sender; nothing here is verified yet
    except what the wire itself verified (a client certificate, a broker user id)."""

    #: The wire's short name (``grpc``, ``amqp``, ``memory``...).
    wire: str
    #: The bearer token of an ``authorization: Bearer ...`` header, as sent (a static
    #: token or a JWT). Never logged.
    bearer: str | None = field(default=None, repr=False)
    #: Set when an ``authorization`` header was present but is not ``Bearer <token>``.
    malformed: str | None = None
    #: The names of a client certificate the TLS layer verified against the server's CA,
    #: in order of preference: SPIFFE URI SANs, then DNS SANs, then the subject CN.
    peer_names: tuple[str, ...] = ()
    #: A user id the broker validated (RabbitMQ checks ``user_id`` against the
    #: connection's user), or a test's identity on ``memory://``.
    broker_user: str | None = None
    #: The message came through a broker (AMQP): without ``broker_user`` its identity is
    #: the configured identity of broker messages, if any.
    brokered: bool = False


#: The longest ``authorization`` header value read (a JWT with many claims fits).
MAX_BEARER = 16 * 1024


def bearer_credentials(wire: str, authorization: Any, peer_names: tuple[str, ...] = (),
                       ) -> Credentials:
    """Credentials from an ``authorization`` header value (str or bytes, or None) and the
    verified peer names; an oversized or non-Bearer value is kept as ``malformed``."""
    if authorization is None:
        return Credentials(wire, peer_names=peer_names)
    if isinstance(authorization, bytes):
        try:
            authorization = authorization.decode("ascii")
        except UnicodeDecodeError:
            return Credentials(wire, malformed="the authorization header is not ASCII",
                               peer_names=peer_names)
    text = str(authorization)
    if len(text) > MAX_BEARER:
        return Credentials(wire, malformed=f"the authorization header is over {MAX_BEARER} "
                           "bytes", peer_names=peer_names)
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return Credentials(wire, malformed="the authorization header is not 'Bearer <token>'",
                           peer_names=peer_names)
    return Credentials(wire, bearer=token, peer_names=peer_names)
