"""Helpers for the authentication tests: key pairs, JWTs, token and policy files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.auth.tokens import token_hash

ISSUER = "https://issuer.example.org"
AUDIENCE = "rpc-bridge"


class Signer:
    """An ES256 key pair that signs JWTs; its public key written as PEM or JWKS."""

    def __init__(self, kid: str = "key-1") -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "ES256"})
        return {"keys": [jwk]}

    def token(self, sub: str = "alice", *, lifetime: float = 300, audience: str = AUDIENCE,
              issuer: str = ISSUER, groups: list[str] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"sub": sub, "iss": issuer, "aud": audience, "iat": now,
                                   "exp": now + int(lifetime)}
        if groups is not None:
            payload["groups"] = groups
        payload.update(claims)
        payload = {key: value for key, value in payload.items() if value is not None}
        return jwt.encode(payload, self.key, algorithm="ES256", headers={"kid": self.kid})


def unsigned_token(sub: str = "alice", audience: str = AUDIENCE) -> str:
    """An ``alg: none`` JWT with otherwise valid claims."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "iss": ISSUER, "aud": audience, "exp": now + 300},
                      None, algorithm="none")


def write_tokens(path: Path, entries: list[tuple[str, str, list[str]]]) -> str:
    """A token file of ``(token, principal, groups)`` entries, by hash; its path."""
    lines = []
    for token, principal, groups in entries:
        lines += ["[[tokens]]", f"principal = {json.dumps(principal)}",
                  f'sha256 = "{token_hash(token)}"', f"groups = {json.dumps(groups)}", ""]
    path.write_text("\n".join(lines))
    return str(path)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def issue_client(directory: Path, name: str, ca_key: Any, ca_cert: Any, *,
                 uris: tuple[str, ...] = (), dns: tuple[str, ...] = (),
                 common_name: str = "client") -> tuple[str, str]:
    """A client certificate signed by the CA, with URI and DNS SANs; (cert, key) paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from tls_certs import write as write_pem

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    names = [x509.UniformResourceIdentifier(uri) for uri in uris] + \
        [x509.DNSName(item) for item in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return write_pem(directory, name, key, builder.sign(ca_key, hashes.SHA256()))
