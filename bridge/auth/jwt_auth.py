"""JSON Web Tokens, checked with PyJWT (docs/security.md, "JWT").

A token is accepted when its signature verifies with one of the configured keys (a PEM
public key or certificate, a JWKS file, or a JWKS URL fetched and cached by PyJWT's
``PyJWKClient``), its algorithm is on the allow-list (never ``none``, never a shared
HMAC secret), and its ``iss``, ``aud``, ``exp`` (required) and ``nbf`` (when present)
claims hold. The identity is the ``sub`` claim; the ``groups`` claim, a list of
strings, gives its groups. Anything else (a malformed, oversized, expired, wrongly
signed or wrongly addressed token) raises :class:`~bridge.exceptions.Unauthenticated`
with a reason that quotes nothing of the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import jwt

from bridge.auth.identity import JWT, MAX_GROUPS, MAX_NAME, Identity
from bridge.exceptions import Unauthenticated

LOG = logging.getLogger(__name__)

#: Asymmetric algorithms only: the server holds public keys, never a secret that could
#: also sign tokens, and a public key can never be mistaken for an HMAC secret.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                      "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
#: Seconds of clock skew tolerated on ``exp`` and ``nbf``.
DEFAULT_LEEWAY = 30.0
#: Seconds a fetched JWKS is kept before it is fetched again.
DEFAULT_JWKS_LIFESPAN = 300.0
JWKS_TIMEOUT = 5.0
#: Seconds between two fetches forced by a key id the cached JWKS does not hold: a
#: caller sending made-up key ids cannot make the server hammer the issuer.
JWKS_REFRESH_COOLDOWN = 30.0


class JwtConfigError(ValueError):
    """JWT settings that cannot be used."""


def _reason(exc: Exception) -> str:
    """Why a token was refused, in words that quote nothing of it."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the JWT has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the JWT is not valid yet (nbf)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the JWT is not for this audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the JWT's issuer is not trusted"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the JWT's signature does not verify"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "the JWT's algorithm is not allowed"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the JWT lacks the {exc.claim!r} claim"
    return "the JWT is malformed"


def _load_key_file(path: str) -> tuple[Any, jwt.PyJWKSet | None]:
    """(a public key, None) for a PEM file, or (None, the key set) for a JWKS file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise JwtConfigError(f"cannot read JWT key file {path!r}: {exc.strerror or exc}") \
            from None
    if data.lstrip().startswith(b"{"):
        try:
            return None, jwt.PyJWKSet.from_dict(json.loads(data))
        except (ValueError, jwt.PyJWTError) as exc:
            raise JwtConfigError(f"JWT key file {path!r} is not a usable JWKS: {exc}") \
                from None
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key(), None
        return serialization.load_pem_public_key(data), None
    except ValueError:
        raise JwtConfigError(f"JWT key file {path!r} holds no PEM public key, certificate "
                             "or JWKS (a private key does not belong on the server)") from None


class JwtAuthenticator:
    """Checks JWTs against an issuer, an audience, keys and an allow-list of algorithms."""

    def __init__(self, issuer: str, audience: str | Sequence[str], *,
                 key_file: str | None = None, jwks_url: str | None = None,
                 algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
                 leeway: float = DEFAULT_LEEWAY,
                 jwks_lifespan: float = DEFAULT_JWKS_LIFESPAN) -> None:
        if not issuer:
            raise JwtConfigError("JWTs need an issuer (auth_jwt_issuer)")
        if not audience:
            raise JwtConfigError("JWTs need an audience (auth_jwt_audience)")
        if bool(key_file) == bool(jwks_url):
            raise JwtConfigError("JWTs need exactly one of a key file (auth_jwt_key_file) "
                                 "and a JWKS URL (auth_jwt_jwks_url)")
        algorithms = tuple(algorithms)
        refused = [name for name in algorithms if name not in ALLOWED_ALGORITHMS]
        if refused or not algorithms:
            raise JwtConfigError(f"JWT algorithms {', '.join(refused) or '(none)'} are not "
                                 f"allowed; choose among {', '.join(ALLOWED_ALGORITHMS)}")
        self.issuer = issuer
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self._key: Any = None
        self._key_set: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        self._refresh_lock = threading.Lock()
        self._refreshed_at = -JWKS_REFRESH_COOLDOWN
        if key_file:
            self._key, self._key_set = _load_key_file(key_file)
        else:
            if not str(jwks_url).startswith(("https://", "http://")):
                raise JwtConfigError("auth_jwt_jwks_url must be an http(s):// URL")
            self._client = jwt.PyJWKClient(str(jwks_url), lifespan=jwks_lifespan,
                                           timeout=JWKS_TIMEOUT)

    def _signing_key(self, token: str, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the JWT is malformed")
        if self._key is not None:
            return self._key
        try:
            if self._client is not None:
                keys = self._client.get_signing_keys()  # cached for the lifespan
                if kid is not None:
                    return self._key_by_id(keys, kid)
            else:
                assert self._key_set is not None
                if kid is not None:
                    return self._key_set[kid].key
                keys = list(self._key_set.keys)
        except KeyError:
            raise Unauthenticated("the JWT's key id is not one of the trusted keys") from None
        except jwt.PyJWKClientConnectionError as exc:
            LOG.warning("Cannot fetch the JWT signing keys: %s", exc)
            raise Unauthenticated("the JWT signing keys cannot be fetched") from None
        except jwt.PyJWKClientError:
            raise Unauthenticated("the JWT's key id is not one of the trusted keys") from None
        if len(keys) != 1:
            raise Unauthenticated("the JWT names no key id (kid) and several keys are trusted")
        return keys[0].key

    def _key_by_id(self, keys: list[jwt.PyJWK], kid: str) -> Any:
        """The key ``kid`` of the fetched set; an unknown id refetches the set, at most
        once per :data:`JWKS_REFRESH_COOLDOWN` (the issuer may have rotated its keys)."""
        for key in keys:
            if key.key_id == kid:
                return key.key
        with self._refresh_lock:
            now = time.monotonic()
            if now - self._refreshed_at < JWKS_REFRESH_COOLDOWN:
                raise KeyError(kid)
            self._refreshed_at = now
        assert self._client is not None
        for key in self._client.get_signing_keys(refresh=True):
            if key.key_id == kid:
                return key.key
        raise KeyError(kid)

    def identify(self, token: str) -> Identity:
        """The identity a valid ``token`` carries; :class:`Unauthenticated` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if not isinstance(algorithm, str) or algorithm not in self.algorithms:
                raise Unauthenticated("the JWT's algorithm is not allowed")
            claims = jwt.decode(token, self._signing_key(token, header),
                                algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iss", "aud", "sub"],
                                         "verify_signature": True})
        except Unauthenticated:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a refusal
            raise Unauthenticated(_reason(exc)) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_NAME \
                or not subject.isprintable():
            raise Unauthenticated("the JWT's sub claim is not a usable principal")
        groups = claims.get("groups", [])
        if not isinstance(groups, list):
            groups = []
        names = tuple(g for g in groups if isinstance(g, str) and 0 < len(g) <= MAX_NAME)
        return Identity(subject, JWT, names[:MAX_GROUPS])


def looks_like_jwt(token: str) -> bool:
    """True for a compact JWS (``header.payload.signature``): anything else is a static
    token."""
    return token.count(".") == 2 and token.startswith("eyJ")
