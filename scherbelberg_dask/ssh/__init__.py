"""SSH to cluster servers with pinned host keys (asyncssh, plus OpenSSH command lines)."""

from .client import (
    Forward,
    RunResult,
    SSHConnection,
    SSHTarget,
    connect,
    wait_for_ssh,
)
from .errors import (
    HostKeyMismatchError,
    HostKeyNotPinnedError,
    SSHAuthError,
    SSHCommandError,
    SSHConnectError,
    SSHConnectionLostError,
    SSHError,
    SSHFileError,
    SSHFileNotFoundError,
    SSHTimeoutError,
)
from .openssh import openssh_args, openssh_options, scp_args, scp_remote

__all__ = [
    "Forward",
    "HostKeyMismatchError",
    "HostKeyNotPinnedError",
    "RunResult",
    "SSHAuthError",
    "SSHCommandError",
    "SSHConnectError",
    "SSHConnection",
    "SSHConnectionLostError",
    "SSHError",
    "SSHFileError",
    "SSHFileNotFoundError",
    "SSHTarget",
    "SSHTimeoutError",
    "connect",
    "openssh_args",
    "openssh_options",
    "scp_args",
    "scp_remote",
    "wait_for_ssh",
]
