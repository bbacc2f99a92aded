"""Deleting an autonomous cluster from its own scheduler node, that server last.

The order matters because the controller runs on the server it deletes: the workers go
first (and are waited for), then the SSH key, the network (the scheduler detached from
it first) and the firewall (taken off the scheduler first), and only then the
scheduler's own server, whose deletion ends the controller.  Every step is idempotent:
a teardown interrupted by an API error or a restart of the controller is simply run
again (docs/autonomous.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scherbelberg_dask.cloud.client import CloudClient
from scherbelberg_dask.cloud.errors import CloudError
from scherbelberg_dask.cloud.labels import ROLE
from scherbelberg_dask.cluster.resources import find_resources

logger = logging.getLogger(__name__)

#: Error codes of an action whose effect is already there (a teardown run again).
_ALREADY_DONE = ("not_found", "firewall_resource_not_found", "server_not_attached_to_network")


async def _post_action(
    cloud: CloudClient, path: str, body: dict[str, Any], *, timeout: float, what: str
) -> None:
    """POST a server/firewall action and wait for what it started; gone counts as done."""
    try:
        answer = await cloud.request("POST", path, json=body, retry=True)
    except CloudError as exc:
        if exc.code in _ALREADY_DONE:
            return
        raise
    actions = [a["id"] for a in answer.get("actions", [answer.get("action")]) if a]
    if actions:
        await cloud.wait_actions(actions, timeout=timeout, what=what)


async def teardown(cloud: CloudClient, prefix: str, *, timeout: float) -> None:
    """Delete every labelled resource of cluster ``prefix``; the scheduler's server last.

    Returns once the scheduler's deletion was accepted (on a real node the controller is
    gone soon after).

    Raises
    ------
    CloudError
        An API call failed for good; the caller runs the teardown again.
    """
    found = await find_resources(cloud, prefix)
    schedulers = [s for s in found["servers"] if s["labels"].get(ROLE) == "scheduler"]
    others = [s for s in found["servers"] if s not in schedulers]
    logger.warning("Deleting cluster %s: %d workers first.", prefix, len(others))
    await asyncio.gather(
        *(
            cloud.delete_server(s["id"], timeout=timeout, what=f"deleting {s['name']}")
            for s in others
        )
    )
    for server in schedulers:
        for network in found["networks"]:
            await _post_action(
                cloud,
                f"/servers/{server['id']}/actions/detach_from_network",
                {"network": network["id"]},
                timeout=timeout,
                what=f"detaching {server['name']} from its network",
            )
        for firewall in found["firewalls"]:
            await _post_action(
                cloud,
                f"/firewalls/{firewall['id']}/actions/remove_from_resources",
                {"remove_from": [{"type": "server", "server": {"id": server["id"]}}]},
                timeout=timeout,
                what=f"taking firewall {firewall['name']} off {server['name']}",
            )
    for kind in ("ssh_keys", "networks", "firewalls"):
        for resource in found[kind]:
            await cloud.delete(kind, resource["id"])
    leftover = await find_resources(cloud, prefix)
    late = [s for s in leftover["servers"] if s["labels"].get(ROLE) != "scheduler"]
    if late or any(leftover[k] for k in ("ssh_keys", "networks", "firewalls")):
        raise CloudError(f"cluster {prefix!r} grew while it was being deleted; deleting again")
    logger.warning("Deleting cluster %s: its scheduler server, the controller's own, last.", prefix)
    for server in schedulers:
        await cloud.delete("servers", server["id"])
