"""asyncssh client with pinned host keys: connect, run, upload, download, forward.

The host key of every server is generated locally and pinned in a known_hosts file
before the server exists, so the first connection is already verified.  There is no
trust-on-first-use and no way to switch verification off.  The user's own SSH
configuration, agent and keys are never consulted: only ``target.client_key_path``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import os
import posixpath
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import asyncssh

from ..security.known_hosts import host_keys_for
from ..security.sshkeys import fingerprint_sha256
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

__all__ = [
    "Forward",
    "RunResult",
    "SSHConnection",
    "SSHTarget",
    "connect",
    "wait_for_ssh",
]

logger = logging.getLogger(__name__)

#: Seconds between "Continuing to wait for SSH ..." messages.
PROGRESS_INTERVAL = 5.0
#: First and maximal pause between connection attempts in :func:`wait_for_ssh`.  A refused
#: attempt costs one round trip, so the cap is short: sshd is found at most half a
#: second after it starts listening.
_FIRST_DELAY = 0.1
_MAX_DELAY = 0.5
#: Upper bound of one connection attempt inside :func:`wait_for_ssh`.
_ATTEMPT_TIMEOUT = 15.0
#: Keepalive: a silently dead server is noticed after about interval * count seconds.
_KEEPALIVE_INTERVAL = 15.0
_KEEPALIVE_COUNT_MAX = 4
#: How much of a failed command's output goes into the exception message.
_OUTPUT_TAIL = 2000
_COMMAND_HEAD = 200

_C = TypeVar("_C", bound="_Closeable")


@dataclasses.dataclass(frozen=True)
class SSHTarget:
    """Where and as whom to connect.

    Attributes
    ----------
    host
        IP address or host name.
    port
        SSH port.
    username
        Remote user.
    client_key_path
        Private key file used for authentication (the only key offered).
    known_hosts_path
        known_hosts file that must pin the server's host key.
    name
        Label for progress messages and errors, e.g. ``"worker000"``; defaults to
        ``user@host:port``.
    """

    host: str
    port: int
    username: str
    client_key_path: Path
    known_hosts_path: Path
    name: str = ""

    @property
    def address(self) -> str:
        """``user@host:port``."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def label(self) -> str:
        """``name`` or, if empty, :attr:`address`."""
        return self.name or self.address


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`SSHConnection.run`.

    ``exit_status`` is the exit code, or minus the signal number if the command was
    killed by a signal (like :mod:`subprocess`).  Output is decoded as UTF-8 with
    replacement characters for invalid bytes.
    """

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True if ``exit_status == 0``."""
        return self.exit_status == 0


class _Closeable(abc.ABC):
    """Something with an idempotent :meth:`close`, closed when its ``async with`` ends."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the resource (idempotent)."""

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Forward(_Closeable):
    """A local TCP port forwarded through an SSH connection.

    Attributes
    ----------
    local_host, local_port
        Where the local listener accepts connections.
    remote_host, remote_port
        Destination as seen from the server.
    """

    def __init__(
        self, listener: asyncssh.SSHListener, local_host: str, remote_host: str, remote_port: int
    ) -> None:
        self._listener = listener
        self.local_host = local_host
        self.local_port: int = listener.get_port()
        self.remote_host = remote_host
        self.remote_port = remote_port
        self._closed = False

    async def close(self) -> None:
        """Stop listening (idempotent).  Connections already forwarded keep running."""
        if self._closed:
            return
        self._closed = True
        self._listener.close()
        await self._listener.wait_closed()

    def __repr__(self) -> str:
        return (
            f"<Forward {self.local_host}:{self.local_port} -> "
            f"{self.remote_host}:{self.remote_port}>"
        )


class _PinnedClient(asyncssh.SSHClient):
    """Records the host key a server offered when it did not match the pinned ones."""

    def __init__(self) -> None:
        self.offered_key: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # Only called when the key is not among the pinned ones: reject, but remember it
        # so the error can name its fingerprint.
        self.offered_key = key.export_public_key("openssh").decode("ascii").strip()
        return False


