"""``ls`` without ``--prefix``: every cluster of the Hetzner project, found by labels.

Works on a machine without local state: the clusters are the values of the
``scherbelberg/cluster`` label on the project's servers, networks, firewalls and SSH
keys (DESIGN §4).  Each row says what the cluster costs and what this machine may do
with it (:func:`~scherbelberg_dask.state.access.access_of`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scherbelberg_dask.cli.common import PROG, print_json, table
from scherbelberg_dask.cli.inspect import _uptime, billed_cost
from scherbelberg_dask.cloud.labels import AUTONOMOUS, CLUSTER, DELETE_AT, IDLE_SINCE, ROLE
from scherbelberg_dask.cluster.resources import KINDS

if TYPE_CHECKING:
    from scherbelberg_dask.cloud.catalog import Catalog
    from scherbelberg_dask.cloud.client import CloudClient, ServerInfo

#: What ``ACCESS`` says for each access level (and for no local state).
_ACCESS_TEXT = {"owner": "yes (owner)", "operator": "yes (operator)", "dask": "dask only"}


async def find_clusters(cloud: CloudClient) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every labelled resource of the project, by cluster prefix, then by kind."""
    found = await asyncio.gather(*(cloud.find(kind, CLUSTER) for kind in KINDS))
    clusters: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for kind, items in zip(KINDS, found, strict=True):
        for item in items:
            prefix = (item.get("labels") or {}).get(CLUSTER)
            if prefix:
                clusters.setdefault(prefix, {k: [] for k in KINDS})[kind].append(item)
    return clusters


def _state(servers: list[ServerInfo]) -> str:
    if not servers:
        return "remains (no servers)"
    if not any(s.labels.get(ROLE) == "scheduler" for s in servers):
        return "no scheduler"
    statuses = Counter(s.status for s in servers)
    if set(statuses) == {"running"}:
        return "running"
    return ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))


def cluster_summary(
    prefix: str,
    resources: dict[str, list[dict[str, Any]]],
    catalog: Catalog,
    access: str | None,
    now: datetime,
) -> dict[str, Any]:
    """One cluster's row: state, nodes, location, age, prices, and this machine's access."""
    from scherbelberg_dask.cloud.client import ServerInfo

    servers = [ServerInfo.from_api(s) for s in resources.get("servers", [])]
    hourly = monthly = cost = 0.0
    unpriced = 0
    for server in servers:
        server_type = catalog.server_types.get(server.server_type)
        price = server_type.prices.get(server.location) if server_type else None
        if price is None:
            unpriced += 1
            continue
        hourly += price.hourly_net
        monthly += price.monthly_net
        cost += billed_cost(price, (now - server.created).total_seconds())
    scheduler = next((s for s in servers if s.labels.get(ROLE) == "scheduler"), None)
    workers = [s for s in servers if s.labels.get(ROLE) == "worker"]
    created = min((s.created for s in servers), default=None)
    first = scheduler or (servers[0] if servers else None)
    return {
        "prefix": prefix,
        "state": _state(servers),
        "scheduler_type": scheduler.server_type if scheduler else None,
        "workers": len(workers),
        "worker_types": dict(sorted(Counter(s.server_type for s in workers).items())),
        "location": first.location if first else None,
        "created": created.isoformat() if created else None,
        "age_seconds": int((now - created).total_seconds()) if created else None,
        "hourly_eur": round(hourly, 4),
        "monthly_eur": round(monthly, 2),
        "cost_eur": round(cost, 4),
        "unpriced_servers": unpriced,
        "resources": {kind: len(items) for kind, items in resources.items()},
        "access": access,
        "autonomous": autonomy(scheduler, now),
    }


def autonomy(scheduler: ServerInfo | None, now: datetime) -> dict[str, Any] | None:
    """An autonomous cluster's idle time and when it deletes itself at the latest, as its
    controller labelled its scheduler server (``None``: not autonomous)."""
    if scheduler is None or scheduler.labels.get(AUTONOMOUS) != "true":
        return None

    def when(key: str) -> float | None:
        value = scheduler.labels.get(key, "none")
        return float(value) if value.isdigit() else None

    idle_since, delete_at = when(IDLE_SINCE), when(DELETE_AT)
    return {
        "idle_seconds": None if idle_since is None else max(0, int(now.timestamp() - idle_since)),
        "deletes_at": (
            None
            if delete_at is None
            else datetime.fromtimestamp(delete_at, timezone.utc).isoformat(timespec="seconds")
        ),
    }


def autonomy_text(info: dict[str, Any] | None) -> str:
    """``AUTONOMOUS`` of the table: ``no``, or its idle time and deletion time."""
    if info is None:
        return "no"
    idle = "busy" if info["idle_seconds"] is None else f"idle {_uptime(info['idle_seconds'])}"
    deletes = info["deletes_at"]
    return f"yes, {idle}, deletes " + (f"by {deletes}" if deletes else "when idle long enough")


async def all_clusters() -> dict[str, Any]:
    """The report of ``ls`` without ``--prefix`` (what ``--json`` prints)."""
    from scherbelberg_dask.cloud.client import CloudClient
    from scherbelberg_dask.state import StateDir, list_prefixes
    from scherbelberg_dask.state.access import access_of

    cloud = CloudClient()
    try:
        clusters, catalog = await asyncio.gather(find_clusters(cloud), cloud.catalog())
    finally:
        await cloud.close()
    now = datetime.now(timezone.utc)

    def local() -> tuple[dict[str, str | None], list[str]]:
        here = list_prefixes()
        access = {p: access_of(StateDir(p)) for p in set(here) | set(clusters)}
        return access, here

    access, here = await asyncio.to_thread(local)
    rows = [
        cluster_summary(prefix, clusters[prefix], catalog, access.get(prefix), now)
        for prefix in sorted(clusters)
    ]
    return {
        "clusters": rows,
        "hourly_eur": round(sum(r["hourly_eur"] for r in rows), 4),
        "cost_eur": round(sum(r["cost_eur"] for r in rows), 4),
        # Local state of clusters the project no longer has (removed elsewhere).
        "stale_local_state": sorted(p for p in here if p not in clusters),
    }


def _workers(row: dict[str, Any]) -> str:
    if not row["workers"]:
        return "0"
    types = ", ".join(f"{n} {t}" for t, n in row["worker_types"].items())
    return f"{row['workers']} ({types})"


async def ls_all(*, as_json: bool) -> int:
    """Print every cluster of the project; return the exit status."""
    report = await all_clusters()
    if as_json:
        print_json(report)
        return 0
    rows = report["clusters"]
    if not rows:
        print("No clusters in this Hetzner project.")
    else:
        header = ["PREFIX", "STATE", "SCHEDULER", "WORKERS", "LOCATION", "AGE"]
        header += ["EUR/H", "COST", "OPERABLE HERE", "AUTONOMOUS"]
        cells = [
            [
                r["prefix"],
                r["state"],
                r["scheduler_type"] or "-",
                _workers(r),
                r["location"] or "-",
                "-" if r["age_seconds"] is None else _uptime(r["age_seconds"]),
                f"{r['hourly_eur']:.4f}",
                f"{r['cost_eur']:.2f}",
                _ACCESS_TEXT.get(r["access"] or "", "no"),
                autonomy_text(r["autonomous"]),
            ]
            for r in rows
        ]
        print(table(header, cells, right={5, 6, 7}))
        print(
            f"Total: {report['hourly_eur']:.4f} EUR/h, {report['cost_eur']:.2f} EUR so far "
            "(net; billed per started hour up to the monthly price; IPs and traffic extra)"
        )
        print(f"Details: {PROG} ls --prefix PREFIX")
    if report["stale_local_state"]:
        print(
            "Local state of clusters no longer in the project: "
            f"{', '.join(report['stale_local_state'])} (remove it with "
            f"'{PROG} nuke --prefix PREFIX')"
        )
    return 0
