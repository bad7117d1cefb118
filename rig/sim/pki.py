"""The simulated bench's PKI: an Amazon-like server chain and a device CA, generated once per sim.

AWS IoT's ATS endpoints present leaf → intermediate ("Amazon RSA 2048 M01") → Amazon Root CA 1
*cross-signed by Starfield*, so a device that trusts Amazon Root CA 1 builds its chain before it
ever needs the cross-signed certificate: it parses those bytes but never verifies them. That matters
for the incident: a corruption there changes the handshake transcript without the client noticing.
This module reproduces that shape with `cryptography`:

    Sim Services Root CA G2 (legacy, self-signed) ──signs──> cross_root (subject = Sim Root CA 1)
    Sim Root CA 1 (root.pem, what devices and observers trust) ──> Sim RSA 2048 M01 (intermediate)
        ──> server leaf (CN = the endpoint, ATS-style SANs)
    Sim Device CA ──> one certificate per MQTT client id (device_credentials), and the observer's

`server_chain.pem` holds leaf + intermediate + cross-signed root, sized so that the stand-in's
coalesced first flight is about 5.4 KB, like the 5411-byte record seen from AWS (bench.md §6): the
leaf carries the region's service names as SANs, as AWS's wildcard certificate does.
Everything is idempotent: existing files are reused, so device images built earlier stay valid.

The resulting first flight, as a client choosing x25519 receives it (offsets in the TCP stream from
the server; measured with the stand-in, the random serials may move the later bytes by one):

    0..4        record header (type 22, length 5420)
    5..101      ServerHello: session id length at 43, session id 44..75 (parsed, never signed)
    102..5068   Certificate: leaf DER 112..2586, intermediate 2590..3751, cross-signed root 3755..5068
                (parsed by the client, never verified: its chain ends at the trusted root first)
    5069..5368  ServerKeyExchange (signed: a corruption here fails the client at state 4)
    5369..5420  CertificateRequest: cert types 5379..5381 (parsed, not signed)
    5421..5424  ServerHelloDone
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from rig.errors import ConfigError, InfrastructureError

_VALIDITY = datetime.timedelta(days=3650)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Service names an AWS IoT regional wildcard certificate carries (data-ats, jobs, credentials, …):
# they make the leaf about as large as AWS's, which sizes the first flight.
_SERVICES = (
    "iot",
    "ats.iot",
    "data.iot",
    "data-ats.iot",
    "jobs.iot",
    "credentials.iot",
    "deviceadvisor.iot",
    "tunneling.iot",
    "api.tunneling.iot",
    "data.jobs.iot",
    "fleethub.iot",
    "mqtt.iot",
    "greengrass.iot",
    "greengrass-ats.iot",
    "wireless.iot",
    "provisioning.iot",
    "signer.iot",
    "events.iot",
    "data.events.iot",
    "analytics.iot",
    "sitewise.iot",
    "twinmaker.iot",
    "data.tunneling.iot",
    "device-defender.iot",
    "fleetwise.iot",
    "roborunner.iot",
    "things-graph.iot",
    "secure-tunneling.iot",
    "core-device.iot",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files of one sim's PKI (keys are PEM too, mode 0600)."""

    root_pem: Path
    cross_root_pem: Path
    intermediate_pem: Path
    server_chain_pem: Path
    server_key: Path
    device_ca_pem: Path
    device_ca_key: Path
    observer_pem: Path
    observer_key: Path

    @property
    def directory(self) -> Path:
        return self.root_pem.parent

    def device_credentials(self, client_id: str) -> tuple[Path, Path]:
        """The device certificate and key for `client_id` (its CN), made on first use by the device CA."""
        if not _CLIENT_ID.match(client_id):
            raise ConfigError(
                f"MQTT client id {client_id!r}: use 1-128 letters, digits, '.', '_' or '-' "
                "(it names the device's certificate files)"
            )
        cert_path = self.directory / "devices" / f"{client_id}.pem"
        key_path = self.directory / "devices" / f"{client_id}.key"
        if not (cert_path.exists() and key_path.exists()):
            ca_cert = _load_cert(self.device_ca_pem)
            ca_key = _load_key(self.device_ca_key)
            key = _new_key()
            cert = _issue(_name(client_id, "Rig Sim Devices"), key, ca_cert.subject, ca_key, leaf_client=True)
            _write_key(key_path, key)
            _write_pem(cert_path, [cert])
        return cert_path, key_path


def _files(directory: Path) -> Pki:
    return Pki(
        root_pem=directory / "root.pem",
        cross_root_pem=directory / "cross_root.pem",
        intermediate_pem=directory / "intermediate.pem",
        server_chain_pem=directory / "server_chain.pem",
        server_key=directory / "server.key",
        device_ca_pem=directory / "device_ca.pem",
        device_ca_key=directory / "device_ca.key",
        observer_pem=directory / "observer.pem",
        observer_key=directory / "observer.key",
    )


def load_pki(directory: Path) -> Pki:
    """The PKI generated earlier in `directory`; names the first missing file if there is one."""
    pki = _files(directory)
    for path in (
        pki.root_pem,
        pki.cross_root_pem,
        pki.intermediate_pem,
        pki.server_chain_pem,
        pki.server_key,
        pki.device_ca_pem,
        pki.device_ca_key,
        pki.observer_pem,
        pki.observer_key,
    ):
        if not path.is_file():
            raise InfrastructureError(
                f"sim PKI {directory}: {path.name} is missing — run `rig sim up` (it generates the PKI)"
            )
    return pki