def _short(command: str) -> str:
    first = command.strip().splitlines()[0] if command.strip() else ""
    if len(first) > _COMMAND_HEAD or "\n" in command.strip():
        return first[:_COMMAND_HEAD] + " ..."
    return first


def _tail(text: str) -> str:
    return text if len(text) <= _OUTPUT_TAIL else "..." + text[-_OUTPUT_TAIL:]


def _pinned_fingerprints(target: SSHTarget) -> list[str]:
    try:
        text = target.known_hosts_path.read_text(encoding="utf-8")
    except OSError:
        return []
    out: list[str] = []
    for key in host_keys_for(text, target.host, target.port):
        try:
            out.append(fingerprint_sha256(key))
        except ValueError:
            continue
    return out


def _host_key_error(target: SSHTarget, offered: str | None) -> HostKeyMismatchError:
    expected = _pinned_fingerprints(target)
    got = None
    if offered is not None:
        try:
            got = fingerprint_sha256(offered)
        except ValueError:
            got = None
    where = f"{target.host}:{target.port}"
    got_text = got or "an unknown key"
    if expected:
        kind: type[HostKeyMismatchError] = HostKeyMismatchError
        message = (
            f"HOST KEY MISMATCH for {where}: expected {' or '.join(expected)}, got {got_text}. "
            "Another machine may answer on this address, or the server was rebuilt; "
            f"refusing to connect (pinned keys: {target.known_hosts_path})."
        )
    else:
        kind = HostKeyNotPinnedError
        message = (
            f"no host key is pinned for {where} in {target.known_hosts_path}; the server "
            f"presented {got_text}. Refusing to connect (no trust on first use)."
        )
    return kind(
        message,
        target=target.label,
        host=target.host,
        port=target.port,
        expected=expected,
        got=got,
    )


def _load_client_key(target: SSHTarget) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(os.fspath(target.client_key_path))
    except OSError as exc:
        raise SSHError(
            f"cannot read SSH client key {target.client_key_path}: {exc.strerror or exc}",
            target=target.label,
        ) from None
    except (asyncssh.KeyImportError, ValueError):
        raise SSHError(
            f"cannot load SSH client key {target.client_key_path} "
            "(expected an unencrypted private key)",
            target=target.label,
        ) from None


async def connect(target: SSHTarget, *, timeout: float = 30.0) -> SSHConnection:
    """Open one SSH connection to ``target`` (a single attempt).

    Parameters
    ----------
    target
        Where to connect.  ``target.known_hosts_path`` must pin the host key.
    timeout
        Bound in seconds for TCP connect, key exchange and authentication together.

    Raises
    ------
    HostKeyMismatchError
        The server presented another host key than the pinned one
        (:class:`HostKeyNotPinnedError` if nothing is pinned for the address).
    SSHAuthError
        The server rejected the client key.
    SSHConnectError
        Refused, reset, unreachable or closed during the handshake (worth retrying).
    SSHTimeoutError
        ``timeout`` expired (worth retrying).
    SSHError
        The client key cannot be read.
    """
    if not target.known_hosts_path.is_file():
        raise HostKeyNotPinnedError(
            f"known_hosts file {target.known_hosts_path} does not exist; refusing to "
            f"connect to {target.host}:{target.port} without a pinned host key",
            target=target.label,
            host=target.host,
            port=target.port,
            expected=[],
            got=None,
        )
    client_key = _load_client_key(target)
    clients: list[_PinnedClient] = []

    def factory() -> _PinnedClient:
        client = _PinnedClient()
        clients.append(client)
        return client

    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                target.host,
                target.port,
                username=target.username,
                client_keys=[client_key],
                known_hosts=os.fspath(target.known_hosts_path),
                client_factory=factory,
                config=[],
                agent_path=None,
                agent_forwarding=False,
                password_auth=False,
                kbdint_auth=False,
                host_based_auth=False,
                gss_auth=False,
                gss_kex=False,
                preferred_auth="publickey",
                pkcs11_provider=None,
                x509_trusted_certs=None,
                x509_trusted_cert_paths=[],
                connect_timeout=timeout,
                login_timeout=timeout,
                keepalive_interval=_KEEPALIVE_INTERVAL,
                keepalive_count_max=_KEEPALIVE_COUNT_MAX,
            ),
            timeout,
        )
    except asyncssh.HostKeyNotVerifiable:
        offered = clients[-1].offered_key if clients else None
        raise _host_key_error(target, offered) from None
    except asyncssh.PermissionDenied as exc:
        raise SSHAuthError(
            f"authentication as {target.username!r} on {target.host}:{target.port} "
            f"failed with key {target.client_key_path}: {exc.reason}",
            target=target.label,
        ) from None
    except asyncio.TimeoutError:
        raise SSHTimeoutError(
            f"connecting to {target.address} did not complete within {timeout:g} s",
            target=target.label,
        ) from None
    except (asyncssh.DisconnectError, OSError) as exc:
        reason = exc.reason if isinstance(exc, asyncssh.DisconnectError) else str(exc)
        raise SSHConnectError(
            f"cannot connect to {target.address}: {reason or type(exc).__name__}",
            target=target.label,
        ) from None
    logger.debug("[%s] connected to %s", target.label, target.address)
    return SSHConnection(target, conn)


