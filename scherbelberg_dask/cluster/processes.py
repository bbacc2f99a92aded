"""Dask ``ProcessInterface``s: one Hetzner server each (DESIGN §1).

They are thin: the work of making a node lives in
:mod:`scherbelberg_dask.cluster.provision`, shared state in the cluster's
:class:`~scherbelberg_dask.cluster.context.ClusterContext`.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.deploy.spec import ProcessInterface

from scherbelberg_dask import config
from scherbelberg_dask.cluster.context import ClusterContext
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.provision import NodeStartError

logger = logging.getLogger(__name__)


class HetznerNode(ProcessInterface):
    """A Dask process on its own Hetzner server.

    Parameters
    ----------
    context
        The cluster's shared context.
    name
        The node's name (``scheduler``, ``worker000``, ...); also the Dask worker name.
    """

    role = "node"

    def __init__(self, *, context: ClusterContext, name: str, **kwargs: Any) -> None:
        super().__init__()
        self.context = context
        self.name = name
        self.node: Node | None = None

    async def start(self) -> None:
        """Create and set up the server, unless the cluster already has it (attached)."""
        self.node = self.context.nodes.get(self.name)
        if self.node is None:
            self.node = await self.context.provision(self.name, self.role)
        self._addresses(self.node)
        await super().start()

    def _addresses(self, node: Node) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Delete the server (only if this process owns the cluster)."""
        await self.context.delete_node(self.name)
        await super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: status={self.status.name}>"


class HetznerScheduler(HetznerNode):
    """The Dask scheduler's server.

    The scheduler listens with mutual TLS on its public address (for clients) and its
    private address (for workers, whose traffic stays on the private network).
    """

    role = "scheduler"

    def __init__(self, *, context: ClusterContext, **kwargs: Any) -> None:
        super().__init__(context=context, name="scheduler", **kwargs)

    async def start(self) -> None:
        """Bring the scheduler's server up; a server that fails to boot is replaced.

        At most ``scherbelberg.boot-retries`` more servers are tried (the failed one is
        already deleted, so the name is free again).
        """
        retries = int(config.get("boot-retries"))
        for attempt in range(retries + 1):
            try:
                return await super().start()
            except NodeStartError as exc:
                if attempt == retries or not exc.transient:
                    raise
                logger.error("Scheduler failed to come up; trying a new server: %s", exc)

    def _addresses(self, node: Node) -> None:
        port = self.context.settings.ports.scheduler
        self.address = f"tls://{node.public_ip}:{port}"
        self.external_address = self.address
        self.contact_address = f"tls://{node.private_ip}:{port}"


class HetznerWorker(HetznerNode):
    """A Dask worker (with its nanny) on its own server.

    Parameters
    ----------
    scheduler
        The scheduler's contact address (given by ``SpecCluster``; the node learns it
        from the context).
    """

    role = "worker"

    def __init__(
        self, scheduler: str | None = None, *, context: ClusterContext, name: str, **kwargs: Any
    ) -> None:
        super().__init__(context=context, name=name, **kwargs)
        self.scheduler = scheduler

    def _addresses(self, node: Node) -> None:
        self.address = f"tls://{node.private_ip}:{self.context.settings.ports.scheduler}"

    @property
    def worker_address(self) -> str | None:
        return self.address
