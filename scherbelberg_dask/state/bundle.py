"""Access bundles: a cluster's keys for another machine, encrypted with a passphrase.

A bundle is one file that ``share`` writes on the machine holding a cluster's keys and
``attach`` installs into another machine's state directory.  Two kinds:

``dask``
    The CA certificate and a *new* client certificate with its key, signed by the
    cluster's CA for this bundle: enough for ``Client(HetznerCluster.from_existing(X))``
    and ``ls``.  No SSH key, no CA key: no ``ssh``, ``logs``, ``dashboard``, ``scale``
    or ``destroy``.
``operator``
    Adds the cluster's SSH key, its pinned host keys (known_hosts) and a node
    certificate (signed by the CA, for the workers that machine starts): ``ssh``,
    ``logs``, ``dashboard``, ``scale`` and ``destroy`` work.  The CA's private key only
    if asked for explicitly (``include_ca_key``), which lets that machine share in turn.

No bundle ever holds the API token: the other machine uses its own ``HCLOUD_TOKEN``.

File format (UTF-8 JSON)::

    {"format": "scherbelberg-dask-access-bundle", "version": 1,
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64>"},
     "cipher": "AES-256-GCM", "nonce": "<base64>", "ciphertext": "<base64>"}

The ciphertext is the JSON payload (prefix, kind, metadata, files), encrypted with
AES-256-GCM under a key derived from the passphrase by scrypt; the header (everything but
the ciphertext) is the associated data, so its parameters cannot be changed unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..cloud.labels import validate_prefix
from ..errors import UserError
from ..security.tls import CertKeyPair
from .statedir import StateDir, _make_dirs

__all__ = [
    "BUNDLE_KINDS",
    "NODE_CERT",
    "NODE_KEY",
    "AccessBundle",
    "BundleError",
    "decrypt_bundle",
    "encrypt_bundle",
    "install_bundle",
    "load_node_cert",
    "make_bundle",
    "write_private_file",
]

FORMAT = "scherbelberg-dask-access-bundle"
VERSION = 1
#: The kinds of bundle: Dask-only, or operator (SSH and scaling too).
BUNDLE_KINDS = ("dask", "operator")
#: A CA-signed certificate an operator machine gives the nodes it starts (it holds no CA
#: key to issue one per node).
NODE_CERT = "tls/node.pem"
NODE_KEY = "tls/node.key"

# Why scrypt + AES-GCM (both from `cryptography`): scrypt is memory-hard, so guessing a
# passphrase offline costs 128 MiB and a noticeable fraction of a second per guess
# (n=2**17, r=8, p=1: OWASP's recommendation); AES-GCM is authenticated, so a wrong
# passphrase and any change to the file (ciphertext or, as associated data, header) fail
# the same single check before anything is used.  Fernet would do as well but cannot
# authenticate the header that carries the KDF parameters.
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
#: Bounds on the parameters a file may ask for (a crafted file must not exhaust memory).
_SCRYPT_MAX = {"n": 2**20, "r": 16, "p": 4}
_KEY_BYTES = 32
_NONCE_BYTES = 12
_SALT_BYTES = 16

#: The state files a bundle of each kind carries (nothing else is ever installed).
_FILES = {
    "dask": (StateDir.CA_CERT, StateDir.CLIENT_CERT, StateDir.CLIENT_KEY),
    "operator": (
        StateDir.CA_CERT,
        StateDir.CLIENT_CERT,
        StateDir.CLIENT_KEY,
        StateDir.SSH_KEY,
        StateDir.SSH_PUBLIC_KEY,
        StateDir.KNOWN_HOSTS,
        NODE_CERT,
        NODE_KEY,
    ),
}
_OPTIONAL = (StateDir.KNOWN_HOSTS, StateDir.CA_KEY)


class BundleError(UserError, ValueError):
    """An access bundle cannot be made, read or installed (one line, no secrets)."""


@dataclasses.dataclass(frozen=True, repr=False)
class AccessBundle:
    """The decrypted content of an access bundle.  ``files`` are secret."""

    prefix: str
    kind: str
    #: ``tls://IP:PORT`` of the scheduler when the bundle was made.
    scheduler_address: str | None
    #: The cluster's non-secret ``cluster.json`` (its settings, for ``from_existing``).
    metadata: dict[str, Any]
    #: State file path → content.
    files: dict[str, bytes]
    created: str

    @property
    def has_ca_key(self) -> bool:
        """True if the bundle carries the CA's private key."""
        return StateDir.CA_KEY in self.files

    def __repr__(self) -> str:
        return f"<AccessBundle {self.kind} access to cluster {self.prefix}>"


