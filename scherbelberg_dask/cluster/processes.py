r"""Dask ``ProcessInterface``\ s: one Hetzner server each (docs/design.md, "Processes").

They are thin: the provisioner brings their server up and deletes it.  What they add is
Dask's view of a node (its addresses) and the boot retries: a node whose server failed
to come up for a reason of the cloud's gets a new server, under the same name.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.deploy.spec import ProcessInterface

from scherbelberg_dask.cluster.node import Node, dask_address
from scherbelberg_dask.cluster.provision import NodeStartError
from scherbelberg_dask.cluster.provisioner import Provisioner

logger = logging.getLogger(__name__)


class HetznerNode(ProcessInterface):
    """A Dask process on its own Hetzner server.

    Parameters
    ----------
    provisioner
        The cluster's provisioner.
    name
        The node's name (``scheduler``, ``worker000``, ...); also the Dask worker name.
    """

    role = "node"

    def __init__(self, *, provisioner: Provisioner, name: str, **kwargs: Any) -> None:
        super().__init__()
        self.provisioner = provisioner
        self.name = name
        self.node: Node | None = None

    async def start(self) -> None:
        """Bring the node's server up (unless the cluster already has it: attached).

        A server that fails to come up has already been deleted; if the cloud was at
        fault (create, boot, SSH), a new one is tried, at most
        ``scherbelberg.boot-retries`` more times.  A failure of the node itself (setup,
        Dask) would repeat on any server and is raised at once.
        """
        retries = self.provisioner.settings.boot_retries
        for attempt in range(retries + 1):
            try:
                self.node = await self.provisioner.provision(self.name, self.role)
                break
            except NodeStartError as exc:
                if attempt == retries or not exc.transient:
                    raise
                logger.error("%s failed to come up; trying a new server: %s", self.name, exc)
        assert self.node is not None
        self._set_addresses(self.node)
        await super().start()

    def _set_addresses(self, node: Node) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Delete the server.

        Only scale-down and the close of an owning cluster close nodes (an attached
        cluster's ``close`` leaves them alone), so an attached cluster that scales down
        deletes the servers it retired.
        """
        await self.provisioner.delete(self.name)
        await super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: status={self.status.name}>"


class HetznerScheduler(HetznerNode):
    """The Dask scheduler's server.

    The scheduler listens with mutual TLS on its public address (for clients) and its
    private address (for workers, whose traffic stays on the private network).
    """

    role = "scheduler"

    def __init__(self, *, provisioner: Provisioner, **kwargs: Any) -> None:
        super().__init__(provisioner=provisioner, name="scheduler", **kwargs)

    def _set_addresses(self, node: Node) -> None:
        port = self.provisioner.settings.ports.scheduler
        self.address = dask_address(node.public_ip, port)
        self.external_address = self.address
        self.contact_address = dask_address(node.private_ip, port)


class HetznerWorker(HetznerNode):
    """A Dask worker (with its nanny) on its own server.

    Parameters
    ----------
    scheduler
        The scheduler's contact address (given by ``SpecCluster``; the node learns it
        from the provisioner).
    """

    role = "worker"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        provisioner: Provisioner,
        name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(provisioner=provisioner, name=name, **kwargs)
        self.scheduler = scheduler

    def _set_addresses(self, node: Node) -> None:
        self.address = dask_address(node.private_ip, self.provisioner.settings.ports.scheduler)

    @property
    def worker_address(self) -> str | None:
        return self.address
