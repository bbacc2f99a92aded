"""Bringing one node up: create its server, log in with the pinned key, set it up.

A node that fails to come up is deleted again, and the error names the node, what it
was doing, and the tail of its log (DESIGN §9).  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from scherbelberg_dask.cloud.labels import cluster_labels
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.ssh import SSHConnection, wait_for_ssh

if TYPE_CHECKING:
    from scherbelberg_dask.bootstrap.profiles import BootstrapProfile
    from scherbelberg_dask.cluster.context import ClusterContext

logger = logging.getLogger(__name__)


class NodeStartError(RuntimeError):
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

    def __init__(self, node: str, message: str, log_tail: str = "", phase: str = "") -> None:
        text = f"node {node}: {message}"
        if log_tail.strip():
            text += "\n--- last lines of its log ---\n" + log_tail.rstrip()
        super().__init__(text)
        self.node = node
        self.log_tail = log_tail
        self.phase = phase

    @property
    def transient(self) -> bool:
        """True if a new server might come up where this one did not."""
        return self.phase in self.TRANSIENT


async def provision_node(ctx: ClusterContext, name: str, role: str) -> Node:
    """Create server ``<prefix>-node-<name>`` and make it a running Dask ``role``."""
    assert ctx.cloud is not None and ctx.resources is not None and ctx.profile is not None
    cloud, profile, settings = ctx.cloud, ctx.profile, ctx.settings
    server_name = f"{ctx.prefix}-node-{name}"
    tag = f"[{name}]"
    started = time.monotonic()
    if ctx.authorized_key is None:
        ctx.authorized_key = (await asyncio.to_thread(ctx.state.load_ssh_key)).public_openssh
    host_key, user_data = await asyncio.to_thread(
        _user_data, profile, server_name, ctx.authorized_key
    )
    body: dict[str, Any] = {
        "name": server_name,
        "server_type": ctx.server_types[role].name,
        "image": settings.image,
        "location": settings.location,
        "start_after_create": True,
        "ssh_keys": [ctx.resources.ssh_key_id],
        "networks": [ctx.resources.network_id],
        "firewalls": [{"firewall": ctx.resources.firewall_id}],
        "labels": cluster_labels(ctx.prefix, role, name),
        "user_data": user_data,
    }
    logger.info("Creating node %s ...", server_name)
    try:
        server, actions = await cloud.create_server(body)
    except Exception as exc:
        raise NodeStartError(
            name, f"creating server {server_name} failed: {exc}", phase="create"
        ) from exc
    await ctx.pin_host(server, host_key.public_openssh)
    conn: SSHConnection | None = None
    step, phase = f"waiting for server {server_name} to start", "boot"
    try:
        logger.info("%s Waiting for server to start ...", tag)
        await cloud.wait_actions(actions, timeout=settings.timeouts.server, what=step)
        if role == "scheduler":  # booted: workers may now learn where it is
            ctx.set_scheduler_contact(server)
        step, phase = "waiting for SSH", "ssh"
        target = ctx.ssh_target(server, profile.setup_user, name)
        conn = await wait_for_ssh(
            target,
            timeout=settings.timeouts.ssh,
            on_progress=logger.info,
        )
        step, phase = "waiting for the scheduler's address", "setup"
        scheduler_address = await asyncio.wait_for(
            asyncio.shield(ctx.scheduler_contact()), settings.timeouts.server
        )
        step, phase = "setting up the node", "setup"
        logger.info("%s Bootstrapping ...", tag)
        node_conf = {
            "role": role,
            "name": name,
            "public_ip": server.public_ip,
            "private_ip": server.private_ips[0] if server.private_ips else server.public_ip,
            "listen": [ip for ip in (server.public_ip, *server.private_ips[:1]) if ip],
            "scheduler_address": scheduler_address,
            "ports": {
                "scheduler": settings.ports.scheduler,
                "dashboard": settings.ports.dashboard,
                "nanny": settings.ports.nanny,
            },
            "env": settings.env_vars,
            "options": ctx.node_options(role),
            "dask_config": ctx.dask_config,
        }
        await asyncio.wait_for(
            profile.setup(
                conn, role=role, files=await asyncio.to_thread(ctx.node_files, name), node=node_conf
            ),
            settings.timeouts.bootstrap,
        )
        step, phase = f"waiting for the dask {role} to come up", "dask"
        address = await profile.wait_ready(conn, role=role, timeout=settings.timeouts.dask)
        logger.info("%s Dask %s up at %s (%.1f s).", tag, role, address, time.monotonic() - started)
    except BaseException as exc:
        tail = ""
        if conn is not None and not isinstance(exc, asyncio.CancelledError):
            try:
                tail = await asyncio.wait_for(profile.log_tail(conn, role=role), 30)
            except Exception as log_exc:  # the node may be gone; the tail is best effort
                logger.debug("%s could not fetch the log tail: %s", tag, log_exc)
        await _discard(ctx, server.id, server_name)
        await ctx.unpin_host(server)
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
            raise
        raise NodeStartError(name, f"{step} failed: {exc}", tail, phase) from exc
    finally:
        if conn is not None:
            await conn.close()
    # The create answer already had the addresses: no need to ask again.
    running = dataclasses.replace(server, status="running")
    return Node(
        name=name,
        role=role,
        server=running,
        ssh=ctx.ssh_target(running, profile.operator_user, name),
    )


async def _discard(ctx: ClusterContext, server_id: int, server_name: str) -> None:
    """Delete a failed node's server; never raise (the original error matters more)."""
    if ctx.cloud is None:
        logger.error("Could not delete failed node %s (the cluster closed); nuke will", server_name)
        return
    try:
        logger.info("Deleting failed node %s ...", server_name)
        answer = await asyncio.shield(ctx.cloud.delete("servers", server_id))
        if answer and answer.get("action"):
            await ctx.cloud.wait_actions(
                [answer["action"]["id"]],
                timeout=ctx.settings.timeouts.delete,
                what=f"deleting {server_name}",
            )
    except Exception as exc:
        logger.error("Could not delete failed node %s (nuke will): %s", server_name, exc)


def _user_data(
    profile: BootstrapProfile, server_name: str, authorized_key: str
) -> tuple[SSHKeyPair, str]:
    """A fresh host key and the cloud-init document pinning it (blocking: key generation)."""
    host_key = SSHKeyPair.generate(server_name)
    text = profile.cloud_config(
        host_key=host_key, authorized_key=authorized_key, hostname=server_name
    )
    return host_key, text
