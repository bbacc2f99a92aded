"""Key material of a cluster: TLS CA and certificates, SSH key pairs, known_hosts lines."""

from .known_hosts import host_keys_for, remove_host, set_host_key
from .sshkeys import (
    SSHKeyPair,
    fingerprint_md5,
    fingerprint_sha256,
    known_hosts_line,
    parse_public_key,
)
from .tls import CertKeyPair, ClusterCA, dask_security

__all__ = [
    "CertKeyPair",
    "ClusterCA",
    "SSHKeyPair",
    "dask_security",
    "fingerprint_md5",
    "fingerprint_sha256",
    "host_keys_for",
    "known_hosts_line",
    "parse_public_key",
    "remove_host",
    "set_host_key",
]
