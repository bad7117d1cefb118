"""The sim PKI: an Amazon-like server chain with a cross-signed root, device certificates, idempotence."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from rig.errors import ConfigError, InfrastructureError
from rig.sim.pki import Pki, generate_pki, load_pki

ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"


def certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_server_chain_is_leaf_intermediate_and_cross_signed_root(sim_pki: Pki) -> None:
    leaf, intermediate, cross = certs(sim_pki.server_chain_pem)
    (root,) = certs(sim_pki.root_pem)
    assert cn(leaf.subject) == ENDPOINT
    assert leaf.issuer == intermediate.subject
    assert intermediate.issuer == root.subject
    # The cross-signed root: the root's own subject and key, issued by the legacy root.
    assert cross.subject == root.subject
    assert cross.public_key() == root.public_key()
    assert cn(cross.issuer) == "Sim Services Root Certificate Authority - G2"
    assert certs(sim_pki.cross_root_pem) == [cross]
    assert certs(sim_pki.intermediate_pem) == [intermediate]
    sizes = [len(c.public_bytes(Encoding.DER)) for c in (leaf, intermediate, cross)]
    print(f"server chain DER sizes: leaf {sizes[0]}, intermediate {sizes[1]}, cross root {sizes[2]}")


def test_server_leaf_verifies_to_the_root_for_the_endpoint_and_loopback(sim_pki: Pki) -> None:
    leaf, intermediate, cross = certs(sim_pki.server_chain_pem)
    verifier = (
        PolicyBuilder().store(Store(certs(sim_pki.root_pem))).build_server_verifier(x509.DNSName(ENDPOINT))
    )
    chain = verifier.verify(leaf, [intermediate, cross])
    assert [cn(c.subject) for c in chain] == [ENDPOINT, "Sim RSA 2048 M01", "Sim Root CA 1"]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "*.iot.us-east-1.amazonaws.com" in san.get_values_for_type(x509.DNSName)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_device_credentials_are_made_once_by_the_device_ca(sim_pki: Pki) -> None:
    cert_path, key_path = sim_pki.device_credentials("hub-pki-0001")
    first = cert_path.read_bytes()
    assert sim_pki.device_credentials("hub-pki-0001") == (cert_path, key_path)
    assert cert_path.read_bytes() == first
    (device,) = certs(cert_path)
    (ca,) = certs(sim_pki.device_ca_pem)
    assert cn(device.subject) == "hub-pki-0001"
    assert device.issuer == ca.subject
    device.verify_directly_issued_by(ca)
    eku = device.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_observer_certificate_is_issued_by_the_device_ca(sim_pki: Pki) -> None:
    (observer,) = certs(sim_pki.observer_pem)
    observer.verify_directly_issued_by(certs(sim_pki.device_ca_pem)[0])
    assert sim_pki.observer_key.stat().st_mode & 0o777 == 0o600


def test_client_id_that_cannot_name_a_file_is_refused(sim_pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"MQTT client id '\.\./x'"):
        sim_pki.device_credentials("../x")


def test_generate_pki_reuses_existing_files_and_remakes_only_the_leaf_for_a_new_endpoint(
    tmp_path: Path,
) -> None:
    pki = generate_pki(tmp_path, ENDPOINT)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert generate_pki(tmp_path, ENDPOINT) == pki
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    generate_pki(tmp_path, "other-ats.iot.eu-west-1.amazonaws.com")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["server.key", "server_chain.pem"]
    assert cn(certs(pki.server_chain_pem)[0].subject) == "other-ats.iot.eu-west-1.amazonaws.com"
    assert load_pki(tmp_path) == pki


def test_load_pki_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match=r"root\.pem is missing — run `rig sim up`"):
        load_pki(tmp_path)
