"""A cluster's secrets: its SSH key, its TLS CA, and the host keys it pins.

Only the :class:`~scherbelberg_dask.cluster.provisioner.Provisioner` holds these
(docs/design.md, "Provisioner" and "Security").  They live in the cluster's local state
directory; key generation and file I/O block, so every method that does either is
awaited and runs in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.security.tls import CertKeyPair, ClusterCA
from scherbelberg_dask.state.statedir import StateDir


@dataclasses.dataclass(frozen=True)
class ClusterSecrets:
    """The cluster's public SSH key (what nodes authorize) and its CA, in memory.

    Attributes
    ----------
    authorized_key
        The cluster key's public OpenSSH line.
    ca_cert_pem
        The cluster CA's certificate.
    ca
        The cluster's TLS certificate authority with its private key, or ``None`` on a
        machine given operator access without it (an access bundle; docs/sharing.md).
    shared_node_cert
        That bundle's CA-signed node certificate, which every node such a machine
        starts gets (``None`` where the CA is here).
    """

    authorized_key: str
    ca_cert_pem: bytes
    ca: ClusterCA | None
    shared_node_cert: CertKeyPair | None = None

    @classmethod
    async def create(cls, state: StateDir, prefix: str) -> ClusterSecrets:
        """Generate the SSH key, the CA and the client certificate, and store them."""

        def make() -> ClusterSecrets:
            state.ensure()
            ssh_key = SSHKeyPair.generate(f"{prefix}-key")
            state.save_ssh_key(ssh_key)
            ca = ClusterCA.create(prefix)
            state.save_ca(ca)
            state.save_client_cert(ca.issue("client", server=False))
            return cls(ssh_key.public_openssh, ca.cert_pem, ca)

        return await asyncio.to_thread(make)

    @classmethod
    async def load(cls, state: StateDir) -> ClusterSecrets:
        """The secrets stored on this machine (by the creator, or by an access bundle)."""

        def read() -> ClusterSecrets:
            key = state.load_ssh_key().public_openssh
            if state.has(StateDir.CA_KEY):
                ca = state.load_ca()
                return cls(key, ca.cert_pem, ca)
            from scherbelberg_dask.state.bundle import load_node_cert

            return cls(key, state.read_bytes(StateDir.CA_CERT), None, load_node_cert(state))

        return await asyncio.to_thread(read)

    async def node_tls(self, common_name: str) -> dict[str, bytes]:
        """TLS files for a node: the CA and a certificate of its own, by relative path."""
        if self.ca is not None:
            pair = await asyncio.to_thread(self.ca.issue, common_name)
        elif self.shared_node_cert is not None:
            pair = self.shared_node_cert
        else:
            raise RuntimeError("neither the cluster's CA nor a shared node certificate is here")
        return {
            "tls/ca.pem": self.ca_cert_pem,
            "tls/node.pem": pair.cert_pem,
            "tls/node.key": pair.key_pem,
        }


class HostKeyPins:
    """The cluster's known_hosts file: each server's host key, pinned before first login.

    known_hosts is read-modify-write: one update at a time.

    Parameters
    ----------
    state
        The cluster's local state (holds the file).
    ssh_port
        The servers' SSH port.
    """

    def __init__(self, state: StateDir, ssh_port: int) -> None:
        self._state = state
        self._port = ssh_port
        self._lock = asyncio.Lock()

    async def pin(self, hosts: Sequence[str], public_key: str) -> None:
        """Pin ``public_key`` for all ``hosts`` (a server's addresses)."""
        async with self._lock:
            await asyncio.to_thread(self._state.set_known_host, list(hosts), self._port, public_key)

    async def unpin(self, hosts: Sequence[str]) -> None:
        """Drop a deleted server's pinned key."""
        if not hosts:
            return
        async with self._lock:
            await asyncio.to_thread(self._forget, list(hosts))

    def _forget(self, hosts: list[str]) -> None:
        if self._state.exists():
            self._state.remove_known_host(hosts, self._port)
