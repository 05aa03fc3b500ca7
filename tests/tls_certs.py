"""Throwaway TLS certificates for the tests, made with ``cryptography``.

``make_pki(directory)`` writes a test CA with a server certificate (for ``localhost``
and ``127.0.0.1``) and a client certificate signed by it, and a self-signed "rogue"
client; ``issue`` and ``write`` make any other certificate a test needs.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names a server certificate is valid for unless told otherwise.
SERVER_NAMES = ("localhost", "127.0.0.1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(subject: str, issuer_key: Any = None, issuer_name: x509.Name | None = None, *,
          ca: bool = False, server: bool = False,
          names: tuple[str, ...] = SERVER_NAMES) -> tuple[Any, x509.Certificate]:
    """A key and a certificate for ``subject``, self-signed unless an issuer is given.

    A server certificate is valid for ``names`` (DNS names or IP addresses); any
    other certificate that is not a CA's is a client certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(issuer_name or _name(subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        alt_names: list[x509.GeneralName] = []
        for name in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt_names.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names),
                                        critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def write(directory: Path, name: str, key: Any, cert: x509.Certificate) -> tuple[str, str]:
    """Write ``name.pem`` and ``name.key`` (PEM, unencrypted); return their paths."""
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


def make_pki(directory: Path) -> dict[str, Any]:
    """``ca`` (its certificate's path), ``server``, ``client`` and ``rogue`` ((cert, key)).

    The CA's own key and certificate are kept as ``ca_key`` and ``ca_cert``, to sign
    more certificates with ``issue``.
    """
    ca_key, ca_cert = issue("test CA", ca=True)
    paths: dict[str, Any] = {"ca": write(directory, "ca", ca_key, ca_cert)[0],
                             "ca_key": ca_key, "ca_cert": ca_cert}
    for name, server in (("server", True), ("client", False)):
        key, cert = issue(name, ca_key, ca_cert.subject, server=server)
        paths[name] = write(directory, name, key, cert)
    paths["rogue"] = write(directory, "rogue", *issue("rogue"))
    return paths
