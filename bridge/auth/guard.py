"""The admission step every incoming message passes before its handler runs.

:class:`Guard` is called by :class:`~bridge.rpc.server.MessageHandlingServer` for each
message a listener hands over, whatever the wire and whatever the handler (local
endpoints or gateway forwarding). It

1. drops any value the caller sent under :data:`~bridge.auth.identity.IDENTITY_KEY`
   (kept, as the identity, only when the sender is a trusted gateway);
2. establishes the caller's :class:`~bridge.auth.identity.Identity` from the
   :class:`~bridge.auth.identity.Credentials` the driver found: a bearer token (a
   static token or a JWT), else a verified client certificate, else a broker user id,
   else the configured identity of broker messages, else anonymous;
3. asks the policy whether that identity may make the request.

A refusal is an :class:`~bridge.exceptions.Unauthenticated` (no or invalid credentials,
or an anonymous caller the policy refuses) or a :class:`~bridge.exceptions.PermissionDenied`
(an identified caller the policy refuses), counted in ``bridge_refusals_total`` and
written as one line on the ``bridge.audit`` logger; never with a token or password.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.auth.identity import (
    ANONYMOUS_IDENTITY,
    BROKER,
    IDENTITY_KEY,
    MTLS,
    Credentials,
    Identity,
)
from bridge.auth.policy import AUTHENTICATED_ONLY, Policy, PolicyError, Request, load_policy
from bridge.auth.tokens import StaticTokens, TokenFileError, load_tokens
from bridge.exceptions import PermissionDenied, Unauthenticated
from bridge.stats import record_refusal

if TYPE_CHECKING:
    from bridge.auth.jwt_auth import JwtAuthenticator
    from bridge.target import Target
    from bridge.transport.base import IncomingMessage

LOG = logging.getLogger(__name__)
AUDIT = logging.getLogger("bridge.audit")


class AuthConfigError(ValueError):
    """Authentication or authorization settings that cannot be used."""


@dataclass(frozen=True)
class AuthConfig:
    """What to authenticate with and which policy to apply (``bridge serve``'s ``auth_*``
    settings). Everything unset: no authentication, no policy, every caller allowed."""

    #: TOML file of static tokens, by SHA-256 (:mod:`bridge.auth.tokens`).
    token_file: str | None = None
    #: JWTs (:mod:`bridge.auth.jwt_auth`): the issuer and audience they must name, a key
    #: file (PEM or JWKS) or a JWKS URL, the algorithms allowed.
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    jwt_key_file: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    #: TOML policy file (:mod:`bridge.auth.policy`).
    policy_file: str | None = None
    #: The principal of broker messages that carry no ``user_id`` (mechanism ``broker``).
    amqp_identity: str | None = None
    #: Principal globs of gateways whose forwarded identity (under ``IDENTITY_KEY``) is
    #: taken as the caller's.
    trusted_forwarders: tuple[str, ...] = ()

    @property
    def jwt(self) -> bool:
        """True when JWTs are configured."""
        return bool(self.jwt_issuer or self.jwt_key_file or self.jwt_jwks_url)

    @property
    def authenticates(self) -> bool:
        """True when bearer tokens are checked (static tokens or JWTs)."""
        return bool(self.token_file) or self.jwt


@dataclass(frozen=True)
class _Loaded:
    """The files of a configuration, as read at one (re)load."""

    tokens: StaticTokens | None = None
    jwt: JwtAuthenticator | None = None
    policy: Policy | None = None
    sources: dict[str, str] = field(default_factory=dict)


def _load_jwt(config: AuthConfig) -> JwtAuthenticator | None:
    if not config.jwt:
        return None
    from bridge.auth.jwt_auth import JwtAuthenticator, JwtConfigError

    try:
        return JwtAuthenticator(config.jwt_issuer or "", config.jwt_audience,
                                key_file=config.jwt_key_file, jwks_url=config.jwt_jwks_url,
                                algorithms=config.jwt_algorithms)
    except JwtConfigError as exc:
        raise AuthConfigError(str(exc)) from None


def _load(config: AuthConfig, previous: _Loaded | None = None) -> tuple[_Loaded, list[str]]:
    """Read every file of ``config``. Without ``previous`` a bad file raises
    :class:`AuthConfigError`; with it, the part that fails keeps its previous value and
    the returned list says why."""
    problems: list[str] = []
    parts: dict[str, Any] = {}
    loaders = (("tokens", lambda: load_tokens(config.token_file) if config.token_file else None),
               ("jwt", lambda: _load_jwt(config)),
               ("policy", lambda: load_policy(config.policy_file) if config.policy_file
                else None))
    for name, loader in loaders:
        try:
            parts[name] = loader()
        except (TokenFileError, PolicyError, AuthConfigError) as exc:
            if previous is None:
                raise AuthConfigError(str(exc)) from None
            parts[name] = getattr(previous, name)
            problems.append(f"{exc}; keeping the previous {name}")
    return _Loaded(**parts), problems


def _matches_any(principal: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(principal, pattern) for pattern in patterns)


def _policy_of(loaded: Any) -> Policy | None:
    """The policy in force with ``loaded``: its file's, the implicit one (identified callers
    only) while tokens or JWTs are configured without a file, or None (allow all)."""
    if loaded.policy is not None:
        return loaded.policy
    return AUTHENTICATED_ONLY if (loaded.tokens is not None or loaded.jwt is not None) \
        else None


class Guard:
    """Authenticates and authorizes incoming messages (see the module doc).

    ``Guard()`` (no configuration) establishes identities from what the wire verified
    (client certificates, broker user ids), drops forged identity keys and allows
    everything. :meth:`reload` re-reads the token, key and policy files.
    """

    def __init__(self, config: AuthConfig | None = None) -> None:
        self.config = config or AuthConfig()
        self._loaded, _ = _load(self.config)
        self._policy = _policy_of(self._loaded)  # read on every message: kept ready
        self._lock = threading.Lock()

    # -- configuration -----------------------------------------------------------------------

    @property
    def policy(self) -> Policy | None:
        """The policy in force: the file's, the implicit one (identified callers only)
        while tokens or JWTs are configured without a file, or None (allow all)."""
        return self._policy

    @property
    def authenticates(self) -> bool:
        """True when bearer tokens (static or JWT) are checked."""
        return self.config.authenticates

    def reload(self, config: AuthConfig | None = None) -> bool:
        """Re-read the token file, the JWT keys and the policy file (of ``config`` when
        given: new settings). A part that fails keeps its previous contents in force and
        is logged with the reason; returns True when everything was reloaded."""
        with self._lock:
            if config is not None:
                self.config = config
            loaded, problems = _load(self.config, self._loaded)
            self._loaded = loaded
            self._policy = _policy_of(loaded)
        for problem in problems:
            LOG.error("Reload: %s", problem)
        policy = loaded.policy
        LOG.info("Reloaded authentication and policy: %s token(s), JWT %s, policy %s",
                 len(loaded.tokens) if loaded.tokens is not None else "no",
                 "on" if loaded.jwt is not None else "off",
                 f"{policy.source} ({len(policy.deny)} deny, {len(policy.allow)} allow rules)"
                 if policy is not None else "none")
        return not problems

    # -- the step ----------------------------------------------------------------------------

    def authenticate(self, credentials: Credentials | None) -> Identity:
        """The identity ``credentials`` establish; :class:`Unauthenticated` when they
        are presented but cannot be verified."""
        if credentials is None:
            return ANONYMOUS_IDENTITY
        loaded = self._loaded
        if credentials.malformed is not None and (loaded.tokens or loaded.jwt):
            raise Unauthenticated(credentials.malformed)
        token = credentials.bearer
        if token is not None and (loaded.tokens is not None or loaded.jwt is not None):
            if loaded.jwt is not None:
                from bridge.auth.jwt_auth import looks_like_jwt

                if looks_like_jwt(token):
                    return loaded.jwt.identify(token)
            identity = loaded.tokens.identify(token) if loaded.tokens is not None else None
            if identity is None:
                raise Unauthenticated("the bearer token is not one this server accepts")
            return identity
        if credentials.peer_names:
            return Identity(credentials.peer_names[0], MTLS)
        if credentials.broker_user:
            return Identity(credentials.broker_user, BROKER)
        if credentials.brokered and self.config.amqp_identity:
            return Identity(self.config.amqp_identity, BROKER)
        return ANONYMOUS_IDENTITY

    def admit(self, incoming: IncomingMessage, server_target: Target,
              default_exchange: str) -> BaseException | None:
        """Run the step for ``incoming``: None when it may go on to its handler (its
        ``identity`` set, and the context's identity key), else the refusal to answer it
        with (already counted and logged)."""
        ctxt = incoming.ctxt
        forwarded = ctxt.pop(IDENTITY_KEY, None) if IDENTITY_KEY in ctxt else None
        credentials = incoming.credentials
        policy = self._policy
        if forwarded is None and policy is None and (credentials is None or (
                credentials.bearer is None and not credentials.peer_names
                and not credentials.broker_user and not credentials.brokered)):
            incoming.identity = ANONYMOUS_IDENTITY  # the common case without any auth
            return None
        try:
            identity = self.authenticate(credentials)
        except Unauthenticated as exc:
            return self._refuse(incoming, exc, None, server_target, default_exchange)
        if forwarded is not None and not identity.anonymous and \
                _matches_any(identity.principal, self.config.trusted_forwarders):
            identity = Identity.from_context(forwarded, via=identity.principal) or identity
        incoming.identity = identity
        if not identity.anonymous:
            ctxt[IDENTITY_KEY] = identity.as_context()
        if policy is None:
            return None
        request = request_of(incoming, server_target, default_exchange)
        decision = policy.decide(identity, request)
        if decision.allowed:
            return None
        if identity.anonymous:
            refusal: BaseException = Unauthenticated(
                f"credentials are needed to {request.kind} {request.method!r}")
        else:
            refusal = PermissionDenied(f"{identity.principal} may not {request.kind} "
                                       f"{request.method!r} (namespace "
                                       f"{request.namespace or 'null'}, topic {request.topic})")
        return self._refuse(incoming, refusal, identity, server_target, default_exchange,
                            request, decision.rule)

    def _refuse(self, incoming: IncomingMessage, refusal: BaseException,
                identity: Identity | None, server_target: Target, default_exchange: str,
                request: Request | None = None, rule: str | None = None) -> BaseException:
        reason = "unauthenticated" if isinstance(refusal, Unauthenticated) \
            else "permission_denied"
        record_refusal(incoming.wire, reason)
        request = request or request_of(incoming, server_target, default_exchange)
        who = (f"principal={_quote(identity.principal)} mechanism={identity.mechanism}"
               if identity is not None else f"principal=- credentials={_presented(incoming)}")
        AUDIT.warning("refused %s: %s %s rule=%s why=%s", reason, who, request.describe(),
                      _quote(rule) if rule else "(no rule allows it)", refusal)
        incoming.refusal = refusal
        return refusal


def _quote(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:200])
    return repr(text)


def _presented(incoming: IncomingMessage) -> str:
    """What kind of credentials a refused caller presented (never their value)."""
    credentials = incoming.credentials
    if credentials is None:
        return "none"
    if credentials.malformed is not None:
        return "malformed"
    if credentials.bearer is not None:
        from bridge.auth.jwt_auth import looks_like_jwt

        return "jwt" if looks_like_jwt(credentials.bearer) else "token"
    return "none"


def request_of(incoming: IncomingMessage, server_target: Target,
               default_exchange: str) -> Request:
    """The policy's view of ``incoming``: where the wire says it was sent (else the
    server's own target), its kind and its method."""
    target = incoming.target or server_target
    if incoming.wants_reply:
        kind = "call"
    else:
        kind = "fanout" if target.fanout else "cast"
    message = incoming.message if isinstance(incoming.message, dict) else {}
    namespace, method = message.get("namespace"), message.get("method")
    return Request(wire=str(incoming.wire), kind=kind,
                   exchange=str(target.exchange or default_exchange),
                   topic=str(target.topic or ""), server=str(target.server or ""),
                   namespace=namespace if isinstance(namespace, str) else "",
                   method=method if isinstance(method, str) else "")


#: The guard of servers built without one: wire-verified identities, no policy.
DEFAULT_GUARD = Guard()
