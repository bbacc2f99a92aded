"""A dry run of ``create``: what a cluster would be made of and what it would cost.

:func:`plan_cluster` runs the very checks a real create runs before it makes anything
(:meth:`~scherbelberg_dask.cluster.provisioner.Provisioner.check_new`: the live
catalog's types, image and location, and that the prefix is free), and reads the
prices of the resolved server types.  It only reads from the API: nothing is created,
nothing is written locally.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scherbelberg_dask.cluster.provisioner import Provisioner
from scherbelberg_dask.cluster.settings import ClusterSettings

__all__ = ["ClusterPlan", "NodePlan", "plan_cluster"]


@dataclasses.dataclass(frozen=True)
class NodePlan:
    """One server a create would make."""

    name: str
    server_name: str
    role: str
    #: The type asked for; differs from ``server_type`` when a retired type was replaced.
    requested_type: str
    server_type: str
    cores: int
    memory_gb: float
    hourly_eur: float
    monthly_eur: float


@dataclasses.dataclass(frozen=True)
class ClusterPlan:
    """Everything a create would make, with net prices in EUR (VAT, IPs, traffic extra)."""

    prefix: str
    location: str
    network_zone: str
    image: str
    nodes: tuple[NodePlan, ...]
    #: The shared resources: SSH key, private network, firewall (names).
    shared: dict[str, str]
    network_ip_range: str
    allowed_cidrs: tuple[str, ...]

    @property
    def hourly_eur(self) -> float:
        """What the cluster costs per started hour."""
        return round(sum(n.hourly_eur for n in self.nodes), 4)

    @property
    def monthly_eur(self) -> float:
        """What a month of it costs at most."""
        return round(sum(n.monthly_eur for n in self.nodes), 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        data = dataclasses.asdict(self)
        data.update(hourly_eur=self.hourly_eur, monthly_eur=self.monthly_eur, created=False)
        return data

    def describe(self) -> str:
        """The plan as a few lines of text for people."""
        lines = [
            f"Cluster {self.prefix} in {self.location} ({self.network_zone}), image {self.image}:"
        ]
        for node in self.nodes:
            replaced = (
                f" (asked for {node.requested_type}, retired)"
                if node.requested_type != node.server_type
                else ""
            )
            lines.append(
                f"  {node.server_name:<32} {node.role:<9} {node.server_type}{replaced}: "
                f"{node.cores} cores, {node.memory_gb:g} GB, "
                f"{node.hourly_eur:.4f} EUR/h, {node.monthly_eur:.2f} EUR/month"
            )
        lines.append(
            f"  {self.shared['ssh_key']}, {self.shared['network']} ({self.network_ip_range}), "
            f"{self.shared['firewall']} (SSH and the scheduler port from "
            f"{', '.join(self.allowed_cidrs)})"
        )
        lines.append(
            f"Price: {self.hourly_eur:.4f} EUR/h, at most {self.monthly_eur:.2f} EUR/month "
            "(net; billed per started hour up to the monthly price; IPs and traffic extra)"
        )
        return "\n".join(lines)


async def plan_cluster(
    settings: ClusterSettings, *, token: str | None = None, endpoint: str | None = None
) -> ClusterPlan:
    """What creating a cluster with ``settings`` would make, validated like a create.

    Raises
    ------
    CatalogError
        A server type, image or location that a create would refuse (the same message).
    ClusterExistsError
        The prefix is taken (as a create would say).
    """
    provisioner = Provisioner(settings, token=token, endpoint=endpoint)
    try:
        await provisioner.check_new()
        catalog = await provisioner.cloud.catalog()
    finally:
        await provisioner.close()
    location = catalog.location(settings.location)
    names = [("scheduler", "scheduler")]
    names += [(f"worker{i:03d}", "worker") for i in range(settings.workers)]
    nodes = []
    for name, role in names:
        server_type = provisioner.server_type(role)
        price = server_type.prices[settings.location]
        requested = settings.scheduler_type if role == "scheduler" else settings.worker_type
        nodes.append(
            NodePlan(
                name=name,
                server_name=f"{settings.prefix}-node-{name}",
                role=role,
                requested_type=requested,
                server_type=server_type.name,
                cores=server_type.cores,
                memory_gb=server_type.memory_gb,
                hourly_eur=price.hourly_net,
                monthly_eur=price.monthly_net,
            )
        )
    prefix = settings.prefix
    return ClusterPlan(
        prefix=prefix,
        location=location.name,
        network_zone=location.network_zone,
        image=settings.image,
        nodes=tuple(nodes),
        shared={
            "ssh_key": f"{prefix}-key",
            "network": f"{prefix}-network",
            "firewall": f"{prefix}-firewall",
        },
        network_ip_range=settings.network_ip_range,
        allowed_cidrs=settings.allowed_cidrs,
    )
