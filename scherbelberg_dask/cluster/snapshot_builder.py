"""Snapshots of a node environment: made by a short-lived image builder, used by new nodes.

After the first node of an environment came up from the full setup, the provisioner
starts an *image builder* in the background: a server of the cluster's base image that
runs the environment part of the setup only (uv, the venv with the packages) and none of
the node part, so no per-cluster file (``node.json``, TLS pair, the node's host key)
ever exists on it.  It is then cleaned (cloud-init state, host keys, machine id, the
logins), snapshotted with the environment's labels, and deleted.  Later servers of the
same environment boot from the newest matching snapshot (docs/snapshots.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from scherbelberg_dask.bootstrap.profiles import BootstrapProfile
from scherbelberg_dask.cloud.catalog import ServerType
from scherbelberg_dask.cloud.client import CloudClient, ServerInfo, ServerSpec
from scherbelberg_dask.cloud.snapshots import (
    UNUSABLE,
    Snapshot,
    SnapshotKey,
    mark_unusable,
    newest_snapshot,
    snapshot_key,
)
from scherbelberg_dask.cluster.secrets import HostKeyPins
from scherbelberg_dask.cluster.settings import Timeouts
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.ssh import SSHTarget, wait_for_ssh

logger = logging.getLogger(__name__)

#: The node name (and label) of a cluster's image builder.
BUILDER = "image-builder"
#: Bound on the ``create_image`` action.
SNAPSHOT_TIMEOUT = 1800.0
#: Seconds between the INFO lines of a close waiting for a snapshot.
CLOSE_WAIT_REPORT = 30.0


@dataclasses.dataclass(frozen=True)
class BuilderJob:
    """One image builder to run, as the provisioner decided it.

    Attributes
    ----------
    key
        The environment the snapshot is of.
    spec
        The builder server's create request (no network; the cluster's firewall).
    host_key
        The builder's host key (pinned before the first login).
    cloud, profile, pins, timeouts
        As for a node.
    target
        How to log in to the builder as a user.
    made_by
        Labels naming the cluster that made the snapshot.
    """

    key: SnapshotKey
    spec: ServerSpec
    host_key: SSHKeyPair
    cloud: CloudClient
    profile: BootstrapProfile
    pins: HostKeyPins
    target: Callable[[ServerInfo, str], SSHTarget]
    timeouts: Timeouts
    #: Labels naming the cluster that made it (informative; ``nuke --images``).
    made_by: dict[str, str] = dataclasses.field(default_factory=dict)


def _hosts(server: ServerInfo) -> list[str]:
    return [ip for ip in (server.public_ip, *server.private_ips) if ip]


async def build_snapshot(job: BuilderJob) -> Snapshot:
    """Run the image builder: create, install the environment, clean, snapshot, delete."""
    cloud, started = job.cloud, time.monotonic()
    logger.info("Building a snapshot of environment %s in the background ...", job.key.key[:12])
    server, actions = await cloud.create_server(job.spec)
    try:
        await job.pins.pin(_hosts(server), job.host_key.public_openssh)
        await cloud.wait_actions(
            actions, timeout=job.timeouts.server, what=f"starting {server.name}"
        )
        conn = await wait_for_ssh(
            job.target(server, job.profile.setup_user), timeout=job.timeouts.ssh
        )
        try:
            await asyncio.wait_for(job.profile.build_environment(conn), job.timeouts.bootstrap)
        finally:
            await conn.close()
        answer = await cloud.request(
            "POST",
            f"/servers/{server.id}/actions/create_image",
            json={
                "type": "snapshot",
                "description": job.key.description,
                "labels": {**job.key.labels, **job.made_by},
            },
        )
        await cloud.wait_actions(
            [answer["action"]["id"]], timeout=SNAPSHOT_TIMEOUT, what="making the snapshot"
        )
        image_id = int(answer["image"]["id"])
    finally:
        await asyncio.shield(_delete(job, server))
    body = await cloud.request("GET", f"/images/{image_id}")
    snapshot = Snapshot.from_api(body["image"])
    logger.info(
        "Snapshot %d of environment %s is ready (%.1f s, %.2f GB).",
        snapshot.id,
        job.key.key[:12],
        time.monotonic() - started,
        snapshot.image_size or 0.0,
    )
    return snapshot


async def _delete(job: BuilderJob, server: ServerInfo) -> None:
    try:
        await job.cloud.delete_server(
            server.id, timeout=job.timeouts.delete, what=f"deleting {server.name}"
        )
    except Exception as exc:  # destroy and nuke find it by its cluster label
        logger.error("Could not delete image builder %s (destroy will): %s", server.name, exc)
    finally:
        await job.pins.unpin(_hosts(server))


def environment_key(
    profile: BootstrapProfile, base_image: str, architecture: str
) -> SnapshotKey | None:
    """The snapshot key of ``profile``'s environment (None: the profile makes none)."""
    digest = profile.environment_digest
    if digest is None:
        return None
    return snapshot_key(
        profile=type(profile).__name__.removesuffix("Profile").lower(),
        digest=digest,
        environment=profile.environment,
        base_image=base_image,
        architecture=architecture,
    )


class NodeImages:
    """Which image a new node boots from, and the snapshot being made (one per cluster).

    Parameters
    ----------
    cloud, profile
        The cluster's API client and bootstrap profile.
    base_image
        The cluster's image (``debian-12``): what servers boot from without a snapshot.
    enabled
        The ``snapshot`` setting.
    make_job
        Makes the builder job for a key and a server type.
    """

    def __init__(
        self,
        *,
        cloud: Callable[[], CloudClient],
        profile: BootstrapProfile,
        base_image: str,
        enabled: bool,
        make_job: Callable[[SnapshotKey, ServerType], Awaitable[BuilderJob]],
    ) -> None:
        self._cloud = cloud
        self._profile = profile
        self.base_image = base_image
        self.enabled = enabled and profile.environment_digest is not None
        self._make_job = make_job
        self._found: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._build: asyncio.Task[Snapshot | None] | None = None
        #: The environment being snapshotted (for the close's messages).
        self._building: SnapshotKey | None = None
        #: Keys of environments whose snapshot failed here: no more snapshots of them.
        self._distrusted: set[str] = set()
        #: Snapshots labelled unusable by this handle (each once).
        self._marked: set[int] = set()

    def key(self, server_type: ServerType) -> SnapshotKey | None:
        """The environment key of nodes of ``server_type`` (None: no snapshots)."""
        if not self.enabled:
            return None
        return environment_key(self._profile, self.base_image, server_type.architecture)

    async def image_for(self, server_type: ServerType) -> tuple[str, Snapshot | None]:
        """What a new server of ``server_type`` boots from: an image and its snapshot.

        The newest available snapshot of the environment that fits the type's disk, or
        the base image.  Looked up once per key; a snapshot made meanwhile is adopted.
        """
        key = self.key(server_type)
        if key is None or key.key in self._distrusted:
            return self.base_image, None
        future = self._found.get(key.key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._found[key.key] = future
            try:
                found = await newest_snapshot(self._cloud(), key, disk_gb=server_type.disk_gb)
            except Exception as exc:  # a lookup failure must not stop the node
                logger.warning("Looking up snapshots failed, using %s: %s", self.base_image, exc)
                found = None
            future.set_result(found)
        snapshot = await asyncio.shield(future)
        if snapshot is None or snapshot.disk_size > server_type.disk_gb:
            return self.base_image, None
        return str(snapshot.id), snapshot

    def node_up(self, server_type: ServerType, snapshot: Snapshot | None) -> None:
        """A node of ``server_type`` came up; start the snapshot if none exists yet."""
        key = self.key(server_type)
        if key is None or snapshot is not None or self._build is not None:
            return
        if key.key in self._distrusted:
            return  # its snapshot failed here: the next cluster makes a new one
        known = self._found.get(key.key)
        if known is not None and known.done() and known.result() is not None:
            return
        self._building = key
        self._build = asyncio.create_task(self._run(key, server_type), name="image-builder")

    async def _run(self, key: SnapshotKey, server_type: ServerType) -> Snapshot | None:
        try:
            snapshot = await build_snapshot(await self._make_job(key, server_type))
        except asyncio.CancelledError:
            logger.info("The snapshot of environment %s was not finished.", key.key[:12])
            raise
        except Exception as exc:
            logger.warning("No snapshot of environment %s was made: %s", key.key[:12], exc)
            return None
        future = asyncio.get_running_loop().create_future()
        future.set_result(snapshot)
        self._found[key.key] = future
        return snapshot

    def distrust(self, snapshot: Snapshot) -> None:
        """Boot no more servers of ``snapshot``'s environment from a snapshot (this handle).

        Also no new snapshot of it is made here: whatever broke this one may break the
        next (the next cluster, which skips snapshots labelled unusable, makes one).
        """
        self._distrusted.add(snapshot.key)

    async def mark_unusable(self, snapshot: Snapshot, reason: str) -> None:
        """Label ``snapshot`` unusable with ``reason`` in the cloud (once; never raises).

        Snapshot selection skips it from then on, in every cluster.
        """
        self.distrust(snapshot)
        if snapshot.id in self._marked:
            return
        self._marked.add(snapshot.id)
        try:
            await mark_unusable(self._cloud(), snapshot.id, reason)
        except Exception as exc:  # the node is up; only the label is missing
            logger.warning("Could not label snapshot %d unusable: %s", snapshot.id, exc)
            return
        logger.info(
            "Snapshot %d is labelled %s=%s: no cluster boots from it again "
            "(`scherbelberg-dask images rm %d` removes it).",
            snapshot.id,
            UNUSABLE,
            reason,
            snapshot.id,
        )

    @property
    def pending(self) -> bool:
        """True while a snapshot is being made."""
        return self._build is not None and not self._build.done()

    async def wait(self) -> Snapshot | None:
        """The snapshot being made, once it is done (None if none is made or it failed)."""
        if self._build is None:
            return None
        try:
            return await asyncio.shield(self._build)
        except asyncio.CancelledError:
            if self._build.cancelled():
                return None
            raise

    async def finish(self, limit: float, *, report: float = CLOSE_WAIT_REPORT) -> Snapshot | None:
        """Wait up to ``limit`` seconds for the snapshot being made, then stop it.

        Logs an INFO line when the wait starts and every ``report`` seconds while it
        lasts, saying what it waits for and how to skip it.  Returns the snapshot (None
        if none was being made, it failed, or it was stopped).  Cancelled, the snapshot
        is left to :meth:`close` (the caller stops it).
        """
        build, key = self._build, self._building
        if build is None or build.done() or key is None:
            return await self.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + limit
        skip = (
            "snapshot_close_wait=0 or scherbelberg.snapshot-close-wait: off skips this wait; "
            "interrupting it stops the snapshot"
        )
        logger.info(
            "Waiting for the snapshot of environment %s to finish (at most %.0f s) before "
            "deleting the cluster's network, firewall and SSH key (%s) ...",
            key.key[:12],
            limit,
            skip,
        )
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning(
                    "The snapshot of environment %s was not done within %.0f s; stopping it.",
                    key.key[:12],
                    limit,
                )
                await self.close()
                return None
            await asyncio.wait({build}, timeout=min(report, remaining))
            if build.done():
                return await self.wait()
            logger.info(
                "Still waiting for the snapshot of environment %s (%.0f s so far, at most "
                "%.0f s more; %s) ...",
                key.key[:12],
                loop.time() - started,
                max(0.0, deadline - loop.time()),
                skip,
            )

    async def close(self) -> None:
        """Stop a snapshot still being made (its builder server is deleted)."""
        build, self._build = self._build, None
        if build is not None and not build.done():
            build.cancel()
            await asyncio.gather(build, return_exceptions=True)
