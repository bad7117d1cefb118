"""Test PKI for the real-library log tests: a root CA, a server certificate, a device certificate.

RSA 2048 / SHA-256 like the AWS IoT endpoints; a second, unrelated CA signs a server certificate the
client does not trust (for the x509 verification failure).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files the client and server load."""

    ca: Path
    server_cert: Path
    server_key: Path
    device_ca: Path
    device_cert: Path
    device_key: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: rsa.RSAPrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


def make_pki(directory: Path) -> Pki:
    """Create the PKI in `directory` and return the file paths."""
    root_key, device_ca_key, rogue_ca_key = _key(), _key(), _key()
    server_key, device_key, rogue_key = _key(), _key(), _key()
    root = _certificate("Test Root CA", root_key, "Test Root CA", root_key, ca=True)
    device_ca = _certificate("Test Device CA", device_ca_key, "Test Device CA", device_ca_key, ca=True)
    server = _certificate(
        "localhost", server_key, "Test Root CA", root_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    device = _certificate(
        "pic32-hub-0001",
        device_key,
        "Test Device CA",
        device_ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue = _certificate(
        "localhost", rogue_key, "Rogue CA", rogue_ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    return Pki(
        ca=_write(directory / "ca.pem", root),
        server_cert=_write(directory / "server.pem", server, server_key),
        server_key=directory / "server.key",
        device_ca=_write(directory / "device-ca.pem", device_ca),
        device_cert=_write(directory / "device.pem", device, device_key),
        device_key=directory / "device.key",
        rogue_cert=_write(directory / "rogue.pem", rogue, rogue_key),
        rogue_key=directory / "rogue.key",
    )
