"""``destroy``, ``nuke`` and ``scale``: change or remove a running cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from scherbelberg_dask.cli import progress
from scherbelberg_dask.cli.common import (
    AddParser,
    add_retired_types,
    attached,
    close_cluster,
    plural,
    prefix_of,
    require_operator,
)
from scherbelberg_dask.errors import SettingsError

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``destroy``, ``nuke`` and ``scale`` verbs."""
    destroy = add_parser(
        "destroy",
        parents=parents,
        help="delete a cluster: its servers, network, firewall, key and local state",
        description=(
            "Delete every cloud resource of a cluster created on this machine, and its "
            "local state (keys, certificates). Works while Dask is down."
        ),
    )
    destroy.set_defaults(run=run_destroy)

    nuke = add_parser(
        "nuke",
        parents=parents,
        help="delete every labelled remain of a cluster, even when nothing else works",
        description=(
            "Delete every resource labelled with the cluster's prefix, and its local state, "
            "without needing the local state or a working cluster (e.g. after a failed "
            "create or a lost laptop). Touches no other cluster; safe to repeat. The "
            "environment snapshots its image builder made stay (they belong to no cluster) "
            "unless --images is given."
        ),
    )
    nuke.add_argument(
        "--images",
        action="store_true",
        help="also delete the environment snapshots this cluster made (see `images`)",
    )
    nuke.set_defaults(run=run_nuke)

    scale = add_parser(
        "scale",
        parents=parents,
        help="change the number of workers",
        description=(
            "Add or remove workers and wait until the change is done. Removed workers hand "
            "their data to the others before their servers are deleted. New workers of a "
            "server type retired since the cluster was made get its successor."
        ),
    )
    scale.add_argument("workers", metavar="N", type=int, help="number of workers wanted")
    add_retired_types(scale, attached=True)
    scale.set_defaults(run=run_scale)


_NOUNS = {
    "servers": "server",
    "firewalls": "firewall",
    "networks": "network",
    "ssh_keys": "SSH key",
    "snapshots": "snapshot",
}


def _summary(deleted: dict[str, int]) -> str:
    """``2 servers, 1 firewall, ...`` from the counts ``destroy``/``nuke`` return."""
    return ", ".join(
        plural(count, _NOUNS.get(kind, kind.replace("_", " "))) for kind, count in deleted.items()
    )


# -- destroy ----------------------------------------------------------------------------


def run_destroy(args: argparse.Namespace) -> int:
    """Destroy the cluster; return the exit status."""
    prefix = prefix_of(args)
    deleted = asyncio.run(_destroy(prefix))
    logger.info("Cluster %s destroyed.", prefix)
    print(f"cluster {prefix} destroyed: deleted {_summary(deleted)}")
    return 0


async def _destroy(prefix: str) -> dict[str, int]:
    async with attached(prefix) as provisioner:
        require_operator(provisioner, "destroy")
        logger.info("Destroying cluster %s (%d servers) ...", prefix, len(provisioner.nodes))
        async with progress.tracking(f"destroying cluster {prefix}", None, lambda: 0):
            return await provisioner.destroy()


# -- nuke -------------------------------------------------------------------------------


def run_nuke(args: argparse.Namespace) -> int:
    """Nuke the cluster's remains; return the exit status."""
    prefix = prefix_of(args)
    deleted = asyncio.run(_nuke(prefix, images=args.images))
    print(f"cluster {prefix} nuked: deleted {_summary(deleted)}")
    return 0


async def _nuke(prefix: str, *, images: bool = False) -> dict[str, int]:
    from scherbelberg_dask.cluster.nuke import nuke_async
    from scherbelberg_dask.state import StateDir
    from scherbelberg_dask.state.access import DASK, AccessError, access_of

    state = StateDir(prefix)
    if await asyncio.to_thread(access_of, state) == DASK:
        # Given Dask-only access here: do not delete the cluster by its labels either.
        raise AccessError(
            f"cannot nuke cluster {prefix!r}: this machine was given Dask-only access to it; "
            f"to drop that access, delete {state.path}"
        )

    async with progress.tracking(f"nuking cluster {prefix}", None, lambda: 0):
        deleted = await nuke_async(prefix)
    if images:
        deleted["snapshots"] = await _delete_snapshots(prefix)
    return deleted


async def _delete_snapshots(prefix: str) -> int:
    """Delete the environment snapshots cluster ``prefix``'s image builder made."""
    from scherbelberg_dask.cloud.client import CloudClient
    from scherbelberg_dask.cloud.snapshots import KIND, MADE_BY, SNAPSHOT, list_snapshots

    cloud = CloudClient()
    try:
        made = await list_snapshots(cloud, f"{SNAPSHOT}={KIND},{MADE_BY}={prefix}")
        for snapshot in made:
            await cloud.delete("images", snapshot.id)
        return len(made)
    finally:
        await cloud.close()


# -- scale ------------------------------------------------------------------------------


def run_scale(args: argparse.Namespace) -> int:
    """Scale the cluster; return the exit status."""
    if args.workers < 0:
        raise SettingsError(f"N must be a whole number ≥ 0, not {args.workers}")
    return asyncio.run(_scale(prefix_of(args), args.workers, args.retired_types))


async def _scale(prefix: str, wanted: int, retired_types: str | None) -> int:
    from scherbelberg_dask.cli.create import finish_snapshot
    from scherbelberg_dask.cluster.cluster import HetznerCluster
    from scherbelberg_dask.state import StateDir
    from scherbelberg_dask.state.access import OPERATOR, require

    # Before connecting to anything: a machine with Dask-only access may not scale.
    await asyncio.to_thread(require, StateDir(prefix), OPERATOR, "scale")
    # Without the option, the cluster's own setting (remembered at create) applies.
    options = {} if retired_types is None else {"retired_types": retired_types}
    cluster = HetznerCluster.from_existing(prefix, asynchronous=True, **options)
    await cluster
    try:
        before = len(cluster.worker_nodes)
        logger.info("Scaling cluster %s from %d to %d workers ...", prefix, before, wanted)
        cluster.scale(wanted)
        async with progress.tracking("workers", wanted, lambda: len(cluster.worker_nodes)):
            await cluster  # starts and stops workers until the spec is met
        after = len(cluster.worker_nodes)
        failures = cluster.failures
        await finish_snapshot(cluster)
    finally:
        await close_cluster(cluster)  # attached: the cluster keeps running
    for name, error in sorted(failures.items()):
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        logger.error("Worker %s did not come up: %s", name, first)
    if after != wanted:
        print(f"error: cluster {prefix} has {after} of {plural(wanted, 'worker')}", file=sys.stderr)
        return 1
    print(f"cluster {prefix} has {plural(after, 'worker')}")
    return 0
