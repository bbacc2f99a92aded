"""A node of a cluster: one Hetzner server running a Dask scheduler or worker."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from scherbelberg_dask.cloud.client import ServerInfo
from scherbelberg_dask.ssh import SSHConnectError, SSHError, SSHTarget, connect

if TYPE_CHECKING:
    from scherbelberg_dask.ssh import RunResult

logger = logging.getLogger(__name__)


def dask_address(ip: str | None, port: int) -> str:
    """The Dask address of a node's process: always mutual TLS."""
    return f"tls://{ip}:{port}"


@dataclasses.dataclass
class Node:
    """One server of a cluster, as seen from the client.

    Attributes
    ----------
    name
        The node's name within its cluster: ``scheduler`` or ``worker000``, ...
        (this is also the Dask worker's name).
    role
        ``scheduler`` or ``worker``.
    server
        The server as the API last reported it.
    ssh
        How to log in (host, port, user, key and the pinned known_hosts file).
    """

    name: str
    role: str
    server: ServerInfo
    ssh: SSHTarget

    @property
    def server_name(self) -> str:
        """The server's name in the cloud: ``<prefix>-node-<name>``."""
        return self.server.name

    @property
    def public_ip(self) -> str | None:
        return self.server.public_ip

    @property
    def private_ip(self) -> str | None:
        return self.server.private_ips[0] if self.server.private_ips else None

    @property
    def labels(self) -> dict[str, str]:
        return self.server.labels

    def __repr__(self) -> str:
        return f"<Node name={self.server_name} public={self.public_ip} private={self.private_ip}>"

    async def run(self, command: str, *, check: bool = True, timeout: float = 300) -> RunResult:
        """Run a shell command on the node as the Dask user; return its result.

        A connection refused or lost during the handshake (sshd restarting: no command
        has run) is tried once more after half a second.
        """
        try:
            conn = await connect(self.ssh, timeout=30)
        except SSHConnectError as exc:
            logger.debug("%s: %s; trying once more", self.server_name, exc)
            await asyncio.sleep(0.5)
            conn = await connect(self.ssh, timeout=30)
        async with conn:
            return await conn.run(command, check=check, timeout=timeout)

    async def ping_ssh(self, timeout: float = 10) -> bool:
        """True if the node answers SSH with its pinned host key."""
        try:
            async with await connect(self.ssh, timeout=timeout) as conn:
                await conn.run("true", timeout=timeout)
        except (SSHError, OSError, TimeoutError) as exc:
            logger.debug("ping %s failed: %s", self.server_name, exc)
            return False
        return True
