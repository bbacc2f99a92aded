"""A cluster's shared cloud resources: SSH key, private network, firewall.

Each carries the cluster's labels and a seed-compatible name (``<prefix>-key``,
``<prefix>-network``, ``<prefix>-firewall``); they are found by labels, never by name
(docs/design.md, "Cloud").  :func:`destroy_cluster` removes every labelled resource of a
prefix, whatever state it is in, and the local state; it is what ``destroy`` and ``nuke``
run, and it is idempotent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
from typing import Any

from scherbelberg_dask.cloud.client import CloudClient
from scherbelberg_dask.cloud.errors import CloudError
from scherbelberg_dask.cloud.labels import cluster_labels, cluster_selector
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)

#: Resource kinds in the order they must be deleted (servers hold the others).
KINDS = ("servers", "firewalls", "networks", "ssh_keys")
#: Rounds of list-and-delete before giving up on a cluster that keeps growing.
_ROUNDS = 4


@dataclasses.dataclass
class ClusterResources:
    """IDs of a cluster's shared resources."""

    ssh_key_id: int
    network_id: int
    firewall_id: int


def firewall_rules(
    allowed_cidrs: tuple[str, ...], ssh_port: int, scheduler_port: int
) -> list[dict[str, Any]]:
    """Inbound rules: SSH and the scheduler's TLS port, from ``allowed_cidrs`` only.

    With no other inbound rule Hetzner drops everything else that arrives on the public
    interface; Dask traffic between nodes stays on the private network.
    """
    return [
        {
            "direction": "in",
            "protocol": "tcp",
            "port": str(port),
            "source_ips": list(allowed_cidrs),
            "destination_ips": [],
            "description": description,
        }
        for port, description in (
            (ssh_port, "SSH"),
            (scheduler_port, "Dask scheduler (mutual TLS)"),
        )
    ]


async def create_resources(
    cloud: CloudClient,
    *,
    prefix: str,
    public_key: str,
    ip_range: str,
    network_zone: str,
    rules: list[dict[str, Any]],
    timeout: float,
) -> ClusterResources:
    """Create the SSH key, network and firewall of cluster ``prefix`` concurrently."""
    network = ipaddress.ip_network(ip_range)

    async def ssh_key() -> int:
        body = {
            "name": f"{prefix}-key",
            "public_key": public_key,
            "labels": cluster_labels(prefix, "ssh-key"),
        }
        return int((await cloud.create("ssh_keys", body))["ssh_key"]["id"])

    async def private_network() -> int:
        body = {
            "name": f"{prefix}-network",
            "ip_range": str(network),
            "subnets": [{"type": "cloud", "network_zone": network_zone, "ip_range": str(network)}],
            "labels": cluster_labels(prefix, "network"),
        }
        return int((await cloud.create("networks", body))["network"]["id"])

    async def firewall() -> int:
        body = {
            "name": f"{prefix}-firewall",
            "rules": rules,
            "labels": cluster_labels(prefix, "firewall"),
        }
        answer = await cloud.create("firewalls", body)
        actions = [a["id"] for a in answer.get("actions") or []]
        await cloud.wait_actions(actions, timeout=timeout, what=f"firewall {body['name']}")
        return int(answer["firewall"]["id"])

    key_id, network_id, firewall_id = await asyncio.gather(ssh_key(), private_network(), firewall())
    return ClusterResources(key_id, network_id, firewall_id)


async def find_resources(cloud: CloudClient, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every labelled resource of cluster ``prefix``, by kind."""
    found = await asyncio.gather(*(cloud.find(kind, cluster_selector(prefix)) for kind in KINDS))
    return dict(zip(KINDS, found, strict=True))


async def delete_cluster(cloud: CloudClient, prefix: str, *, timeout: float) -> dict[str, int]:
    """Delete every resource labelled as belonging to cluster ``prefix``.

    Servers go first (and are waited for), then firewalls, networks and SSH keys.
    Resources of other clusters are never touched, whatever their names.  A server whose
    create was still under way when the listing was made (an interrupted start) is caught
    by listing again until nothing is left, a few rounds at most.  Returns how many
    resources of each kind were deleted.
    """
    deleted = dict.fromkeys(KINDS, 0)
    for _ in range(_ROUNDS):
        resources = await find_resources(cloud, prefix)
        if not any(resources.values()):
            break
        gone = await asyncio.gather(
            *(
                cloud.delete_server(s["id"], timeout=timeout, what=f"servers of cluster {prefix!r}")
                for s in resources["servers"]
            )
        )
        deleted["servers"] += sum(gone)
        for kind in KINDS[1:]:
            results = await asyncio.gather(
                *(cloud.delete(kind, r["id"]) for r in resources[kind]), return_exceptions=True
            )
            deleted[kind] += sum(
                1 for r in results if r is not None and not isinstance(r, BaseException)
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors and not all(getattr(e, "code", None) == "resource_in_use" for e in errors):
                raise errors[0]
    else:
        left = await find_resources(cloud, prefix)
        if any(left.values()):
            counts = ", ".join(f"{len(v)} {k}" for k, v in left.items() if v)
            raise CloudError(
                f"cluster {prefix!r} still has {counts} after deleting; run nuke again"
            )
    for kind, count in deleted.items():
        if count:
            logger.info("Deleted %d %s of cluster %s", count, kind.replace("_", " "), prefix)
    return deleted


async def destroy_cluster(
    cloud: CloudClient, prefix: str, state: StateDir, *, timeout: float
) -> dict[str, int]:
    """Delete every labelled resource of cluster ``prefix``, then its local state.

    Returns how many resources of each kind were deleted.
    """
    deleted = await delete_cluster(cloud, prefix, timeout=timeout)
    if state.exists():
        await asyncio.to_thread(state.remove)
    return deleted
