"""Per-cluster certificate authority and certificates for Dask's mutual TLS.

Every cluster gets its own CA (EC P-256, ECDSA-SHA256).  The CA issues one certificate per
node and one for the local client; each certificate is valid for both TLS client and
server use, so a single pair serves a Dask process in every role.  Dask's ``Security``
verifies the peer against the cluster CA in both directions and does not check host names
(:func:`dask_security`), so a certificate from another cluster's CA is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = ["CertKeyPair", "ClusterCA", "dask_security"]

logger = logging.getLogger(__name__)

_ORGANIZATION = "scherbelberg-dask"
#: Certificates start to be valid this much before "now", to tolerate clock skew.
_BACKDATE = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True, repr=False)
class CertKeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key.

    ``key_pem`` is secret; ``repr`` shows only the certificate subject.
    """

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def __repr__(self) -> str:
        return f"<CertKeyPair {self.certificate.subject.rfc4514_string()}>"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, cluster_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, cluster_name),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class ClusterCA:
    """The certificate authority of one cluster.

    Parameters
    ----------
    certificate
        The CA certificate.
    key
        The CA's EC private key (must match ``certificate``).

    Use :meth:`create` for a new CA and :meth:`from_pem` to load a stored one.
    """

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if certificate.public_key() != key.public_key():
            raise ValueError("CA private key does not match the CA certificate")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            raise ValueError("certificate is not a CA (no basicConstraints)") from None
        if not constraints.value.ca:
            raise ValueError("certificate is not a CA (basicConstraints CA=False)")
        self.certificate = certificate
        self._key = key

    @classmethod
    def create(cls, cluster_name: str, *, days: int = 3650) -> ClusterCA:
        """Create a new self-signed CA for ``cluster_name``.

        The CA is valid for ``days`` (10 years by default), may sign only end-entity
        certificates (``pathlen=0``) and has key usage ``keyCertSign`` and ``cRLSign``.
        """
        if not cluster_name:
            raise ValueError("cluster_name must not be empty")
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"scherbelberg-dask CA {cluster_name}", cluster_name)
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
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
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        logger.debug("Created cluster CA for %s", cluster_name)
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> ClusterCA:
        """Load a CA from its PEM certificate and PEM private key.

        Raises
        ------
        ValueError
            If either cannot be parsed, the key is not an EC key, the two do not match, or
            the certificate is not a CA.  Messages never contain key material.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise ValueError(f"cannot parse CA certificate: {exc}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("cannot parse CA private key (expected unencrypted PEM)") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"CA key must be an EC key, got {type(key).__name__}")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM (what every node and the client trust)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key in PEM (PKCS#8, unencrypted).  Secret."""
        return _key_pem(self._key)

    @property
    def cluster_name(self) -> str:
        """The cluster name recorded in the CA's subject (``OU``)."""
        attrs = self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        value = attrs[0].value if attrs else ""
        return value if isinstance(value, str) else value.decode()

    def issue(
        self,
        common_name: str,
        *,
        ip_addresses: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        client: bool = True,
        server: bool = True,
        days: int = 3650,
    ) -> CertKeyPair:
        """Issue a certificate with a fresh EC P-256 key.

        Parameters
        ----------
        common_name
            Subject common name, e.g. ``"cluster-node-scheduler"`` or ``"client"``.
        ip_addresses, dns_names
            Subject alternative names.  ``common_name`` is always added as a DNS name
            when it is a valid one.
        client, server
            Extended key usages ``clientAuth`` / ``serverAuth``; at least one is required.
        days
            Validity in days (capped at the CA's own expiry).
        """
        if not (client or server):
            raise ValueError("a certificate needs client or server usage (or both)")
        if not common_name:
            raise ValueError("common_name must not be empty")
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for ip in ip_addresses:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        names = list(dns_names)
        if _is_dns_name(common_name) and common_name not in names:
            names.insert(0, common_name)
        for dns in names:
            sans.append(x509.DNSName(dns))
        usages = [
            oid
            for wanted, oid in (
                (server, ExtendedKeyUsageOID.SERVER_AUTH),
                (client, ExtendedKeyUsageOID.CLIENT_AUTH),
            )
            if wanted
        ]
        now = _now()
        not_after = min(now + datetime.timedelta(days=days), _not_valid_after(self.certificate))
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, self.cluster_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        logger.debug("Issued certificate for %s", common_name)
        return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issued(self, cert_pem: bytes) -> bool:
        """True if ``cert_pem`` was signed by this CA."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.issuer != self.certificate.subject:
            return False
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def __repr__(self) -> str:
        return f"<ClusterCA {self.certificate.subject.rfc4514_string()}>"


def _not_valid_after(cert: x509.Certificate) -> datetime.datetime:
    utc = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if isinstance(utc, datetime.datetime):
        return utc
    return cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _is_dns_name(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(
        0 < len(label) <= 63
        and label.replace("-", "").isalnum()
        and label.isascii()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


def dask_security(
    ca_file: str | os.PathLike[str],
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
) -> Security:
    """A ``distributed.Security`` requiring mutual TLS with the given files.

    The same certificate and key are used for all three Dask roles (client, scheduler,
    worker), so the object works for a ``Client`` as well as for a ``Scheduler`` or
    ``Worker``.  ``require_encryption=True``: plain ``tcp://`` is refused.

    Parameters
    ----------
    ca_file
        PEM file with the cluster CA certificate.
    cert_file, key_file
        PEM certificate and key issued by that CA.
    """
    from distributed.security import Security  # heavy import, only needed here

    ca, cert, key = os.fspath(ca_file), os.fspath(cert_file), os.fspath(key_file)
    return Security(
        require_encryption=True,
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )
