"""``images``: the project's environment snapshots, with size, age and cost; remove them.

Snapshots belong to no cluster (docs/snapshots.md): ``destroy`` and ``nuke`` leave them,
so this verb is where they are seen and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from scherbelberg_dask.cli.common import AddParser, plural, print_json, table
from scherbelberg_dask.errors import SettingsError

if TYPE_CHECKING:
    from scherbelberg_dask.cloud.client import CloudClient
    from scherbelberg_dask.cloud.snapshots import Snapshot

logger = logging.getLogger(__name__)

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``images`` verb with ``rm`` and ``prune``."""
    images = add_parser(
        "images",
        parents=parents,
        help="environment snapshots: size, age, environment and monthly cost; remove them",
        description=(
            "List the snapshots of node environments that clusters boot from (their size, "
            "age, environment and monthly net cost in EUR), remove some (rm), or remove "
            "those older than an age (prune). Snapshots belong to no cluster: destroy and "
            "nuke leave them. A snapshot that failed a node is shown as 'unusable: <why>' "
            "and no cluster boots from it again."
        ),
    )
    images.add_argument("--json", action="store_true", help="print JSON for scripts")
    actions = images.add_subparsers(dest="images_action", metavar="ACTION")
    rm = actions.add_parser("rm", parents=parents, help="remove snapshots by ID")
    rm.add_argument("ids", metavar="ID", type=int, nargs="+", help="snapshot IDs")
    prune = actions.add_parser("prune", parents=parents, help="remove snapshots older than an age")
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        required=True,
        help="an age such as 30m, 12h, 7d or 2w",
    )
    images.set_defaults(run=run_images)


def parse_age(text: str) -> timedelta:
    """``7d`` → 7 days (units m, h, d, w)."""
    match = _AGE.match(text.strip())
    if match is None:
        raise SettingsError(f"--older-than must be an age such as 30m, 12h, 7d or 2w, not {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def _environment(snapshot: Snapshot) -> str:
    labels = snapshot.labels
    parts = [
        labels.get("scherbelberg/base-image", "?"),
        labels.get("scherbelberg/architecture", snapshot.architecture),
        f"py{labels.get('scherbelberg/python', '?')}",
        f"dask {labels.get('scherbelberg/dask', '?')}",
    ]
    extras = labels.get("scherbelberg/extra-packages", "0")
    if extras != "0":
        parts.append(f"+{extras} packages")
    return " ".join(parts)


def summary(snapshot: Snapshot, price: float | None, now: datetime) -> dict[str, Any]:
    """One snapshot's row: ID, size, age, environment, key and monthly net cost.

    ``unusable`` says why no cluster boots from it any more (its ``scherbelberg/unusable``
    label), or is None.
    """
    size = snapshot.image_size
    return {
        "id": snapshot.id,
        "status": snapshot.status,
        "unusable": snapshot.unusable,
        "size_gb": size,
        "age_seconds": (now - snapshot.created).total_seconds(),
        "created": snapshot.created.isoformat(),
        "environment": _environment(snapshot),
        "key": snapshot.key,
        "description": snapshot.description,
        "monthly_net_eur": None if size is None or price is None else size * price,
    }


def run_images(args: argparse.Namespace) -> int:
    """List, remove or prune snapshots; return the exit status."""
    return asyncio.run(_images(args))


async def _images(args: argparse.Namespace) -> int:
    from scherbelberg_dask.cloud.client import CloudClient

    action = getattr(args, "images_action", None)
    older = parse_age(args.older_than) if action == "prune" else None
    cloud = CloudClient()
    try:
        if action == "rm":
            return await _remove(cloud, args.ids)
        if action == "prune":
            assert older is not None
            return await _prune(cloud, older)
        return await _list(cloud, as_json=args.json)
    finally:
        await cloud.close()


async def _list(cloud: CloudClient, *, as_json: bool) -> int:
    from scherbelberg_dask.cloud.snapshots import image_price_per_gb_month, list_snapshots

    snapshots, price = await asyncio.gather(list_snapshots(cloud), image_price_per_gb_month(cloud))
    now = datetime.now(timezone.utc)
    rows = [summary(s, price, now) for s in snapshots]
    if as_json:
        print_json({"price_per_gb_month_net_eur": price, "snapshots": rows})
        return 0
    if not rows:
        print("no environment snapshots")
        return 0
    header = ["ID", "STATUS", "SIZE", "AGE", "ENVIRONMENT", "KEY", "EUR/MONTH"]
    lines = [
        [
            str(r["id"]),
            r["status"] if r["unusable"] is None else f"unusable: {r['unusable']}",
            "-" if r["size_gb"] is None else f"{r['size_gb']:.2f} GB",
            _age(r["age_seconds"]),
            r["environment"],
            r["key"][:12],
            "-" if r["monthly_net_eur"] is None else f"{r['monthly_net_eur']:.4f}",
        ]
        for r in rows
    ]
    print(table(header, lines, right={0, 2, 6}))
    total = sum(r["monthly_net_eur"] or 0.0 for r in rows)
    each = "unknown" if price is None else f"{price:.4f} EUR per GB and month (net)"
    print(f"\n{plural(len(rows), 'snapshot')}, {total:.4f} EUR per month; snapshots cost {each}")
    return 0


async def _remove(cloud: CloudClient, ids: list[int]) -> int:
    from scherbelberg_dask.cloud.snapshots import list_snapshots

    ours = {s.id for s in await list_snapshots(cloud)}
    unknown = [i for i in ids if i not in ours]
    if unknown:
        raise SettingsError(
            f"not an environment snapshot of scherbelberg-dask: {', '.join(map(str, unknown))}; "
            "`images` lists them"
        )
    for image_id in ids:
        await cloud.delete("images", image_id)
        logger.info("Deleted snapshot %d.", image_id)
    print(f"deleted {plural(len(ids), 'snapshot')}")
    return 0


async def _prune(cloud: CloudClient, older: timedelta) -> int:
    from scherbelberg_dask.cloud.snapshots import list_snapshots

    now = datetime.now(timezone.utc)
    old = [s for s in await list_snapshots(cloud) if now - s.created > older]
    for snapshot in old:
        await cloud.delete("images", snapshot.id)
        logger.info(
            "Deleted snapshot %d (%s old).",
            snapshot.id,
            _age((now - snapshot.created).total_seconds()),
        )
    print(f"deleted {plural(len(old), 'snapshot')}")
    return 0
