"""The provisioner: the one owner of a cluster's cloud client, bootstrap profile and secrets.

It creates a cluster's shared resources (or finds those of a running cluster), brings
nodes up and deletes them, and destroys the whole cluster.  The cluster and its process
interfaces ask it; nothing else talks to the cloud for a cluster (docs/design.md,
"Provisioner").
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scherbelberg_dask import config
from scherbelberg_dask.bootstrap.environment import NodeEnvironment
from scherbelberg_dask.bootstrap.node_config import NodeConfig, NodePorts
from scherbelberg_dask.bootstrap.profiles import BootstrapProfile, profile_for_image
from scherbelberg_dask.cloud.catalog import Catalog, ServerType
from scherbelberg_dask.cloud.client import CloudClient, ServerInfo, ServerSpec
from scherbelberg_dask.cloud.errors import CatalogError
from scherbelberg_dask.cloud.labels import (
    AUTONOMOUS,
    NODE,
    ROLE,
    cluster_labels,
    cluster_selector,
)
from scherbelberg_dask.cloud.snapshots import MADE_BY, Snapshot, SnapshotKey, environment_reason
from scherbelberg_dask.cloud.successors import Resolution, resolve_server_type
from scherbelberg_dask.cluster import dask_config_shipping
from scherbelberg_dask.cluster.node import Node, dask_address
from scherbelberg_dask.cluster.provision import (
    NodeJob,
    NodeStartError,
    make_user_data,
    provision_node,
    server_hosts,
)
from scherbelberg_dask.cluster.resources import (
    ClusterResources,
    create_resources,
    destroy_cluster,
    find_resources,
    firewall_rules,
)
from scherbelberg_dask.cluster.secrets import ClusterSecrets, HostKeyPins
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.cluster.snapshot_builder import BUILDER, BuilderJob, NodeImages
from scherbelberg_dask.errors import ClusterExistsError, ClusterNotFoundError, NodeNotFoundError
from scherbelberg_dask.ssh import SSHConnection, SSHTarget, connect
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)


class Ownership(enum.Enum):
    """What this process may do to a cluster's servers: the one value that decides it.

    ``UNCLAIMED``
        Nothing made or found yet (a clash, a failed validation): closing touches nothing.
    ``OWNED``
        This process created the cluster (or was told to ``destroy`` it): closing deletes
        every labelled resource of it.
    ``ATTACHED``
        The cluster runs for others (``from_existing``, ``detach``): closing leaves it
        running.  Workers this handle scales away are still deleted.
    """

    UNCLAIMED = "unclaimed"
    OWNED = "owned"
    ATTACHED = "attached"


class SchedulerContact:
    """The address workers reach the scheduler at: known once its server runs."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._future: asyncio.Future[str] | None = None

    def _get(self) -> asyncio.Future[str]:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def publish(self, server: ServerInfo) -> None:
        """Tell waiting workers the scheduler's private address."""
        future = self._get()
        if not future.done() and server.private_ips:
            future.set_result(dask_address(server.private_ips[0], self._port))

    async def wait(self) -> str:
        """The address, once published."""
        return await asyncio.shield(self._get())