def make_bundle(
    state: StateDir,
    kind: str,
    *,
    scheduler_address: str | None,
    include_ca_key: bool = False,
) -> AccessBundle:
    """A bundle of ``kind`` from a cluster's local state (blocking: key generation).

    A new client certificate (and, for ``operator``, a new node certificate) is issued
    by the cluster's CA for this bundle.

    Raises
    ------
    BundleError
        Unknown kind; the CA key asked for a Dask-only bundle; or this machine lacks
        what the bundle needs (the CA key, and for ``operator`` the SSH key).
    """
    if kind not in BUNDLE_KINDS:
        raise BundleError(f"unknown bundle kind {kind!r}; choose {' or '.join(BUNDLE_KINDS)}")
    if include_ca_key and kind != "operator":
        raise BundleError("the CA's private key can only go into an operator bundle")
    if not state.has(StateDir.CA_KEY):
        raise BundleError(
            f"cannot share cluster {state.prefix!r} from this machine: issuing a certificate "
            "for the other machine needs the cluster's CA key, which only the machine that "
            "created it holds (or one given an operator bundle with the CA key)"
        )
    if kind == "operator" and not state.has(StateDir.SSH_KEY):
        raise BundleError(
            f"cannot share operator access to cluster {state.prefix!r}: this machine has "
            "no SSH key of it"
        )
    ca = state.load_ca()
    tag = secrets.token_hex(4)
    files: dict[str, bytes] = {StateDir.CA_CERT: ca.cert_pem}
    client = ca.issue(f"client-shared-{tag}", server=False)
    files[StateDir.CLIENT_CERT], files[StateDir.CLIENT_KEY] = client.cert_pem, client.key_pem
    if kind == "operator":
        for rel in (StateDir.SSH_KEY, StateDir.SSH_PUBLIC_KEY, StateDir.KNOWN_HOSTS):
            if state.has(rel):
                files[rel] = state.read_bytes(rel)
        node = ca.issue(f"{state.prefix}-shared-{tag}")
        files[NODE_CERT], files[NODE_KEY] = node.cert_pem, node.key_pem
        if include_ca_key:
            files[StateDir.CA_KEY] = ca.key_pem
    metadata = state.read_metadata() if state.has(StateDir.METADATA) else {}
    return AccessBundle(
        prefix=state.prefix,
        kind=kind,
        scheduler_address=scheduler_address,
        metadata=metadata,
        files=files,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BundleError("the access bundle is damaged (a field is not base64 text)")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BundleError("the access bundle is damaged (a field is not base64)") from None


def _associated(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode())


def encrypt_bundle(bundle: AccessBundle, passphrase: str) -> bytes:
    """The bundle as an encrypted file's content (blocking: scrypt)."""
    if not passphrase:
        raise BundleError("the passphrase must not be empty")
    payload = {
        "prefix": bundle.prefix,
        "kind": bundle.kind,
        "created": bundle.created,
        "scheduler_address": bundle.scheduler_address,
        "metadata": bundle.metadata,
        "files": {rel: _b64(data) for rel, data in sorted(bundle.files.items())},
    }
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {"name": "scrypt", **_SCRYPT, "salt": _b64(salt)},
        "cipher": "AES-256-GCM",
        "nonce": _b64(nonce),
    }
    key = _key(passphrase, salt, **_SCRYPT)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(payload).encode(), _associated(header))
    return (json.dumps({**header, "ciphertext": _b64(ciphertext)}, indent=1) + "\n").encode()


_NOT_A_BUNDLE = "this is not a scherbelberg-dask access bundle (or it is damaged)"