async def wait_for_ssh(
    target: SSHTarget,
    *,
    timeout: float,
    on_progress: Callable[[str], None] | None = None,
) -> SSHConnection:
    """Connect to ``target``, retrying while the server is still coming up.

    Refused/reset connections and per-attempt timeouts are retried with capped
    exponential backoff until ``timeout`` expires.  Host key mismatch and authentication
    failure are raised at once: waiting cannot fix them.

    Parameters
    ----------
    target
        Where to connect.
    timeout
        Total time budget in seconds.
    on_progress
        Receives messages like ``"[worker000] [root] Waiting for SSH ..."``,
        ``"... Continuing to wait for SSH ..."`` (at most every
        :data:`PROGRESS_INTERVAL` seconds) and ``"... SSH up."``.  Without it they are
        logged at INFO level.

    Raises
    ------
    SSHTimeoutError
        Nothing answered in time; the message names target and last error.
    HostKeyMismatchError, SSHAuthError, SSHError
        As :func:`connect`, without retrying.
    """
    report = on_progress if on_progress is not None else logger.info
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout
    head = f"[{target.label}] [{target.username}]"
    report(f"{head} Waiting for SSH ...")
    last_report = start
    delay = _FIRST_DELAY
    attempts = 0
    last_error: SSHError | None = None
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        attempts += 1
        try:
            conn = await connect(target, timeout=min(_ATTEMPT_TIMEOUT, remaining))
        except (SSHConnectError, SSHTimeoutError) as exc:
            last_error = exc
            logger.debug("%s SSH attempt %d failed: %s", head, attempts, exc.reason)
        else:
            report(f"{head} SSH up.")
            return conn
        now = loop.time()
        if now >= deadline:
            break
        if now - last_report >= PROGRESS_INTERVAL:
            report(f"{head} Continuing to wait for SSH ...")
            last_report = now
        await asyncio.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _MAX_DELAY)
    detail = f"; last error: {last_error.reason}" if last_error is not None else ""
    raise SSHTimeoutError(
        f"timed out after {timeout:g} s waiting for SSH on {target.address} "
        f"({attempts} attempt{'s' if attempts != 1 else ''}{detail})",
        target=target.label,
    )


