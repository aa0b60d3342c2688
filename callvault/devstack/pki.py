"""A private certificate authority for the local stack, so Kafka traffic is TLS even on a laptop.

"Always encrypted between internal services" is a promise about the production topology, but
a TLS path exercised only in production is a TLS path that breaks in production: the dev and test
stacks therefore run the broker with TLS only, and every client verifies the broker against this
CA (hostname included). Created once per home: ``<home>/tls/ca.pem`` (public), ``ca-key.pem``,
``kafka.pem`` (the broker's PKCS#8 key followed by its certificate chain, the single-file PEM
keystore Kafka reads) — private keys 0600 in a 0700 directory.

``callvault tls init`` uses the same functions for a compose deployment (host names given).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callvault.errors import DevStackError
from callvault.files import replace_private

CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca-key.pem"

    def keystore(self, name: str) -> Path:
        """Private key + certificate chain of ``name`` in one PEM file (Kafka's PEM keystore)."""
        return self.directory / f"{name}.pem"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Callvault local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # Kafka's PEM keystore reads PKCS#8 only
        serialization.NoEncryption(),
    )


def ensure_ca(directory: Path, *, dir_mode: int = 0o700) -> Pki:
    """Create the CA once; later calls reuse it (certificates stay valid across restarts).

    The private keys are 0600 whatever ``dir_mode`` is; a deployment whose clients run as other
    users than the broker opens the directory (0755) so they can read ``ca.pem``.
    """
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, dir_mode)
    if pki.ca_file.is_file() and pki.ca_key_file.is_file():
        return pki
    if pki.ca_file.exists():
        raise DevStackError(
            f"{pki.ca_file} exists without {pki.ca_key_file.name}: the local stack issues broker "
            "certificates only from its own CA; point kafka.ca_file elsewhere or remove it"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Callvault local CA"))
        .issuer_name(_name("Callvault local CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    replace_private(pki.ca_key_file, _key_pem(key))
    pki.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki


def ensure_leaf(pki: Pki, name: str, hosts: list[str], *, client: bool = False) -> Path:
    """A keystore for ``name`` valid for ``hosts`` (DNS names or IPs); reissued when the host
    list changed or the certificate is within 30 days of expiry."""
    path = pki.keystore(name)
    if path.is_file() and _still_good(path, hosts):
        return path
    ca_key = serialization.load_pem_private_key(pki.ca_key_file.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + pki.ca_file.read_bytes()
    replace_private(path, _key_pem(key) + chain)
    return path


def _still_good(path: Path, hosts: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    have |= set(sans.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)
    return fresh and have == set(hosts)