class Provisioner:
    """Creates, finds and deletes one cluster's cloud resources and nodes.

    Parameters
    ----------
    settings
        The cluster's validated settings.
    token, endpoint
        API credentials (``None``: from the environment / Dask config).  The token goes
        to the API client only; it is never stored.
    dask_config
        The client's Dask configuration every node gets
        (:func:`~scherbelberg_dask.cluster.dask_config_shipping.capture`); stored with the
        cluster's local state on create, read back from it on attach.

    Attributes
    ----------
    ownership
        What closing does to the cluster (:class:`Ownership`).
    nodes
        The nodes that are up, by name.
    failures
        The last error of each node that failed to come up, by name.
    type_errors
        Role → why its new servers cannot be made (attached cluster, retired type).
    """

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        token: str | None,
        endpoint: str | None,
        dask_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.dask_config = dict(dask_config or {})
        self.prefix = settings.prefix
        self.state = StateDir(settings.prefix, base=settings.state_dir)
        self.ownership = Ownership.UNCLAIMED
        self.nodes: dict[str, Node] = {}
        self.failures: dict[str, NodeStartError] = {}
        self._token = token
        self._endpoint = endpoint
        self._cloud: CloudClient | None = None
        # An autonomous cluster's nodes also hold the controller's dependencies (one
        # environment per cluster, so one snapshot serves all its nodes); on attach, the
        # scheduler server's label decides (:meth:`attach`).
        self._environment = NodeEnvironment.local(settings.packages, controller=settings.autonomous)
        self._profile: BootstrapProfile | None = None
        self._images: NodeImages | None = None
        self._resources: ClusterResources | None = None
        #: Role → the server type its new servers get (a retired type's successor).
        self._server_types: dict[str, ServerType] = {}
        self.type_errors: dict[str, CatalogError] = {}
        #: An attached cluster's resolved types, adopted (and warned about) on first use.
        self._attach_resolved: dict[str, Resolution] = {}
        self._secrets: ClusterSecrets | None = None
        self._pins = HostKeyPins(self.state, settings.ssh_port)
        self._contact = SchedulerContact(settings.ports.scheduler)
        self._tasks: dict[str, asyncio.Task[Node]] = {}
        #: When this process created the cluster (an autonomous one's lifetime counts).
        self.created_at = time.time()

    def __repr__(self) -> str:
        return f"<Provisioner {self.prefix} {self.ownership.value}, {len(self.nodes)} nodes>"

    @property
    def cloud(self) -> CloudClient:
        """The API client (made on first use)."""
        if self._cloud is None:
            self._cloud = CloudClient(self._token, self._endpoint)
        return self._cloud

    @property
    def profile(self) -> BootstrapProfile:
        """The bootstrap profile of the cluster's image (known once created or attached)."""
        if self._profile is None:
            raise RuntimeError(f"cluster {self.prefix!r} is neither created nor attached yet")
        return self._profile

    # -- creating and attaching --------------------------------------------------------

    async def validate(self) -> None:
        """Check types, image and location against the live catalog (before creating).

        Retired types resolve to their successors (or fail, per ``retired_types``); each
        replaced type is logged once, however many roles asked for it.
        """
        catalog = await self.cloud.catalog()
        s = self.settings
        catalog.location(s.location)
        resolved = {role: self._resolve(catalog, role) for role in ("scheduler", "worker")}
        for resolution in resolved.values():
            catalog.image(s.image, resolution.server_type.architecture)
        self._use_profile(profile_for_image(s.image, self._environment), s.image)
        self._adopt(resolved)

    def _use_profile(self, profile: BootstrapProfile, image: str) -> None:
        self._profile = profile
        self._images = NodeImages(
            cloud=lambda: self.cloud,
            profile=profile,
            base_image=image,
            enabled=self.settings.snapshot,
            make_job=self._builder_job,
        )

    def _requested_type(self, role: str) -> str:
        return self.settings.scheduler_type if role == "scheduler" else self.settings.worker_type

    def _resolve(self, catalog: Catalog, role: str) -> Resolution:
        """What ``role``'s type resolves to; CatalogError names the role's setting."""
        s = self.settings
        try:
            return resolve_server_type(
                catalog, self._requested_type(role), s.location, s.retired_types
            )
        except CatalogError as exc:
            raise CatalogError(f"{role}_type: {exc}") from None

    def _adopt(
        self, resolved: dict[str, Resolution], warn: tuple[str, ...] = ("scheduler", "worker")
    ) -> None:
        """Use the resolved types; warn once per replaced type of the roles in ``warn``."""
        by_name: dict[str, list[str]] = {}
        for role, resolution in resolved.items():
            self._server_types[role] = resolution.server_type
            self.type_errors.pop(role, None)
            if resolution.replaced and role in warn:
                by_name.setdefault(resolution.requested, []).append(f"{role}_type")
        for name, settings in by_name.items():
            role = next(r for r, res in resolved.items() if res.requested == name)
            logger.warning(resolved[role].warning(" and ".join(settings)))

    def server_type(self, role: str) -> ServerType:
        """The server type new servers of ``role`` get.

        Raises
        ------
        CatalogError
            Attached to a cluster whose type was retired since, and it cannot be replaced
            (no orderable successor, or ``retired_types="error"``).
        """
        self.adopt_attached_types()
        if role in self.type_errors:
            raise self.type_errors[role]
        return self._server_types[role]

    def adopt_attached_types(self) -> None:
        """Use (and warn once about) an attached cluster's resolved worker type.

        Done on first use (:meth:`server_type`), so that the CLI's ``ls`` or ``destroy``,
        which make no servers, do not warn about successors they never use.
        """
        if self._attach_resolved:
            resolved, self._attach_resolved = self._attach_resolved, {}
            # An attached cluster only ever makes new workers: its scheduler exists.
            self._adopt(resolved, warn=("worker",))

    async def check_new(self) -> None:
        """Every check a create makes before it makes anything (also a dry run's).

        Raises
        ------
        CatalogError
            A type, image or location the cloud refuses (see :meth:`validate`).
        ClusterExistsError
            The prefix has resources in the project already.
        """
        await self.validate()
        existing = await find_resources(self.cloud, self.prefix)
        if any(existing.values()):
            raise ClusterExistsError(
                f"cluster {self.prefix!r} already exists: attach to it with "
                f"HetznerCluster.from_existing({self.prefix!r}), or remove it with "
                f"destroy/nuke, or choose another prefix"
            )

    async def create(self) -> None:
        """Make the cluster's secrets and shared cloud resources; this process owns it."""
        await self.check_new()
        self.ownership = Ownership.OWNED
        self.created_at = time.time()
        self._secrets = await ClusterSecrets.create(self.state, self.prefix)
        await asyncio.to_thread(
            self.state.write_metadata,
            {
                "prefix": self.prefix,
                "image": self.settings.image,
                "settings": self.settings.remembered(),
                "dask_config": self.dask_config,
            },
        )
        s = self.settings
        catalog = await self.cloud.catalog()
        logger.info("Creating SSH key, network and firewall of cluster %s ...", self.prefix)
        self._resources = await create_resources(
            self.cloud,
            prefix=self.prefix,
            public_key=self._secrets.authorized_key,
            ip_range=s.network_ip_range,
            network_zone=catalog.location(s.location).network_zone,
            rules=firewall_rules(s.allowed_cidrs, s.ssh_port, s.ports.scheduler),
            timeout=s.timeouts.server,
        )

    async def attach(self) -> list[ServerInfo]:
        """Find the running cluster's resources and nodes; return its servers.

        Raises
        ------
        ClusterNotFoundError
            No cluster of this prefix (or no local state for it on this machine).
        """
        if not self.state.exists():
            raise ClusterNotFoundError(
                f"no local state for cluster {self.prefix!r} in {self.state.path}: "
                "it was not created from this account on this machine"
            )
        self.state.check()
        found = await find_resources(self.cloud, self.prefix)
        servers = [ServerInfo.from_api(s) for s in found["servers"]]
        if not any(s.labels.get(ROLE) == "scheduler" for s in servers):
            raise ClusterNotFoundError(
                f"cluster {self.prefix!r} has no scheduler server; "
                f"if remains are left, remove them with nuke({self.prefix!r})"
            )
        self.ownership = Ownership.ATTACHED
        self._resources = ClusterResources(
            ssh_key_id=found["ssh_keys"][0]["id"] if found["ssh_keys"] else 0,
            network_id=found["networks"][0]["id"] if found["networks"] else 0,
            firewall_id=found["firewalls"][0]["id"] if found["firewalls"] else 0,
        )
        metadata = await asyncio.to_thread(self.state.read_metadata)
        image = str(metadata.get("image", self.settings.image))
        # New nodes get the environment of the cluster's own: with the controller's
        # dependencies if it is autonomous (whatever this handle's settings say: the
        # controller's own handle is not autonomous itself).
        scheduler = next(s for s in servers if s.labels.get(ROLE) == "scheduler")
        self._environment = dataclasses.replace(
            self._environment, controller=scheduler.labels.get(AUTONOMOUS) == "true"
        )
        self.dask_config = dask_config_shipping.recall(metadata)
        self._use_profile(profile_for_image(image, self._environment), image)
        # Its types may have been retired since it was made: existing servers keep running
        # (and can be looked at, scaled down, destroyed); new ones get the successor, or,
        # if there is none to use, fail with the reason before anything is made.
        catalog = await self.cloud.catalog()
        resolved = {}
        for role in ("scheduler", "worker"):
            try:
                resolved[role] = self._resolve(catalog, role)
            except CatalogError as exc:
                self.type_errors[role] = exc
        self._attach_resolved = resolved
        for server in servers:
            if server.labels.get(ROLE) not in ("scheduler", "worker"):
                continue  # an image builder still at work: not a node
            name = server.labels.get(NODE, server.name)
            self.nodes[name] = Node(
                name=name,
                role=server.labels.get(ROLE, "worker"),
                server=server,
                ssh=self.ssh_target(server, self.profile.operator_user, name),
            )
        self._contact.publish(self.nodes["scheduler"].server)
        return servers

    async def refresh_workers(self) -> list[str]:
        """Find the cluster's worker servers again (another process, e.g. an autonomous
        cluster's controller, may have made or deleted some); return their names.

        Nodes whose servers are gone are forgotten; new servers become nodes (their host
        keys are pinned where they were made, not here).
        """
        servers = await self.cloud.find("servers", cluster_selector(self.prefix, "worker"))
        found = {}
        for data in servers:
            server = ServerInfo.from_api(data)
            found[server.labels.get(NODE, server.name)] = server
        for name in [n for n, node in self.nodes.items() if node.role == "worker"]:
            if name not in found and name not in self._tasks:
                del self.nodes[name]
        for name, server in found.items():
            if name not in self.nodes:
                self.nodes[name] = Node(
                    name=name,
                    role="worker",
                    server=server,
                    ssh=self.ssh_target(server, self.profile.operator_user, name),
                )
        return sorted(found)

    # -- nodes -------------------------------------------------------------------------

    def ssh_target(self, server: ServerInfo, user: str, name: str) -> SSHTarget:
        """How to log in to ``server`` as ``user``, with the pinned host key."""
        return SSHTarget(
            host=server.public_ip or "",
            port=self.settings.ssh_port,
            username=user,
            client_key_path=self.state.ssh_key_path,
            known_hosts_path=self.state.known_hosts_path,
            name=name,
        )

    def node_options(self, role: str) -> dict[str, Any]:
        """Dask options for the node runner from the server type and the settings."""
        server_type = self.server_type(role)
        if role == "scheduler":
            return dict(self.settings.scheduler_options)
        return {
            "nthreads": server_type.cores,
            "memory_limit": int(server_type.memory_gb * 2**30 * 0.9),
            **self.settings.worker_options,
        }

    def provision(self, name: str, role: str) -> asyncio.Task[Node]:
        """Start (once) bringing node ``name`` up; the task returns its :class:`Node`.

        A node that is already up (an attached cluster's) is returned as it is.
        """
        task = self._tasks.get(name)
        if task is None:
            task = asyncio.create_task(self._provision(name, role), name=f"provision-{name}")
            # The error is kept in `failures` (and raised to whoever awaits the task); a
            # task nobody awaited (its cluster failed first) must not be reported again.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._tasks[name] = task
        return task

    async def _provision(self, name: str, role: str) -> Node:
        try:
            existing = self.nodes.get(name)
            if existing is not None:
                return existing
            node = await self._bring_up(name, role)
        except NodeStartError as exc:
            self.failures[name] = exc
            raise
        finally:
            self._tasks.pop(name, None)
        self.nodes[name] = node
        return node

    async def _bring_up(self, name: str, role: str) -> Node:
        """One node's server, from a snapshot or the base image; the broken-snapshot rule.

        A server made from a snapshot that fails to boot, or whose SSH never answers with
        its pinned host key, is retried once from the base image (outside the boot
        retries: the snapshot, not the cloud, is suspect), and this handle boots no more
        servers of that environment from snapshots.  If the base image's server gets past
        SSH, the snapshot was at fault: it is labelled unusable in the cloud.  A snapshot
        whose environment the setup script refused is labelled likewise.
        """
        refused: list[str] = []
        job = await self._job(name, role, on_snapshot_unusable=refused.append)
        snapshot, images = job.snapshot, self._images
        try:
            node = await provision_node(job)
        except NodeStartError as exc:
            reason = NodeStartError.SNAPSHOT_BROKEN.get(exc.phase)
            if snapshot is None or images is None or reason is None or not exc.discarded:
                raise
            self.failures[name] = exc
            images.distrust(snapshot)
            logger.warning(
                "[%s] Snapshot %d did not come up (%s: %s); retrying once from %s. "
                "This cluster boots no more nodes from snapshots of environment %s.",
                name,
                snapshot.id,
                reason,
                exc,
                images.base_image,
                snapshot.key[:12],
            )
            job = await self._job(name, role)
            try:
                node = await provision_node(job)
            except NodeStartError as again:
                if again.phase not in NodeStartError.TRANSIENT:  # it got past SSH
                    await images.mark_unusable(snapshot, reason)
                raise
            await images.mark_unusable(snapshot, reason)
        else:
            if refused and snapshot is not None and images is not None:
                await images.mark_unusable(snapshot, environment_reason(refused[0]))
        if images is not None:
            images.node_up(self.server_type(role), job.snapshot)
        return node

    async def _job(
        self,
        name: str,
        role: str,
        *,
        on_snapshot_unusable: Callable[[str], None] | None = None,
    ) -> NodeJob:
        """What node ``name`` is: its create request, keys, files and contract."""
        if self._resources is None or self._profile is None:
            raise RuntimeError(f"cluster {self.prefix!r} is neither created nor attached yet")
        if self._secrets is None:
            self._secrets = await ClusterSecrets.load(self.state)
        profile, resources, settings = self._profile, self._resources, self.settings
        server_name = f"{self.prefix}-node-{name}"
        # An autonomous cluster's controller is installed by the process that creates it.
        controller = (
            settings.autonomous and role == "scheduler" and self.ownership is Ownership.OWNED
        )
        host_key, user_data = await asyncio.to_thread(
            make_user_data, profile, server_name, self._secrets.authorized_key, controller
        )
        image: str = settings.image
        snapshot: Snapshot | None = None
        if self._images is not None:
            image, snapshot = await self._images.image_for(self.server_type(role))
        spec = ServerSpec(
            name=server_name,
            server_type=self.server_type(role).name,
            image=image,
            location=settings.location,
            labels={
                **cluster_labels(self.prefix, role, name),
                **({AUTONOMOUS: "true"} if controller else {}),
            },
            user_data=user_data,
            ssh_key_ids=(resources.ssh_key_id,),
            network_ids=(resources.network_id,),
            firewall_ids=(resources.firewall_id,),
        )

        def node_config(server: ServerInfo, scheduler_address: str) -> NodeConfig:
            private_ip = server.private_ips[0] if server.private_ips else server.public_ip
            ports = settings.ports
            return NodeConfig(
                role=role,
                name=name,
                public_ip=server.public_ip,
                private_ip=private_ip,
                listen=tuple(ip for ip in (server.public_ip, *server.private_ips[:1]) if ip),
                scheduler_address=scheduler_address,
                ports=NodePorts(ports.scheduler, ports.dashboard, ports.nanny),
                env=dict(settings.env_vars),
                options=self.node_options(role),
                dask_config=self.dask_config,
            )

        def on_booted(server: ServerInfo) -> None:
            if role == "scheduler":  # booted: workers may now learn where it is
                self._contact.publish(server)

        return NodeJob(
            name=name,
            role=role,
            spec=spec,
            host_key=host_key,
            cloud=self.cloud,
            profile=profile,
            pins=self._pins,
            target=lambda server, user: self.ssh_target(server, user, name),
            node_config=node_config,
            tls_files=await self._secrets.node_tls(server_name),
            scheduler_address=self._contact.wait,
            on_booted=on_booted,
            timeouts=settings.timeouts,
            after_setup=self._controller_installer(name) if controller else None,
            snapshot=snapshot,
            on_snapshot_unusable=on_snapshot_unusable,
        )

    def _controller_installer(
        self, name: str
    ) -> Callable[[SSHConnection, ServerInfo], Awaitable[None]]:
        """Installs the controller of an autonomous cluster on its scheduler node."""
        from scherbelberg_dask.controller.install import controller_files

        async def install(conn: SSHConnection, server: ServerInfo) -> None:
            s = self.settings
            files = await asyncio.to_thread(
                controller_files,
                self.state,
                endpoint=config.api_endpoint(self._endpoint),
                created=self.created_at,
                interval=float(config.get("controller.interval")),
                idle_timeout=s.idle_timeout,
                max_lifetime=s.max_lifetime,
            )

            async def connect_as(user: str) -> SSHConnection:
                target = self.ssh_target(server, user, name)
                return await connect(target, timeout=s.timeouts.ssh)

            logger.info(
                "[%s] Installing the controller of autonomous cluster %s ...", name, self.prefix
            )
            await self.profile.install_controller(
                conn, connect_as, files=files, token=config.api_token(self._token) or ""
            )

        return install

    async def _builder_job(self, key: SnapshotKey, server_type: ServerType) -> BuilderJob:
        """The image builder of ``key``: the cluster's SSH key and firewall, no network."""
        if self._resources is None or self._secrets is None or self._images is None:
            raise RuntimeError(f"cluster {self.prefix!r} is neither created nor attached yet")
        # Its own name: another process's builder of the same cluster is not adopted.
        server_name = f"{self.prefix}-{BUILDER}-{secrets.token_hex(2)}"
        host_key, user_data = await asyncio.to_thread(
            make_user_data, self.profile, server_name, self._secrets.authorized_key
        )
        return BuilderJob(
            key=key,
            spec=ServerSpec(
                name=server_name,
                server_type=server_type.name,
                image=self._images.base_image,
                location=self.settings.location,
                labels=cluster_labels(self.prefix, BUILDER, BUILDER),
                user_data=user_data,
                ssh_key_ids=(self._resources.ssh_key_id,),
                firewall_ids=(self._resources.firewall_id,),
            ),
            host_key=host_key,
            cloud=self.cloud,
            profile=self.profile,
            pins=self._pins,
            target=lambda server, user: self.ssh_target(server, user, BUILDER),
            timeouts=self.settings.timeouts,
            made_by={MADE_BY: self.prefix},
        )

    @property
    def snapshot_pending(self) -> bool:
        """True while a snapshot of the environment is being made."""
        return self._images is not None and self._images.pending

    async def snapshot_ready(self) -> Snapshot | None:
        """The snapshot of the environment being made in the background, once done.

        None if none is being made (snapshots off, the image's profile makes none, one
        existed already) or making it failed (logged).
        """
        return None if self._images is None else await self._images.wait()

    async def delete(self, name: str) -> None:
        """Stop bringing node ``name`` up, or delete its server; forget it."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        node = self.nodes.pop(name, None)
        if node is None or self._cloud is None:
            return
        logger.info("Deleting %s ...", node.server_name)
        await self._cloud.delete_server(
            node.server.id,
            timeout=self.settings.timeouts.delete,
            what=f"deleting {node.server_name}",
        )
        await self._pins.unpin(server_hosts(node.server))

    async def node_log(self, name: str, lines: int = 200) -> str:
        """The tail of node ``name``'s setup and Dask service logs, read over SSH."""
        node = self.nodes.get(name)
        if node is None:
            raise NodeNotFoundError(
                f"cluster {self.prefix!r} has no node {name!r}; "
                f"nodes: {', '.join(sorted(self.nodes))}"
            )
        async with await connect(node.ssh, timeout=30) as conn:
            return await self.profile.log_tail(conn, role=node.role, lines=lines)

    # -- ending ------------------------------------------------------------------------

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def destroy(self) -> dict[str, int]:
        """Delete every labelled resource of this cluster and its local state."""
        await self._cancel_tasks()
        if self._images is not None:
            await self._images.close()
        deleted = await destroy_cluster(
            self.cloud, self.prefix, self.state, timeout=self.settings.timeouts.delete
        )
        self.nodes.clear()
        return deleted

    async def release(self, *, finish_snapshot: bool = False) -> None:
        """End this process's hold: destroy the cluster if it owns it; close the client.

        ``finish_snapshot``: a snapshot still being made is waited for first, at most
        ``snapshot_close_wait`` (a normal close, whose nodes are gone already); else, or
        once that wait is over or interrupted, it is stopped (its builder deleted).  An
        interrupted wait still deletes the cluster, then the interruption goes on.
        """
        interrupted: BaseException | None = None
        try:
            if self._images is not None:
                limit = self.settings.snapshot_close_wait
                if finish_snapshot and limit and self._images.pending:
                    try:
                        await self._images.finish(limit)
                    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
                        logger.info("Interrupted: stopping the snapshot, deleting the cluster.")
                        interrupted = exc
                await self._images.close()
            if self.ownership is Ownership.OWNED:
                await self.destroy()
        finally:
            await self.close()
        if interrupted is not None:
            raise interrupted

    async def close(self) -> None:
        """Release the API client (no cloud changes).

        Node starts still under way are not stopped: a worker that already serves an
        attached cluster must not lose its server because one handle went away.
        """
        if self._cloud is not None:
            await self._cloud.close()
            self._cloud = None
