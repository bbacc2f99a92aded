"""What the processes of one cluster share: settings, cloud client, keys, state, nodes.

The :class:`ClusterContext` is created by :class:`~scherbelberg_dask.HetznerCluster` and
handed to its scheduler and worker process objects.  It makes a cluster's shared cloud
resources, provisions nodes (one task per node, so that the cluster can start worker
servers while the scheduler's server is still booting) and deletes them again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scherbelberg_dask.bootstrap.environment import NodeEnvironment
from scherbelberg_dask.bootstrap.profiles import BootstrapProfile, profile_for_image
from scherbelberg_dask.cloud.catalog import Catalog, ServerType
from scherbelberg_dask.cloud.client import CloudClient, ServerInfo
from scherbelberg_dask.cloud.errors import CatalogError
from scherbelberg_dask.cloud.labels import NODE, ROLE
from scherbelberg_dask.cloud.successors import Resolution, resolve_server_type
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.provision import NodeStartError, provision_node
from scherbelberg_dask.cluster.resources import (
    ClusterResources,
    create_resources,
    delete_cluster,
    find_resources,
    firewall_rules,
)
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.security.tls import ClusterCA
from scherbelberg_dask.ssh import SSHTarget, connect
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)


class ClusterExistsError(ValueError):
    """A cluster of this prefix already has resources in the project."""


class ClusterNotFoundError(LookupError):
    """No cluster of this prefix exists (or its local state is missing)."""


class ClusterContext:
    """Shared state of one cluster's processes.

    Parameters
    ----------
    settings
        The cluster's validated settings.
    token, endpoint
        API credentials (``None``: from the environment / Dask config).
    """

    def __init__(
        self, settings: ClusterSettings, *, token: str | None, endpoint: str | None
    ) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self._token = token
        self._endpoint = endpoint
        self.state = StateDir(settings.prefix, base=settings.state_dir)
        self.environment = NodeEnvironment.local(settings.packages)
        self.cloud: CloudClient | None = None
        self.resources: ClusterResources | None = None
        self.profile: BootstrapProfile | None = None
        #: Role → the server type its new servers get (a retired type's successor).
        self.server_types: dict[str, ServerType] = {}
        #: Role → why its new servers cannot be made (attached cluster, retired type).
        self.type_errors: dict[str, CatalogError] = {}
        self.nodes: dict[str, Node] = {}
        self.failures: dict[str, NodeStartError] = {}
        #: True if this process created the cluster (close deletes it); False if attached.
        self.owner = False
        self._tasks: dict[str, asyncio.Task[Node]] = {}
        self._scheduler_contact: asyncio.Future[str] | None = None
        #: known_hosts is read-modify-write: one update at a time.
        self._known_hosts_lock = asyncio.Lock()
        #: An attached cluster's resolved types, adopted (and warned about) on first use.
        self._attach_resolved: dict[str, Resolution] = {}
        #: The cluster's public SSH key (what nodes authorize) and CA, kept in memory.
        self.authorized_key: str | None = None
        self._ca: ClusterCA | None = None

    # -- opening -----------------------------------------------------------------------

    async def _open_cloud(self) -> CloudClient:
        if self.cloud is None:
            self.cloud = CloudClient(self._token, self._endpoint)
        return self.cloud

    async def validate(self) -> None:
        """Check types, image and location against the live catalog (before creating).

        Retired types resolve to their successors (or fail, per ``retired_types``); each
        replaced type is logged once, however many roles asked for it.
        """
        cloud = await self._open_cloud()
        catalog = await cloud.catalog()
        s = self.settings
        catalog.location(s.location)
        resolved = {role: self._resolve(catalog, role) for role in ("scheduler", "worker")}
        for resolution in resolved.values():
            catalog.image(s.image, resolution.server_type.architecture)
        self.profile = profile_for_image(s.image, self.environment)
        self._adopt(resolved)

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
            self.server_types[role] = resolution.server_type
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
        return self.server_types[role]

    async def create(self) -> None:
        """Make the cluster's local secrets and shared cloud resources."""
        cloud = await self._open_cloud()
        await self.validate()
        existing = await find_resources(cloud, self.prefix)
        if any(existing.values()):
            raise ClusterExistsError(
                f"cluster {self.prefix!r} already exists: attach to it with "
                f"HetznerCluster.from_existing({self.prefix!r}), or remove it with "
                f"destroy/nuke, or choose another prefix"
            )
        self.owner = True
        ssh_key, ca = await asyncio.to_thread(self._make_secrets)
        self.authorized_key = ssh_key.public_openssh
        self._ca = ca
        catalog = await cloud.catalog()
        s = self.settings
        logger.info("Creating SSH key, network and firewall of cluster %s ...", self.prefix)
        self.resources = await create_resources(
            cloud,
            prefix=self.prefix,
            public_key=ssh_key.public_openssh,
            ip_range=s.network_ip_range,
            network_zone=catalog.location(s.location).network_zone,
            rules=firewall_rules(s.allowed_cidrs, s.ssh_port, s.ports.scheduler),
            timeout=s.timeouts.server,
        )

    def _make_secrets(self) -> tuple[SSHKeyPair, ClusterCA]:
        """Generate and store the cluster's SSH key and CA (blocking: run in a thread)."""
        self.state.ensure()
        ssh_key = SSHKeyPair.generate(f"{self.prefix}-key")
        self.state.save_ssh_key(ssh_key)
        ca = ClusterCA.create(self.prefix)
        self.state.save_ca(ca)
        self.state.save_client_cert(ca.issue("client", server=False))
        self.state.write_metadata({"prefix": self.prefix, "image": self.settings.image})
        return ssh_key, ca

    async def pin_host(self, server: ServerInfo, public_key: str) -> None:
        """Pin ``server``'s host key for all its addresses in the cluster's known_hosts."""
        hosts = [ip for ip in (server.public_ip, *server.private_ips) if ip]
        async with self._known_hosts_lock:
            await asyncio.to_thread(
                self.state.set_known_host, hosts, self.settings.ssh_port, public_key
            )

    async def unpin_host(self, server: ServerInfo) -> None:
        """Drop a deleted server's pinned host key."""
        async with self._known_hosts_lock:
            await asyncio.to_thread(self.forget_host, server)

    async def attach(self) -> list[ServerInfo]:
        """Find the running cluster's resources and nodes; return its servers."""
        cloud = await self._open_cloud()
        if not self.state.exists():
            raise ClusterNotFoundError(
                f"no local state for cluster {self.prefix!r} in {self.state.path}: "
                "it was not created from this account on this machine"
            )
        self.state.check()
        found = await find_resources(cloud, self.prefix)
        servers = [ServerInfo.from_api(s) for s in found["servers"]]
        if not any(s.labels.get(ROLE) == "scheduler" for s in servers):
            raise ClusterNotFoundError(
                f"cluster {self.prefix!r} has no scheduler server; "
                f"if remains are left, remove them with nuke({self.prefix!r})"
            )
        self.resources = ClusterResources(
            ssh_key_id=found["ssh_keys"][0]["id"] if found["ssh_keys"] else 0,
            network_id=found["networks"][0]["id"] if found["networks"] else 0,
            firewall_id=found["firewalls"][0]["id"] if found["firewalls"] else 0,
        )
        metadata = self.state.read_metadata()
        image = str(metadata.get("image", self.settings.image))
        self.profile = profile_for_image(image, self.environment)
        # Its types may have been retired since it was made: existing servers keep running
        # (and can be looked at, scaled down, destroyed); new ones get the successor, or,
        # if there is none to use, fail with the reason before anything is made.
        catalog = await cloud.catalog()
        resolved = {}
        for role in ("scheduler", "worker"):
            try:
                resolved[role] = self._resolve(catalog, role)
            except CatalogError as exc:
                self.type_errors[role] = exc
        self._attach_resolved = resolved
        for server in servers:
            node_name = server.labels.get(NODE, server.name)
            self.nodes[node_name] = self._node(node_name, server)
        self.set_scheduler_contact(self.nodes["scheduler"].server)
        return servers

    # -- nodes -------------------------------------------------------------------------

    def _node(self, name: str, server: ServerInfo) -> Node:
        assert self.profile is not None
        return Node(
            name=name,
            role=server.labels.get(ROLE, "worker"),
            server=server,
            ssh=self.ssh_target(server, self.profile.operator_user, name),
        )

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

    def scheduler_contact(self) -> asyncio.Future[str]:
        """Future of the address workers use to reach the scheduler (its private IP)."""
        if self._scheduler_contact is None:
            self._scheduler_contact = asyncio.get_running_loop().create_future()
        return self._scheduler_contact

    def set_scheduler_contact(self, server: ServerInfo) -> None:
        """Tell waiting workers the scheduler's private address (known once it exists)."""
        contact = self.scheduler_contact()
        if not contact.done() and server.private_ips:
            contact.set_result(f"tls://{server.private_ips[0]}:{self.settings.ports.scheduler}")

    def node_files(self, name: str) -> dict[str, bytes]:
        """TLS files for a node: the cluster CA and a certificate of its own.

        On a machine given operator access without the CA's private key (an access
        bundle), every node it starts gets the bundle's CA-signed node certificate.
        """
        if self._ca is None and not self.state.has(StateDir.CA_KEY):
            from scherbelberg_dask.state.bundle import load_node_cert

            shared = load_node_cert(self.state)
            return {
                "tls/ca.pem": self.state.read_bytes(StateDir.CA_CERT),
                "tls/node.pem": shared.cert_pem,
                "tls/node.key": shared.key_pem,
            }
        if self._ca is None:
            self._ca = self.state.load_ca()
        ca = self._ca
        pair = ca.issue(f"{self.prefix}-{name}")
        return {
            "tls/ca.pem": ca.cert_pem,
            "tls/node.pem": pair.cert_pem,
            "tls/node.key": pair.key_pem,
        }

    def provision(self, name: str, role: str) -> asyncio.Task[Node]:
        """Start (once) creating and setting up node ``name``; the task returns the Node."""
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
            node = await provision_node(self, name, role)
        except NodeStartError as exc:
            self.failures[name] = exc
            raise
        finally:
            self._tasks.pop(name, None)
        self.nodes[name] = node
        return node

    def adopt_attached_types(self) -> None:
        """Use (and warn once about) an attached cluster's resolved worker type.

        Done on first use (:meth:`server_type`), so that the CLI's ``ls`` or ``destroy``,
        which make no servers, do not warn about successors they never use.
        """
        if self._attach_resolved:
            resolved, self._attach_resolved = self._attach_resolved, {}
            # An attached cluster only ever makes new workers: its scheduler exists.
            self._adopt(resolved, warn=("worker",))

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

    async def delete_node(self, name: str) -> None:
        """Delete node ``name``'s server and forget it.

        Only scale-down and the close of an owning cluster close nodes (an attached
        cluster's ``close`` leaves them alone), so an attached cluster that scales down
        deletes the servers it retired.
        """
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        node = self.nodes.pop(name, None)
        if node is None or self.cloud is None:
            return
        logger.info("Deleting %s ...", node.server_name)
        answer = await self.cloud.delete("servers", node.server.id)
        if answer and answer.get("action"):
            await self.cloud.wait_actions(
                [answer["action"]["id"]],
                timeout=self.settings.timeouts.delete,
                what=f"deleting {node.server_name}",
            )
        await self.unpin_host(node.server)

    def forget_host(self, server: ServerInfo) -> None:
        """Drop a deleted server's pinned host key (blocking; see :meth:`unpin_host`)."""
        hosts = [ip for ip in (server.public_ip, *server.private_ips) if ip]
        if hosts and self.state.exists():
            self.state.remove_known_host(hosts, self.settings.ssh_port)

    async def node_log(self, name: str, lines: int = 200) -> str:
        """The tail of node ``name``'s setup and Dask service logs, read over SSH."""
        node = self.nodes.get(name)
        if node is None:
            raise LookupError(
                f"cluster {self.prefix!r} has no node {name!r}; "
                f"nodes: {', '.join(sorted(self.nodes))}"
            )
        assert self.profile is not None
        async with await connect(node.ssh, timeout=30) as conn:
            return await self.profile.log_tail(conn, role=node.role, lines=lines)

    # -- closing -----------------------------------------------------------------------

    async def destroy(self) -> dict[str, int]:
        """Delete every labelled resource of this cluster and its local state."""
        cloud = await self._open_cloud()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        deleted = await delete_cluster(cloud, self.prefix, timeout=self.settings.timeouts.delete)
        self.nodes.clear()
        self.state.remove()
        return deleted

    async def close(self) -> None:
        """Release the API client (no cloud changes)."""
        if self.cloud is not None:
            await self.cloud.close()
            self.cloud = None
