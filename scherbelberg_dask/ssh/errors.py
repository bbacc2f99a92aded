"""Exceptions of the SSH layer.

Every exception derives from :class:`SSHError`.  Messages start with ``[<target name>]``
when a target is known and never contain private key material.

Which errors are worth retrying while a server boots:
:class:`SSHConnectError` and :class:`SSHTimeoutError`.  Never retried:
:class:`HostKeyMismatchError` (someone else answers on that address, or the pinned key
is wrong) and :class:`SSHAuthError`.
"""

from __future__ import annotations

from scherbelberg_dask.errors import UserError

__all__ = [
    "HostKeyMismatchError",
    "HostKeyNotPinnedError",
    "SSHAuthError",
    "SSHCommandError",
    "SSHConnectError",
    "SSHConnectionLostError",
    "SSHError",
    "SSHFileError",
    "SSHFileNotFoundError",
    "SSHTimeoutError",
]


class SSHError(UserError):
    """Base class of all SSH layer errors.

    Attributes
    ----------
    target : str or None
        Label of the target (e.g. ``"worker000"``).
    reason : str
        The message without the ``[target]`` prefix.
    """

    def __init__(self, reason: str, *, target: str | None = None) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"[{target}] {reason}" if target else reason)

    def __str__(self) -> str:
        return f"[{self.target}] {self.reason}" if self.target else self.reason


class SSHConnectError(SSHError):
    """Connecting failed in a way that may pass: refused, reset, closed during handshake."""


class SSHTimeoutError(SSHError, TimeoutError):
    """A bounded wait expired: connecting, waiting for SSH, or a command's ``timeout``."""


class SSHAuthError(SSHError):
    """The server rejected our client key."""


class HostKeyMismatchError(SSHError):
    """The server's host key is not the pinned one.

    Attributes
    ----------
    host, port
        The address connected to.
    expected : list[str]
        SHA256 fingerprints pinned for the address (empty: nothing pinned).
    got : str or None
        SHA256 fingerprint the server presented (None if unknown).
    """

    def __init__(
        self,
        reason: str,
        *,
        target: str | None = None,
        host: str,
        port: int,
        expected: list[str],
        got: str | None,
    ) -> None:
        super().__init__(reason, target=target)
        self.host = host
        self.port = port
        self.expected = expected
        self.got = got


class HostKeyNotPinnedError(HostKeyMismatchError):
    """No host key is pinned for the address (or the known_hosts file is missing)."""


class SSHConnectionLostError(SSHError):
    """An established connection went away (server rebooted, crashed, network gone)."""


class SSHCommandError(SSHError):
    """A command run with ``check=True`` exited non-zero (or died from a signal).

    Attributes
    ----------
    command : str
    exit_status : int
        Exit code, or minus the signal number.
    stdout, stderr : str
    """

    def __init__(
        self,
        reason: str,
        *,
        target: str | None = None,
        command: str,
        exit_status: int,
        stdout: str,
        stderr: str,
    ) -> None:
        super().__init__(reason, target=target)
        self.command = command
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr


class SSHFileError(SSHError):
    """An SFTP transfer failed."""


class SSHFileNotFoundError(SSHFileError, FileNotFoundError):
    """The remote file to download does not exist."""