def generate_pki(directory: Path, endpoint: str) -> Pki:
    """Create (or reuse) the sim's PKI in `directory`; the server leaf is remade if `endpoint` changed."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = _files(directory)

    legacy_cert, legacy_key = _ca(
        directory / "legacy_root.pem",
        directory / "legacy_root.key",
        _name("Sim Services Root Certificate Authority - G2", "Rig Sim Services"),
        None,
    )
    root_cert, root_key = _ca(pki.root_pem, directory / "root.key", _name("Sim Root CA 1", "Rig Sim"), None)
    inter_cert, inter_key = _ca(
        pki.intermediate_pem,
        directory / "intermediate.key",
        _name("Sim RSA 2048 M01", "Rig Sim"),
        (root_cert, root_key),
        path_length=0,
    )
    if not pki.cross_root_pem.exists():
        # The same subject and public key as the root, vouched for by the legacy root.
        cross = _issue(
            root_cert.subject,
            root_key,
            legacy_cert.subject,
            legacy_key,
            ca=True,
            public_key=root_cert.public_key(),
        )
        _write_pem(pki.cross_root_pem, [cross])
    cross_root = _load_cert(pki.cross_root_pem)

    leaf = _load_cert(pki.server_chain_pem) if pki.server_chain_pem.exists() else None
    if leaf is None or not pki.server_key.exists() or endpoint not in _dns_names(leaf):
        key = _new_key()
        leaf = _issue(
            _name(endpoint, "Rig Sim"),
            key,
            inter_cert.subject,
            inter_key,
            server_names=_server_names(endpoint),
        )
        _write_key(pki.server_key, key)
        _write_pem(pki.server_chain_pem, [leaf, inter_cert, cross_root])

    _ca(pki.device_ca_pem, pki.device_ca_key, _name("Sim Device CA", "Rig Sim Devices"), None)
    if not (pki.observer_pem.exists() and pki.observer_key.exists()):
        ca_cert = _load_cert(pki.device_ca_pem)
        key = _new_key()
        cert = _issue(
            _name("rig-observer", "Rig Sim Observers"),
            key,
            ca_cert.subject,
            _load_key(pki.device_ca_key),
            leaf_client=True,
        )
        _write_key(pki.observer_key, key)
        _write_pem(pki.observer_pem, [cert])
    return pki


def certificate_id(cert_pem: bytes) -> str:
    """AWS IoT's certificate id of a PEM or DER certificate: the SHA-256 of its DER, 64 hex digits."""
    cert = (
        x509.load_pem_x509_certificate(cert_pem)
        if b"-----BEGIN" in cert_pem
        else x509.load_der_x509_certificate(cert_pem)
    )
    return cert.fingerprint(hashes.SHA256()).hex()


def certificate_cn(cert_der: bytes) -> str | None:
    """The subject common name of a DER certificate."""
    names = x509.load_der_x509_certificate(cert_der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _server_names(endpoint: str) -> list[str]:
    names = [endpoint]
    parts = endpoint.split(".")
    region = next((p for p in parts if re.fullmatch(r"[a-z]{2}-[a-z]+-\d", p)), "us-east-1")
    names += [f"*.{service}.{region}.amazonaws.com" for service in _SERVICES]
    return list(dict.fromkeys([*names, "localhost"]))


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ca(
    cert_path: Path,
    key_path: Path,
    subject: x509.Name,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    path_length: int | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """Load a CA certificate and key, or make them (self-signed when `issuer` is None)."""
    if cert_path.exists() and key_path.exists():
        return _load_cert(cert_path), _load_key(key_path)
    key = _new_key()
    if issuer is None:
        cert = _issue(subject, key, subject, key, ca=True, path_length=path_length)
    else:
        cert = _issue(subject, key, issuer[0].subject, issuer[1], ca=True, path_length=path_length)
    _write_key(key_path, key)
    _write_pem(cert_path, [cert])
    return cert, key


def _issue(
    subject: x509.Name,
    subject_key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    path_length: int | None = None,
    leaf_client: bool = False,
    server_names: list[str] | None = None,
    public_key: object = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    pub = public_key if public_key is not None else subject_key.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if issuer != subject:
        builder = _add_distribution_points(builder, issuer)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if leaf_client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server_names is not None:
        general: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        general.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _add_distribution_points(builder: x509.CertificateBuilder, issuer: x509.Name) -> x509.CertificateBuilder:
    """OCSP, CA issuer, CRL and policy pointers as public CAs put in every certificate they issue."""
    cn = issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    slug = re.sub(r"[^a-z0-9]+", "-", str(cn).lower()).strip("-")
    base = f"http://pki.rig-sim.invalid/{slug}"
    return (
        builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(f"{base}/ocsp"),
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(f"{base}.cer"),
                    ),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(f"{base}.crl")], None, None, None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(
                        x509.ObjectIdentifier("2.23.140.1.2.1"),
                        [f"{base}/repository"],
                    )
                ]
            ),
            critical=False,
        )
    )


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InfrastructureError(
            f"sim PKI: {path} is not an RSA key — delete the PKI folder and run `rig sim up`"
        )
    return key


def _write_pem(path: Path, certs: list[x509.Certificate]) -> None:
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    _atomic_write(path, data, 0o644)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    _atomic_write(path, data, 0o600)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
