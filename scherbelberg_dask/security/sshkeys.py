"""Ed25519 SSH key pairs: the cluster's client key and the servers' host keys.

One class, :class:`SSHKeyPair`, serves both purposes.  Keys are produced with
``cryptography`` and serialised in OpenSSH formats, so that asyncssh, the OpenSSH client
and cloud-init all read them.

The private half never appears in ``repr``, logs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = [
    "SSHKeyPair",
    "fingerprint_md5",
    "fingerprint_sha256",
    "known_hosts_line",
    "parse_public_key",
]

logger = logging.getLogger(__name__)

_KEY_TYPE = "ssh-ed25519"


def parse_public_key(public_openssh: str) -> tuple[str, bytes, str]:
    """Split an OpenSSH public key line into its parts.

    Parameters
    ----------
    public_openssh
        A line like ``"ssh-ed25519 AAAA... comment"`` (comment optional).

    Returns
    -------
    tuple
        ``(key_type, blob, comment)`` where ``blob`` is the decoded key blob.

    Raises
    ------
    ValueError
        If the line is not a well-formed OpenSSH public key.
    """
    parts = public_openssh.strip().split(None, 2)
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line (expected '<type> <base64> [comment]')")
    key_type, b64 = parts[0], parts[1]
    comment = parts[2] if len(parts) == 3 else ""
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"public key of type {key_type!r} has invalid base64 data") from exc
    try:
        serialization.load_ssh_public_key(f"{key_type} {b64}".encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"public key of type {key_type!r} cannot be parsed: {exc}") from exc
    return key_type, blob, comment


def fingerprint_md5(public_openssh: str) -> str:
    """MD5 fingerprint of a public key as colon-separated hex, the way Hetzner shows it.

    Example: ``"b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f"``.
    """
    _, blob, _ = parse_public_key(public_openssh)
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_sha256(public_openssh: str) -> str:
    """SHA256 fingerprint of a public key as OpenSSH prints it: ``"SHA256:<base64>"``."""
    _, blob, _ = parse_public_key(public_openssh)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def _check_host(host: str) -> None:
    if not host or host.startswith("|") or any(c.isspace() or c in ",#[]*?!" for c in host):
        raise ValueError(f"invalid host for known_hosts: {host!r}")


def _known_hosts_pattern(host: str, port: int) -> str:
    _check_host(host)
    if not 0 < port < 65536:
        raise ValueError(f"invalid SSH port: {port!r}")
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(host: str | Sequence[str], port: int, public_key: str) -> str:
    """One OpenSSH ``known_hosts`` line pinning ``public_key`` for ``host`` on ``port``.

    Parameters
    ----------
    host
        Host name or IP address, or several (e.g. public and private IP) for one line.
    port
        SSH port.  Hosts are written as ``[host]:port`` unless ``port == 22``.
    public_key
        OpenSSH public key line; its comment is dropped.

    Returns
    -------
    str
        The line without trailing newline, e.g. ``"[10.0.0.2]:2222 ssh-ed25519 AAAA..."``.
    """
    hosts = [host] if isinstance(host, str) else list(host)
    if not hosts:
        raise ValueError("known_hosts_line needs at least one host")
    key_type, blob, _ = parse_public_key(public_key)
    patterns = ",".join(_known_hosts_pattern(h, port) for h in hosts)
    return f"{patterns} {key_type} {base64.b64encode(blob).decode('ascii')}"


class SSHKeyPair:
    """An Ed25519 SSH key pair in OpenSSH formats.

    Create one with :meth:`generate` or load one with :meth:`from_private_openssh`.

    Attributes
    ----------
    private_openssh : str
        The private key in OpenSSH format (``-----BEGIN OPENSSH PRIVATE KEY-----``),
        unencrypted.  Treat as secret.
    public_openssh : str
        ``"ssh-ed25519 AAAA... comment"`` (no comment part if the comment is empty).
    comment : str
        Comment of the public key line.
    """

    __slots__ = ("_private", "comment", "private_openssh", "public_openssh")

    def __init__(self, private_key: ed25519.Ed25519PrivateKey, comment: str = "") -> None:
        if "\n" in comment or "\r" in comment:
            raise ValueError("SSH key comment must be a single line")
        self._private = private_key
        self.comment = comment
        self.private_openssh: str = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode("ascii")
        public = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode("ascii")
        )
        self.public_openssh: str = f"{public} {comment}" if comment else public

    @classmethod
    def generate(cls, comment: str = "") -> SSHKeyPair:
        """Generate a new Ed25519 key pair with the given public key comment."""
        return cls(ed25519.Ed25519PrivateKey.generate(), comment)

    @classmethod
    def from_private_openssh(cls, text: str | bytes, comment: str = "") -> SSHKeyPair:
        """Load an unencrypted Ed25519 private key in OpenSSH format.

        Raises
        ------
        ValueError
            If the text is not an unencrypted OpenSSH Ed25519 private key.  The message
            never contains the key text.
        """
        data = text.encode("ascii") if isinstance(text, str) else text
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise ValueError(
                "cannot load SSH private key (expected an unencrypted OpenSSH key): "
                f"{type(exc).__name__}"
            ) from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"expected an Ed25519 SSH key, got {type(key).__name__}")
        return cls(key, comment)

    @property
    def key_type(self) -> str:
        """Always ``"ssh-ed25519"``."""
        return _KEY_TYPE

    @property
    def fingerprint_md5(self) -> str:
        """Colon-separated MD5 hex of the public key, as the Hetzner API reports it."""
        return fingerprint_md5(self.public_openssh)

    @property
    def fingerprint_sha256(self) -> str:
        """``"SHA256:..."`` fingerprint, as OpenSSH prints it."""
        return fingerprint_sha256(self.public_openssh)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSHKeyPair):
            return NotImplemented
        return self._raw_private() == other._raw_private()

    def _raw_private(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __hash__(self) -> int:
        return hash(self._raw_private())

    def __repr__(self) -> str:
        return f"<SSHKeyPair {self.key_type} {self.fingerprint_sha256} comment={self.comment!r}>"
