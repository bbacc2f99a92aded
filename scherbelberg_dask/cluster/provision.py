"""Bringing one node up: create its server, log in with the pinned key, set it up.

The :class:`~scherbelberg_dask.cluster.provisioner.Provisioner` decides what the node is
(a :class:`NodeJob`); :func:`provision_node` only carries it out and changes nothing of
the provisioner's.  A node that fails to come up is deleted again, and the error names
the node, what it was doing, and the tail of its log (docs/design.md, "Failure").  Every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from scherbelberg_dask.bootstrap.node_config import NodeConfig
from scherbelberg_dask.bootstrap.profiles import BootstrapProfile
from scherbelberg_dask.cloud.client import CloudClient, ServerInfo, ServerSpec
from scherbelberg_dask.cloud.snapshots import Snapshot
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.secrets import HostKeyPins
from scherbelberg_dask.cluster.settings import Timeouts
from scherbelberg_dask.errors import UserError
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.ssh import SSHConnection, SSHTarget, wait_for_ssh

logger = logging.getLogger(__name__)


class NodeStartError(UserError, RuntimeError):
    """A node could not be brought up; its server has been deleted.

    Attributes
    ----------
    node
        The node's name (``scheduler``, ``worker003``, ...).
    log_tail
        The last lines of the node's setup and service logs, if they could be fetched.
    phase
        Where it failed: ``create``, ``boot`` and ``ssh`` are the cloud's doing (another
        server may well work); ``setup`` and ``dask`` are the node's (another would fail
        the same way).
    """

    #: Phases in which a new server may succeed where this one failed.
    TRANSIENT = ("create", "boot", "ssh")
    #: Phases in which a server made from a snapshot may have failed for the snapshot's
    #: sake (docs/snapshots.md, "A broken snapshot"), with the label value saying so.
    SNAPSHOT_BROKEN = {"boot": "boot-failed", "ssh": "ssh-failed"}

    def __init__(
        self,
        node: str,
        message: str,
        log_tail: str = "",
        phase: str = "",
        *,
        discarded: bool = True,
    ) -> None:
        text = f"node {node}: {message}"
        if log_tail.strip():
            text += "\n--- last lines of its log ---\n" + log_tail.rstrip()
        super().__init__(text)
        self.node = node
        self.log_tail = log_tail
        self.phase = phase
        #: False if the failed server could not be deleted (nuke will).
        self.discarded = discarded

    @property
    def transient(self) -> bool:
        """True if a new server (of the same name) might come up where this one did not.

        Only when the failed server is gone: its name must be free again.
        """
        return self.phase in self.TRANSIENT and self.discarded


@dataclasses.dataclass(frozen=True)
class NodeJob:
    """One node to bring up, as the provisioner decided it.

    Attributes
    ----------
    name, role
        The node's name (``scheduler``, ``worker000``, ...) and role.
    spec
        The server's create request.
    host_key
        The server's SSH host key (its private half is in ``spec.user_data``).
    cloud, profile
        The API client and the bootstrap profile of the image.
    pins
        Where the host key is pinned before the first login.
    target
        How to log in to a server as a user: ``target(server, user)``.
    node_config
        The node's ``node.json``, given its server and the scheduler's address.
    tls_files
        The node's TLS files (by path below the node directory).
    scheduler_address
        Waits for the address workers reach the scheduler at.
    on_booted
        Called once the server runs (the scheduler publishes its address there).
    timeouts
        The bounded waits.
    after_setup
        Run after the profile's setup, with the setup connection and the server (an
        autonomous cluster's scheduler installs its controller there).
    snapshot
        The environment snapshot the server boots from (None: the base image).
    on_snapshot_unusable
        Called with the setup script's reason when the server booted from ``snapshot``
        but its environment was not usable (the full setup ran instead).
    """

    name: str
    role: str
    spec: ServerSpec
    host_key: SSHKeyPair
    cloud: CloudClient
    profile: BootstrapProfile
    pins: HostKeyPins
    target: Callable[[ServerInfo, str], SSHTarget]
    node_config: Callable[[ServerInfo, str], NodeConfig]
    tls_files: dict[str, bytes]
    scheduler_address: Callable[[], Awaitable[str]]
    on_booted: Callable[[ServerInfo], None]
    timeouts: Timeouts
    after_setup: Callable[[SSHConnection, ServerInfo], Awaitable[None]] | None = None
    snapshot: Snapshot | None = None
    on_snapshot_unusable: Callable[[str], None] | None = None


def server_hosts(server: ServerInfo) -> list[str]:
    """The addresses a server's host key is pinned for."""
    return [ip for ip in (server.public_ip, *server.private_ips) if ip]