def decrypt_bundle(data: bytes, passphrase: str) -> AccessBundle:
    """The bundle in ``data`` (blocking: scrypt).

    Raises
    ------
    BundleError
        Wrong passphrase, a damaged or foreign file, or content that is not a valid
        bundle.  One line; never any of the bundle's content.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError(_NOT_A_BUNDLE) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(_NOT_A_BUNDLE)
    if document.get("version") != VERSION:
        raise BundleError(
            f"access bundle version {document.get('version')!r} is not supported by this "
            f"scherbelberg-dask (it reads version {VERSION}); update it on this machine"
        )
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    kdf = header.get("kdf")
    if (
        not isinstance(kdf, dict)
        or kdf.get("name") != "scrypt"
        or header.get("cipher") != "AES-256-GCM"
        or not all(
            isinstance(kdf.get(k), int) and 1 <= kdf[k] <= bound for k, bound in _SCRYPT_MAX.items()
        )
    ):
        raise BundleError(_NOT_A_BUNDLE)
    salt, nonce = _unb64(kdf.get("salt")), _unb64(header.get("nonce"))
    ciphertext = _unb64(document.get("ciphertext"))
    if len(nonce) != _NONCE_BYTES or not salt:
        raise BundleError(_NOT_A_BUNDLE)
    try:
        key = _key(passphrase, salt, kdf["n"], kdf["r"], kdf["p"])
        plain = AESGCM(key).decrypt(nonce, ciphertext, _associated(header))
    except InvalidTag:
        raise BundleError(
            "cannot open the access bundle: wrong passphrase, or the file was changed or damaged"
        ) from None
    except ValueError:  # scrypt parameters it refuses (n not a power of 2, ...)
        raise BundleError(_NOT_A_BUNDLE) from None
    return _parse(plain)


def _parse(plain: bytes) -> AccessBundle:
    """Check the decrypted payload: a known kind, only known files, certificates of its CA."""
    try:
        payload = json.loads(plain)
        prefix = validate_prefix(payload["prefix"])
        kind = payload["kind"]
        files = {rel: _unb64(text) for rel, text in payload["files"].items()}
        metadata = payload.get("metadata") or {}
        address = payload.get("scheduler_address")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError("the access bundle's content is not valid") from None
    if kind not in BUNDLE_KINDS or not isinstance(metadata, dict):
        raise BundleError("the access bundle's content is not valid")
    allowed = set(_FILES[kind]) | ({StateDir.CA_KEY} if kind == "operator" else set())
    required = set(_FILES[kind]) - set(_OPTIONAL)
    if not set(files) <= allowed or not required <= set(files):
        raise BundleError(f"the access bundle's files do not make {kind} access")
    ca = _certificate(files[StateDir.CA_CERT])
    for rel in (StateDir.CLIENT_CERT, NODE_CERT):
        if rel in files and not _issued_by(_certificate(files[rel]), ca):
            raise BundleError("the access bundle's certificates are not of its cluster's CA")
    return AccessBundle(
        prefix=prefix,
        kind=kind,
        scheduler_address=address if isinstance(address, str) else None,
        metadata=metadata,
        files=files,
        created=str(payload.get("created", "")),
    )


def _certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise BundleError("the access bundle holds a damaged certificate") from None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def install_bundle(
    bundle: AccessBundle, base: str | os.PathLike[str] | None = None, *, replace: bool = False
) -> StateDir:
    """Install ``bundle`` as the local state of its cluster under ``base`` (blocking).

    All files are written to a private staging directory first and moved into place in
    one rename, so a failure leaves the state directory as it was.

    Raises
    ------
    BundleError
        This machine already has local state for the cluster and ``replace`` is false.
    """
    target = StateDir(bundle.prefix, base=base)
    if target.exists() and not replace:
        raise BundleError(
            f"this machine already has local state for cluster {bundle.prefix!r} in "
            f"{target.path}; attach with --replace to replace it by the bundle's access"
        )
    _make_dirs(target.base)
    staging = target.base / f".attach-{secrets.token_hex(6)}"
    os.mkdir(staging, 0o700)
    try:
        staged = StateDir(bundle.prefix, base=staging)
        for rel, data in sorted(bundle.files.items()):
            staged.write_bytes(rel, data)
        staged.write_metadata(
            {
                **bundle.metadata,
                "prefix": bundle.prefix,
                "shared": {
                    "kind": bundle.kind,
                    "created": bundle.created,
                    "scheduler_address": bundle.scheduler_address,
                },
            }
        )
        if target.exists():
            os.rename(target.path, staging / "replaced")
        os.rename(staged.path, target.path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return target


def load_node_cert(state: StateDir) -> CertKeyPair:
    """The node certificate of an operator bundle (for nodes this machine starts)."""
    return CertKeyPair(state.read_bytes(NODE_CERT), state.read_bytes(NODE_KEY))


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never overwriting an existing file) and write it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        raise BundleError(f"{path} exists already; choose another file name") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
