"""Test certificates, generated with the ``cryptography`` package: a CA, a node certificate for
127.0.0.1 / localhost, a client certificate, and a second, unrelated CA with its own client
certificate (for "wrong CA" cases). Short-lived ECDSA P-256; never used outside tests."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca: pathlib.Path
    server_cert: pathlib.Path  # serverAuth + clientAuth: also the node's identity towards peers
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    other_ca: pathlib.Path  # an unrelated CA
    other_client_cert: pathlib.Path  # signed by other_ca
    other_client_key: pathlib.Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          san: list[x509.GeneralName] | None = None,
          usages: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: pathlib.Path, cert: x509.Certificate | None = None,
           key: ec.EllipticCurvePrivateKey | None = None) -> pathlib.Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
    return path


def make_pki(d: pathlib.Path) -> Pki:
    """Write a CA, a node and a client certificate (and an unrelated CA) under ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("gantry test CA", ca_key, _name("gantry test CA"), ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("gantry node", srv_key, ca.subject, ca_key,
                san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("gantry admin", cli_key, ca.subject, ca_key,
                usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("another CA", other_key, _name("another CA"), other_key, ca=True)
    ocli_key = ec.generate_private_key(ec.SECP256R1())
    ocli = _cert("stranger", ocli_key, other.subject, other_key,
                 usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Pki(ca=_write(d / "ca.pem", ca), server_cert=_write(d / "node.pem", srv),
               server_key=_write(d / "node.key", key=srv_key),
               client_cert=_write(d / "client.pem", cli),
               client_key=_write(d / "client.key", key=cli_key),
               other_ca=_write(d / "other-ca.pem", other),
               other_client_cert=_write(d / "stranger.pem", ocli),
               other_client_key=_write(d / "stranger.key", key=ocli_key))
