"""The local state directory of one cluster: keys, certificates, known_hosts, metadata.

Layout below ``<base>/<prefix>/`` (see :class:`StateDir` for the named accessors)::

    ssh/id_ed25519        cluster SSH private key
    ssh/id_ed25519.pub    its public key line
    ssh/known_hosts       pinned host keys of the cluster's servers
    tls/ca.pem            cluster CA certificate
    tls/ca.key            cluster CA private key
    tls/client.pem        certificate of the local Dask client
    tls/client.key        its private key
    cluster.json          small non-secret metadata

``<base>`` is, in order of precedence, the constructor argument, the Dask config key
``scherbelberg.state-dir``, or ``platformdirs.user_data_dir("scherbelberg-dask")/clusters``.

Security: directories are created with mode 0700 (every missing parent too), files are
created with mode 0600 through ``os.open`` and replaced atomically (temp file + rename);
nothing is ever ``chmod``-ed after the fact.  A cluster directory (or file in it) that is
group/world accessible or owned by another user is refused with
:class:`InsecureStateError`.  All operations are small, synchronous local file
operations; call them from a thread if a slow disk matters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from scherbelberg_dask.errors import SettingsError, UserError

from ..security.known_hosts import host_keys_for, remove_host, set_host_key
from ..security.sshkeys import SSHKeyPair
from ..security.tls import CertKeyPair, ClusterCA

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = [
    "CONFIG_KEY",
    "InsecureStateError",
    "StateDir",
    "StateDirError",
    "default_base_dir",
    "list_prefixes",
]

logger = logging.getLogger(__name__)

#: Dask config key overriding the base directory (the one holding ``<prefix>/`` dirs).
CONFIG_KEY = "scherbelberg.state-dir"
_APP_NAME = "scherbelberg-dask"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_POSIX = os.name == "posix"


class StateDirError(UserError):
    """Base class of state directory errors."""


class InsecureStateError(StateDirError, PermissionError):
    """A state directory or file is accessible by others or owned by another user."""


def default_base_dir() -> Path:
    """The base directory holding one directory per cluster prefix.

    The Dask config value ``scherbelberg.state-dir`` wins when set; otherwise
    ``platformdirs.user_data_dir("scherbelberg-dask") / "clusters"``.
    """
    import dask.config

    configured = dask.config.get(CONFIG_KEY, default=None)
    if configured:
        return Path(os.fspath(configured)).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(_APP_NAME, appauthor=False)) / "clusters"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise SettingsError(
            f"invalid cluster prefix for a state directory: {prefix!r} "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit; at most 63)"
        )
    return prefix


def _euid() -> int | None:
    return os.geteuid() if _POSIX else None


def _check_private(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse ``path`` unless owned by us and not accessible by group/others."""
    uid = _euid()
    if uid is None:
        return
    if st.st_uid != uid:
        raise InsecureStateError(
            f"refusing to use {what} {path}: it is owned by uid {st.st_uid}, not by you (uid {uid})"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise InsecureStateError(
            f"refusing to use {what} {path}: mode {mode:04o} lets group/others access it "
            f"(expected {'0700' if what.endswith('directory') else '0600'}); fix it with "
            f"'chmod go-rwx {path}' if it is yours"
        )


def _check_base(base: Path) -> None:
    """The base may be shared by the user's other files, but others must not write it."""
    uid = _euid()
    if uid is None:
        return
    st = base.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"state base {base} is not a directory")
    if st.st_uid not in (uid, 0):
        raise InsecureStateError(
            f"refusing to use state base directory {base}: owned by uid {st.st_uid}"
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise InsecureStateError(
            f"refusing to use state base directory {base}: writable by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o})"
        )


def _make_dirs(path: Path) -> None:
    """Create ``path`` and every missing parent with mode 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
            logger.debug("Created directory %s", directory)


def list_prefixes(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Prefixes of the clusters that have a local state directory under ``base``.

    ``base`` defaults to :func:`default_base_dir`.  A missing base gives ``[]``.
    """
    root = Path(base) if base is not None else default_base_dir()
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if _PREFIX_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink()
    )


