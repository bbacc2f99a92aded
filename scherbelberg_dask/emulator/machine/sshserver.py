"""The SSH server of an emulated machine: listeners, authentication, forwarding policy.

Public-key authentication only, against the users of the machine's spec.  Sessions go to
the machine's :class:`~.handler.SessionHandler` (executing image) or are refused with a
message (any other image).  Local port forwarding (direct-tcpip) reaches only the
machine's own current addresses; remote forwarding is never offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncssh

from .handler import SessionHandler
from .interface import LoginUser
from .session import RefusingSession, refusal_message

logger = logging.getLogger(__name__)

_SERVER_VERSION = "scherbelberg_emulator"


def _authorized_keys(user: LoginUser) -> asyncssh.SSHAuthorizedKeys | None:
    """Parse a user's authorized keys line by line, skipping (and logging) bad lines."""
    good = []
    for line in user.authorized_keys:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            asyncssh.import_authorized_keys(line)
        except (ValueError, asyncssh.KeyImportError):
            logger.warning("ignoring an unparsable authorized key of user %r", user.name)
            continue
        good.append(line)
    if not good:
        return None
    return asyncssh.import_authorized_keys("\n".join(good) + "\n")


class _NodeSSHServer(asyncssh.SSHServer):
    """Per-connection policy object (asyncssh creates one per connection)."""

    def __init__(self, service: SSHService) -> None:
        self._service = service
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        if self._service.refusing:
            logger.info("%s: dropping a new SSH connection (refuse_ssh)", self._service.name)
            asyncio.get_running_loop().call_soon(conn.abort)
            return
        self._service.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._service.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        assert self._conn is not None
        self._conn.set_authorized_keys(self._service.user_keys.get(username))
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        if self._service.handler is None:
            return RefusingSession(self._service.image_name)
        return self._service.handler.new_session()

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        if self._service.handler is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                refusal_message(self._service.image_name),
            )
        own = self._service.addresses
        if dest_host in own:
            return True
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            f"scherbelberg-emulator: port forwarding to {dest_host}:{dest_port} refused; "
            f"this server forwards only to its own addresses ({', '.join(sorted(own))})",
        )

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            "scherbelberg-emulator: Unix socket forwarding is not supported",
        )

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


class SSHService:
    """The SSH listeners and connections of one machine while it runs.

    Parameters
    ----------
    name
        The machine's name (for logs).
    image_name
        The machine's image (named when refusing).
    port
        TCP port on every address.
    host_keys
        Host keys.
    users
        Login users.
    handler
        Session handler of an executing machine; None refuses every session.
    """

    def __init__(
        self,
        name: str,
        image_name: str,
        port: int,
        host_keys: list[asyncssh.SSHKey],
        users: list[LoginUser],
        handler: SessionHandler | None,
    ) -> None:
        self.name = name
        self.image_name = image_name
        self.handler = handler
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.user_keys: dict[str, asyncssh.SSHAuthorizedKeys] = {}
        for user in users:
            keys = _authorized_keys(user)
            if keys is not None:
                self.user_keys[user.name] = keys
        self._port = port
        self._host_keys = host_keys
        self._listeners: dict[str, asyncssh.SSHAcceptor] = {}
        self._refuse_until = 0.0
        self._options: asyncssh.SSHServerConnectionOptions | None = None

    @property
    def addresses(self) -> frozenset[str]:
        """The addresses currently listened on."""
        return frozenset(self._listeners)

    @property
    def refusing(self) -> bool:
        """Whether new connections are currently dropped."""
        return time.monotonic() < self._refuse_until

    def refuse(self, seconds: float) -> None:
        """Drop new connections right after accept for ``seconds``."""
        self._refuse_until = time.monotonic() + max(0.0, seconds)

    async def _connection_options(self) -> asyncssh.SSHServerConnectionOptions:
        if self._options is None:
            self._options = await asyncssh.SSHServerConnectionOptions.construct(
                server_factory=lambda: _NodeSSHServer(self),
                server_host_keys=self._host_keys,
                server_version=_SERVER_VERSION,
                encoding=None,
                public_key_auth=True,
                password_auth=False,
                kbdint_auth=False,
                host_based_auth=False,
                gss_kex=False,
                gss_auth=False,
                allow_pty=True,
                line_editor=False,
                x11_forwarding=False,
                agent_forwarding=False,
                rdns_lookup=False,
                login_timeout=30,
            )
        return self._options

    async def listen(self, address: str) -> None:
        """Start listening on ``address`` (no-op if already listening).

        Raises
        ------
        OSError
            If the address cannot be bound.
        """
        if address in self._listeners:
            return
        options = await self._connection_options()
        acceptor = await asyncssh.listen(
            host=address, port=self._port, options=options, reuse_address=True
        )
        self._listeners[address] = acceptor
        logger.debug("%s: SSH listening on %s:%d", self.name, address, self._port)

    async def unlisten(self, address: str) -> None:
        """Stop listening on ``address`` and drop the connections made to it."""
        acceptor = self._listeners.pop(address, None)
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for conn in list(self.connections):
            local = conn.get_extra_info("sockname")
            if local and local[0] == address:
                self.connections.discard(conn)
                conn.abort()

    async def close(self) -> None:
        """Stop listening everywhere and drop every connection abruptly."""
        acceptors = list(self._listeners.values())
        self._listeners.clear()
        for acceptor in acceptors:
            acceptor.close()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                conn.abort()
        self.connections.clear()
        for acceptor in acceptors:
            await acceptor.wait_closed()