async def provision_node(job: NodeJob) -> Node:
    """Create the job's server and make it a running Dask node; return the node."""
    name, role, profile, cloud = job.name, job.role, job.profile, job.cloud
    server_name = job.spec.name
    tag = f"[{name}]"
    started = time.monotonic()
    if job.snapshot is not None:
        logger.info("Creating node %s from snapshot %d ...", server_name, job.snapshot.id)
    else:
        logger.info("Creating node %s ...", server_name)
    try:
        server, actions = await cloud.create_server(job.spec)
    except Exception as exc:
        raise NodeStartError(
            name, f"creating server {server_name} failed: {exc}", phase="create"
        ) from exc
    await job.pins.pin(server_hosts(server), job.host_key.public_openssh)
    conn: SSHConnection | None = None
    step, phase = f"waiting for server {server_name} to start", "boot"
    try:
        logger.info("%s Waiting for server to start ...", tag)
        await cloud.wait_actions(actions, timeout=job.timeouts.server, what=step)
        job.on_booted(server)
        step, phase = "waiting for SSH", "ssh"
        conn = await wait_for_ssh(
            job.target(server, profile.setup_user),
            timeout=job.timeouts.ssh,
            on_progress=logger.info,
        )
        step, phase = "waiting for the scheduler's address", "setup"
        scheduler_address = await asyncio.wait_for(job.scheduler_address(), job.timeouts.server)
        step, phase = "setting up the node", "setup"
        logger.info("%s Bootstrapping ...", tag)
        unusable = await asyncio.wait_for(
            profile.setup(
                conn,
                files=job.tls_files,
                node=job.node_config(server, scheduler_address),
                from_snapshot=job.snapshot is not None,
            ),
            job.timeouts.bootstrap,
        )
        if unusable is not None and job.on_snapshot_unusable is not None:
            job.on_snapshot_unusable(unusable)
        if job.after_setup is not None:
            step = "installing the controller"
            await asyncio.wait_for(job.after_setup(conn, server), job.timeouts.bootstrap)
        step, phase = f"waiting for the dask {role} to come up", "dask"
        address = await profile.wait_ready(conn, role=role, timeout=job.timeouts.dask)
        logger.info("%s Dask %s up at %s (%.1f s).", tag, role, address, time.monotonic() - started)
    except BaseException as exc:
        tail = ""
        if conn is not None and not isinstance(exc, asyncio.CancelledError):
            try:
                tail = await asyncio.wait_for(profile.log_tail(conn, role=role), 30)
            except Exception as log_exc:  # the node may be gone; the tail is best effort
                logger.debug("%s could not fetch the log tail: %s", tag, log_exc)
        discarded = await _discard(job, server)
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            raise
        raise NodeStartError(
            name, f"{step} failed: {exc}", tail, phase, discarded=discarded
        ) from exc
    finally:
        if conn is not None:
            await conn.close()
    # The create answer already had the addresses: no need to ask again.
    running = dataclasses.replace(server, status="running")
    return Node(
        name=name, role=role, server=running, ssh=job.target(running, profile.operator_user)
    )


async def _discard(job: NodeJob, server: ServerInfo) -> bool:
    """Delete a failed node's server; never raise (the original error matters more).

    Returns True if the server is gone.
    """
    try:
        logger.info("Deleting failed node %s ...", server.name)
        await asyncio.shield(
            job.cloud.delete_server(
                server.id, timeout=job.timeouts.delete, what=f"deleting {server.name}"
            )
        )
    except Exception as exc:
        logger.error("Could not delete failed node %s (nuke will): %s", server.name, exc)
        return False
    finally:
        await job.pins.unpin(server_hosts(server))
    return True


def make_user_data(
    profile: BootstrapProfile, server_name: str, authorized_key: str, controller: bool = False
) -> tuple[SSHKeyPair, str]:
    """A fresh host key and the cloud-init document pinning it (blocking: key generation).

    ``controller``: the node runs an autonomous cluster's controller.
    """
    host_key = SSHKeyPair.generate(server_name)
    text = profile.cloud_config(
        host_key=host_key,
        authorized_key=authorized_key,
        hostname=server_name,
        controller=controller,
    )
    return host_key, text