class StateDir:
    """Local state of one cluster.

    Parameters
    ----------
    prefix
        The cluster prefix; becomes the directory name.
    base
        Directory holding the per-cluster directories; defaults to
        :func:`default_base_dir` (tests pass a temporary directory).

    Nothing touches the disk until a method is called; writing creates the directory.
    Relative paths given to the ``read_*``/``write_*`` methods are POSIX-style and must
    stay inside the directory (the class constants below are the known ones).
    """

    SSH_KEY = "ssh/id_ed25519"
    SSH_PUBLIC_KEY = "ssh/id_ed25519.pub"
    KNOWN_HOSTS = "ssh/known_hosts"
    CA_CERT = "tls/ca.pem"
    CA_KEY = "tls/ca.key"
    CLIENT_CERT = "tls/client.pem"
    CLIENT_KEY = "tls/client.key"
    METADATA = "cluster.json"

    def __init__(self, prefix: str, *, base: str | os.PathLike[str] | None = None) -> None:
        self.prefix = _check_prefix(prefix)
        self.base = Path(base) if base is not None else default_base_dir()
        self.path = self.base / prefix

    def __repr__(self) -> str:
        return f"<StateDir {self.path}>"

    # ---------------------------------------------------------------- named paths
    @property
    def ssh_key_path(self) -> Path:
        """``ssh/id_ed25519``: the cluster's SSH private key (OpenSSH format)."""
        return self._resolve(self.SSH_KEY)

    @property
    def ssh_public_key_path(self) -> Path:
        """``ssh/id_ed25519.pub``: the cluster's SSH public key line."""
        return self._resolve(self.SSH_PUBLIC_KEY)

    @property
    def known_hosts_path(self) -> Path:
        """``ssh/known_hosts``: pinned host keys of the cluster's servers."""
        return self._resolve(self.KNOWN_HOSTS)

    @property
    def ca_cert_path(self) -> Path:
        """``tls/ca.pem``: the cluster CA certificate."""
        return self._resolve(self.CA_CERT)

    @property
    def ca_key_path(self) -> Path:
        """``tls/ca.key``: the cluster CA private key."""
        return self._resolve(self.CA_KEY)

    @property
    def client_cert_path(self) -> Path:
        """``tls/client.pem``: the local Dask client's certificate."""
        return self._resolve(self.CLIENT_CERT)

    @property
    def client_key_path(self) -> Path:
        """``tls/client.key``: the local Dask client's private key."""
        return self._resolve(self.CLIENT_KEY)

    @property
    def metadata_path(self) -> Path:
        """``cluster.json``: non-secret metadata."""
        return self._resolve(self.METADATA)

    # ---------------------------------------------------------------- directory
    def exists(self) -> bool:
        """True if the cluster's directory exists."""
        return self.path.is_dir()

    def check(self) -> None:
        """Verify the directory (if it exists) is a private directory of ours.

        Raises
        ------
        InsecureStateError
            If it or one of its subdirectories is group/world accessible, owned by another
            user, or a symlink.
        """
        if not self.path.exists() and not self.path.is_symlink():
            return
        self._check_dir(self.path)
        for sub in self.path.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                self._check_dir(sub)

    def ensure(self) -> StateDir:
        """Create the directory (mode 0700, parents too) if needed and check it.

        Returns ``self``.
        """
        if not self.path.is_dir():
            _make_dirs(self.base)
            _check_base(self.base)
            _make_dirs(self.path)
        else:
            _check_base(self.base)
        self._check_dir(self.path)
        return self

    def remove(self) -> None:
        """Delete the whole directory.  Idempotent."""
        if self.path.is_symlink():
            raise InsecureStateError(f"refusing to remove {self.path}: it is a symlink")
        if self.path.exists():
            shutil.rmtree(self.path)
            logger.debug("Removed state directory %s", self.path)

    # ---------------------------------------------------------------- files
    def has(self, relpath: str) -> bool:
        """True if the file ``relpath`` exists."""
        return self._resolve(relpath).is_file()

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        """Atomically write ``data`` to ``relpath`` (mode 0600); returns the full path."""
        path = self._resolve(relpath)
        self.ensure()
        self._ensure_parents(path)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir(path.parent)
        return path

    def write_text(self, relpath: str, text: str) -> Path:
        """Atomically write UTF-8 ``text`` to ``relpath`` (mode 0600)."""
        return self.write_bytes(relpath, text.encode("utf-8"))

    def read_bytes(self, relpath: str) -> bytes:
        """Read ``relpath``.

        Raises
        ------
        FileNotFoundError
            If it does not exist.
        InsecureStateError
            If the file or directory is accessible by others or not ours.
        """
        path = self._resolve(relpath)
        if self.path.exists():
            self._check_dir(self.path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise StateDirError(f"{path} is not a regular file")
            _check_private(path, st, "state file")
            return handle.read()

    def read_text(self, relpath: str) -> str:
        """Read ``relpath`` as UTF-8 text (see :meth:`read_bytes`)."""
        return self.read_bytes(relpath).decode("utf-8")

    def delete(self, relpath: str) -> None:
        """Delete the file ``relpath``.  Idempotent."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._resolve(relpath))

    # ---------------------------------------------------------------- typed helpers
    def save_ssh_key(self, key: SSHKeyPair) -> None:
        """Store the cluster's SSH key pair (private key and ``.pub``)."""
        self.write_text(self.SSH_KEY, key.private_openssh)
        self.write_text(self.SSH_PUBLIC_KEY, key.public_openssh + "\n")

    def load_ssh_key(self) -> SSHKeyPair:
        """Load the cluster's SSH key pair (comment taken from the ``.pub`` file)."""
        comment = ""
        if self.has(self.SSH_PUBLIC_KEY):
            parts = self.read_text(self.SSH_PUBLIC_KEY).strip().split(None, 2)
            comment = parts[2] if len(parts) == 3 else ""
        return SSHKeyPair.from_private_openssh(self.read_text(self.SSH_KEY), comment)

    def save_ca(self, ca: ClusterCA) -> None:
        """Store the cluster CA (certificate and private key)."""
        self.write_bytes(self.CA_KEY, ca.key_pem)
        self.write_bytes(self.CA_CERT, ca.cert_pem)

    def load_ca(self) -> ClusterCA:
        """Load the cluster CA."""
        return ClusterCA.from_pem(self.read_bytes(self.CA_CERT), self.read_bytes(self.CA_KEY))

    def save_client_cert(self, pair: CertKeyPair) -> None:
        """Store the local Dask client's certificate and key."""
        self.write_bytes(self.CLIENT_KEY, pair.key_pem)
        self.write_bytes(self.CLIENT_CERT, pair.cert_pem)

    def load_client_cert(self) -> CertKeyPair:
        """Load the local Dask client's certificate and key."""
        return CertKeyPair(self.read_bytes(self.CLIENT_CERT), self.read_bytes(self.CLIENT_KEY))

    def dask_security(self) -> Security:
        """``distributed.Security`` for the local client from the stored TLS files."""
        from ..security.tls import dask_security

        for rel in (self.CA_CERT, self.CLIENT_CERT, self.CLIENT_KEY):
            self.read_bytes(rel)  # existence and permission check
        return dask_security(self.ca_cert_path, self.client_cert_path, self.client_key_path)

    def read_metadata(self) -> dict[str, Any]:
        """Read ``cluster.json`` (raises ``FileNotFoundError`` if absent)."""
        data = json.loads(self.read_text(self.METADATA))
        if not isinstance(data, dict):
            raise StateDirError(f"{self.metadata_path} does not hold a JSON object")
        return data

    def write_metadata(self, data: Mapping[str, Any]) -> None:
        """Write ``cluster.json`` (JSON object; must not contain secrets)."""
        self.write_text(self.METADATA, json.dumps(dict(data), indent=2, sort_keys=True) + "\n")

    def _known_hosts_text(self) -> str:
        return self.read_text(self.KNOWN_HOSTS) if self.has(self.KNOWN_HOSTS) else ""

    def set_known_host(self, host: str | Sequence[str], port: int, public_key: str) -> None:
        """Pin ``public_key`` as the only host key of ``host`` (one or several) on ``port``."""
        self.write_text(
            self.KNOWN_HOSTS, set_host_key(self._known_hosts_text(), host, port, public_key)
        )

    def remove_known_host(self, host: str | Sequence[str], port: int) -> None:
        """Forget the pinned host key(s) of ``host`` on ``port``.  Idempotent."""
        if self.has(self.KNOWN_HOSTS):
            self.write_text(self.KNOWN_HOSTS, remove_host(self._known_hosts_text(), host, port))

    def known_host_keys(self, host: str, port: int) -> list[str]:
        """Public keys (``"type base64"``) pinned for ``host`` on ``port``."""
        return host_keys_for(self._known_hosts_text(), host, port)

    # ---------------------------------------------------------------- internals
    def _resolve(self, relpath: str) -> Path:
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
            raise SettingsError(f"state file path must be relative and stay inside: {relpath!r}")
        return self.path.joinpath(*rel.parts)

    def _check_dir(self, path: Path) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise InsecureStateError(f"refusing to use state directory {path}: it is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise StateDirError(f"{path} is not a directory")
        _check_private(path, st, "state directory")

    def _ensure_parents(self, path: Path) -> None:
        parent = path.parent
        if parent != self.path:
            _make_dirs(parent)
            current = parent
            while current != self.path:
                self._check_dir(current)
                current = current.parent

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        if not _POSIX:
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