class SSHConnection(_Closeable):
    """An open SSH connection to one target.

    Obtain one from :func:`connect` or :func:`wait_for_ssh`; use it as an async context
    manager or call :meth:`close`.
    """

    def __init__(self, target: SSHTarget, conn: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._conn = conn

    @property
    def asyncssh_connection(self) -> asyncssh.SSHClientConnection:
        """The underlying asyncssh connection, for what this wrapper does not offer."""
        return self._conn

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by us or by the server)."""
        return self._conn.is_closed()

    def _lost(self, action: str, exc: BaseException) -> SSHConnectionLostError:
        reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
        return SSHConnectionLostError(
            f"connection to {self.target.address} lost while {action}: "
            f"{reason or type(exc).__name__}",
            target=self.target.label,
        )

    def _channel_failure(
        self, exc: BaseException, action: str, refused: str, error: type[SSHError]
    ) -> SSHError:
        """The error for ``exc`` (channel refused, disconnect, OS error) during ``action``.

        A channel the server refuses on a live connection gives ``error`` saying that it
        refused ``refused``; anything else means the connection is lost.
        """
        if isinstance(exc, asyncssh.ChannelOpenError) and not self._conn.is_closed():
            return error(f"server refused {refused}: {exc.reason}", target=self.target.label)
        return self._lost(action, exc)

    async def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float | None = None,
        input: str | None = None,
    ) -> RunResult:
        """Run ``command`` in the remote user's shell and collect its output.

        Parameters
        ----------
        command
            Shell command line (quote arguments with :func:`shlex.join`).
        check
            Raise :class:`SSHCommandError` on non-zero exit status.
        timeout
            Seconds until the command is abandoned (its channel closed) and
            :class:`SSHTimeoutError` is raised; None waits indefinitely.
        input
            Text fed to the command's stdin, then EOF.  Without it stdin is empty.

        Raises
        ------
        SSHCommandError, SSHTimeoutError
            See above.
        SSHConnectionLostError
            The connection died before the command reported its exit status (e.g. the
            command rebooted the machine).
        SSHError
            The server refused to start the command.
        """
        label = self.target.label
        try:
            if input:
                process = await self._conn.create_process(
                    command, input=input, encoding="utf-8", errors="replace"
                )
            else:
                process = await self._conn.create_process(
                    command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace"
                )
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            raise self._channel_failure(
                exc, f"starting {_short(command)!r}", f"to run {_short(command)!r}", SSHError
            ) from None
        try:
            completed = await process.wait(check=False, timeout=timeout)
        except asyncssh.TimeoutError:
            process.close()
            raise SSHTimeoutError(
                f"command {_short(command)!r} did not finish within {timeout:g} s",
                target=label,
            ) from None
        except (asyncssh.DisconnectError, OSError) as exc:
            raise self._lost(f"running {_short(command)!r}", exc) from None
        finally:
            process.close()
        status = completed.returncode
        stdout = completed.stdout if isinstance(completed.stdout, str) else ""
        stderr = completed.stderr if isinstance(completed.stderr, str) else ""
        if status is None:
            if self._conn.is_closed():
                raise SSHConnectionLostError(
                    f"connection to {self.target.address} ended before {_short(command)!r} "
                    "reported an exit status",
                    target=label,
                )
            tail = _tail(stderr.strip() or stdout.strip())
            raise SSHError(
                f"server ended {_short(command)!r} without an exit status"
                + (f":\n{tail}" if tail else ""),
                target=label,
            )
        result = RunResult(status, stdout, stderr)
        if check and status != 0:
            how = f"exit status {status}" if status > 0 else f"signal {-status}"
            tail = _tail(stderr.strip() or stdout.strip())
            raise SSHCommandError(
                f"command {_short(command)!r} failed with {how}" + (f":\n{tail}" if tail else ""),
                target=label,
                command=command,
                exit_status=status,
                stdout=stdout,
                stderr=stderr,
            )
        return result

    async def upload(self, files: Mapping[str, bytes | str], *, mode: int = 0o600) -> None:
        """Write files on the server over SFTP.

        Parameters
        ----------
        files
            Remote path to content (``str`` is encoded as UTF-8).  Relative paths are
            relative to the remote user's home directory.  Missing parent directories are
            created with mode 0700.
        mode
            Permission bits of every written file.  Each file is written to a temporary
            name created with ``mode`` and renamed over the target, so it never exists
            with wider permissions or half-written.

        Raises
        ------
        SSHFileError
            A directory or file cannot be created or written.
        SSHConnectionLostError
            The connection died.
        """
        label = self.target.label
        current = ""
        try:
            async with self._conn.start_sftp_client() as sftp:
                for remote, content in files.items():
                    current = remote
                    data = content.encode("utf-8") if isinstance(content, str) else content
                    parent = posixpath.dirname(remote)
                    if parent and parent != "/":
                        await sftp.makedirs(
                            parent, attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True
                        )
                    tmp = posixpath.join(
                        parent, f".{posixpath.basename(remote)}.{secrets.token_hex(6)}.tmp"
                    )
                    try:
                        async with sftp.open(
                            tmp, "wb", attrs=asyncssh.SFTPAttrs(permissions=mode)
                        ) as handle:
                            await handle.write(data)
                        await sftp.chmod(tmp, mode)
                        await _replace(sftp, tmp, remote)
                    except BaseException:
                        with contextlib.suppress(asyncssh.Error, OSError):
                            await sftp.remove(tmp)
                        raise
                    logger.debug("[%s] uploaded %s (%d bytes)", label, remote, len(data))
        except asyncssh.SFTPError as exc:
            raise SSHFileError(
                f"upload of {current!r} failed: {exc.reason}", target=label
            ) from None
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            raise self._channel_failure(
                exc, f"uploading {current!r}", "SFTP", SSHFileError
            ) from None

    async def download(self, remote_path: str) -> bytes:
        """Read a remote file over SFTP (relative paths: from the remote home).

        Raises
        ------
        SSHFileNotFoundError
            The file does not exist.
        SSHFileError
            Any other SFTP failure.
        SSHConnectionLostError
            The connection died.
        """
        label = self.target.label
        try:
            async with (
                self._conn.start_sftp_client() as sftp,
                sftp.open(remote_path, "rb") as handle,
            ):
                data = await handle.read()
        except asyncssh.SFTPNoSuchFile:
            raise SSHFileNotFoundError(
                f"remote file {remote_path!r} does not exist", target=label
            ) from None
        except asyncssh.SFTPError as exc:
            raise SSHFileError(
                f"download of {remote_path!r} failed: {exc.reason}", target=label
            ) from None
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            raise self._channel_failure(
                exc, f"downloading {remote_path!r}", "SFTP", SSHFileError
            ) from None
        return data if isinstance(data, bytes) else data.encode("utf-8")

    async def forward_local(
        self,
        remote_host: str,
        remote_port: int,
        *,
        local_host: str = "127.0.0.1",
        local_port: int = 0,
    ) -> Forward:
        """Listen on ``local_host:local_port`` and forward connections to the remote side.

        ``local_port=0`` picks a free port (see ``Forward.local_port``).  The forward
        lives until :meth:`Forward.close` or until this connection closes.
        """
        try:
            listener = await self._conn.forward_local_port(
                local_host, local_port, remote_host, remote_port
            )
        except (asyncssh.DisconnectError, asyncssh.ChannelOpenError) as exc:
            raise self._lost(f"forwarding to {remote_host}:{remote_port}", exc) from None
        except OSError as exc:
            raise SSHError(
                f"cannot listen on {local_host}:{local_port} for forwarding: {exc}",
                target=self.target.label,
            ) from None
        forward = Forward(listener, local_host, remote_host, remote_port)
        logger.debug("[%s] %r", self.target.label, forward)
        return forward

    async def close(self) -> None:
        """Close the connection and its forwards (idempotent)."""
        self._conn.close()
        await self._conn.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<SSHConnection {self.target.label} {self.target.address} {state}>"


async def _replace(sftp: asyncssh.SFTPClient, tmp: str, remote: str) -> None:
    """Rename ``tmp`` over ``remote``, atomically where the server supports it."""
    try:
        await sftp.posix_rename(tmp, remote)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(remote)
        await sftp.rename(tmp, remote)
