"""``ls``, ``catalog`` and ``logs``: look at a cluster, at what can be ordered, at a node."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scherbelberg_dask.cli.common import (
    PROG,
    AddParser,
    attached,
    find_node,
    prefix_of,
    print_json,
    require_operator,
    table,
)
from scherbelberg_dask.errors import SettingsError

if TYPE_CHECKING:
    from scherbelberg_dask.cloud.catalog import Catalog, Price
    from scherbelberg_dask.cluster.provisioner import Provisioner

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``ls`` and ``logs`` verbs (they take ``--prefix``)."""
    ls = add_parser(
        "ls",
        parents=parents,
        help="list every cluster of the project, or one cluster's nodes (--prefix)",
        description=(
            "Without --prefix: every cluster of the Hetzner project, found by its labels "
            "(also on a machine without local state): state, scheduler and worker types, "
            "location, age, EUR per hour, cost so far, and whether this machine can "
            "operate it. With --prefix: the nodes of that cluster: name, role, server "
            "status, type, location, public and private IP, uptime, hourly price and cost "
            "so far; then how to reach the scheduler and its dashboard. Works while Dask "
            "is down."
        ),
    )
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(run=run_ls)

    logs = add_parser(
        "logs",
        parents=parents,
        help="show a node's setup and Dask service logs",
        description="Print the tail of a node's setup (bootstrap) and Dask service logs.",
    )
    logs.add_argument("node", metavar="NODE", help="scheduler, worker000, ...")
    logs.add_argument(
        "-n", "--lines", type=int, default=200, help="how many lines (default: %(default)s)"
    )
    logs.set_defaults(run=run_logs)


def register_catalog(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``catalog`` verb (no cluster needed)."""
    catalog = add_parser(
        "catalog",
        parents=parents,
        help="server types with prices per location, locations and images",
        description=(
            "What can be ordered: server types (cores, memory, disk, architecture, CPU) "
            "with hourly net prices in EUR per location, the locations, and the images."
        ),
    )
    catalog.add_argument(
        "--location", metavar="NAME", help="only server types orderable in this location"
    )
    catalog.add_argument(
        "--all", action="store_true", help="also server types that can no longer be ordered"
    )
    catalog.add_argument("--json", action="store_true", help="print JSON for scripts")
    catalog.set_defaults(run=run_catalog)


# -- ls ---------------------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    """List the cluster (every cluster without ``--prefix``); return the exit status."""
    if args.prefix is None:
        from scherbelberg_dask.cli.listing import ls_all

        return asyncio.run(ls_all(as_json=args.json))
    return asyncio.run(_ls(prefix_of(args), as_json=args.json))


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def billed_cost(price: Price, seconds: float) -> float:
    """Hetzner's bill for ``seconds`` of a server: per started hour, capped monthly (net)."""
    hours = max(1, math.ceil(seconds / 3600))
    return min(hours * price.hourly_net, price.monthly_net)


async def _ls(prefix: str, *, as_json: bool) -> int:
    async with attached(prefix) as provisioner:
        catalog = await provisioner.cloud.catalog()
        report = _cluster_report(provisioner, catalog)
    if as_json:
        print_json(report)
        return 0
    rows = [
        [
            n["name"],
            n["role"],
            n["status"],
            n["server_type"],
            n["location"],
            n["public_ip"] or "-",
            n["private_ip"] or "-",
            _uptime(n["uptime_seconds"]),
            "?" if n["hourly_eur"] is None else f"{n['hourly_eur']:.4f}",
            "?" if n["cost_eur"] is None else f"{n['cost_eur']:.2f}",
        ]
        for n in report["nodes"]
    ]
    header = ["NODE", "ROLE", "STATUS", "TYPE", "LOCATION", "PUBLIC IP", "PRIVATE IP"]
    header += ["UPTIME", "EUR/H", "COST"]
    print(f"Cluster {prefix}: {len(report['nodes'])} nodes")
    print(table(header, rows, right={7, 8, 9}))
    print(
        f"Total: {report['hourly_eur']:.4f} EUR/h, {report['cost_eur']:.2f} EUR so far "
        "(net; billed per started hour up to the monthly price; IPs and traffic extra)"
    )
    from scherbelberg_dask.cli.listing import autonomy_text

    print(f"Autonomous:     {autonomy_text(report['autonomous'])}")
    print(f"Dask scheduler: {report['scheduler_address'] or '-'} (mutual TLS)")
    print(f"  from Python:  HetznerCluster.from_existing({prefix!r})")
    print(f"Dashboard:      {PROG} dashboard --prefix {prefix}  (opens an SSH tunnel)")
    print(f"Log in:         {PROG} ssh --prefix {prefix} NODE [COMMAND]")
    return 0


def _cluster_report(provisioner: Provisioner, catalog: Catalog) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    nodes: list[dict[str, Any]] = []
    for name in sorted(provisioner.nodes, key=lambda n: (n != "scheduler", n)):
        node = provisioner.nodes[name]
        server = node.server
        server_type = catalog.server_types.get(server.server_type)
        price = server_type.prices.get(server.location) if server_type else None
        seconds = (now - server.created).total_seconds()
        nodes.append(
            {
                "name": name,
                "role": node.role,
                "server": server.name,
                "id": server.id,
                "status": server.status,
                "server_type": server.server_type,
                "location": server.location,
                "public_ip": node.public_ip,
                "private_ip": node.private_ip,
                "created": server.created.isoformat(),
                "uptime_seconds": int(seconds),
                "hourly_eur": price.hourly_net if price else None,
                "cost_eur": round(billed_cost(price, seconds), 4) if price else None,
            }
        )
    scheduler = provisioner.nodes.get("scheduler")
    ports = provisioner.settings.ports
    from scherbelberg_dask.cli.listing import autonomy

    return {
        "prefix": provisioner.prefix,
        "autonomous": autonomy(scheduler.server if scheduler else None, now),
        "nodes": nodes,
        "hourly_eur": round(sum(n["hourly_eur"] or 0.0 for n in nodes), 4),
        "cost_eur": round(sum(n["cost_eur"] or 0.0 for n in nodes), 4),
        "scheduler_address": (
            f"tls://{scheduler.public_ip}:{ports.scheduler}"
            if scheduler and scheduler.public_ip
            else None
        ),
        "dashboard": {
            "command": f"{PROG} dashboard --prefix {provisioner.prefix}",
            "remote": (
                f"{scheduler.private_ip}:{ports.dashboard}"
                if scheduler and scheduler.private_ip
                else None
            ),
        },
    }


# -- logs -------------------------------------------------------------------------------


def run_logs(args: argparse.Namespace) -> int:
    """Print a node's logs; return the exit status."""
    if args.lines < 1:
        raise SettingsError(f"--lines must be at least 1, not {args.lines}")
    text = asyncio.run(_logs(prefix_of(args), args.node, args.lines))
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


async def _logs(prefix: str, name: str, lines: int) -> str:
    async with attached(prefix) as provisioner:
        require_operator(provisioner, "read the node logs (over SSH) of")
        node = find_node(provisioner, name)
        return await provisioner.node_log(node.name, lines=lines)


# -- catalog ----------------------------------------------------------------------------


def run_catalog(args: argparse.Namespace) -> int:
    """Print the catalog; return the exit status."""
    catalog = asyncio.run(_fetch_catalog())
    if args.location is not None:
        catalog.location(args.location)  # an unknown location lists the valid ones
    locations = [args.location] if args.location else sorted(catalog.locations)
    types = [
        t
        for t in sorted(
            catalog.server_types.values(),
            key=lambda t: (t.architecture, t.cpu_type, t.cores, t.memory_gb, t.name),
        )
        if (args.all or any(t.orderable_in(loc) for loc in locations))
        and (args.location is None or args.location in t.prices)
    ]
    if args.json:
        print_json(_catalog_report(catalog, types, locations))
        return 0
    header = ["TYPE", "ARCH", "CPU", "CORES", "MEMORY", "DISK", *locations]
    rows = []
    for t in types:
        prices = []
        for loc in locations:
            price = t.prices.get(loc)
            if price is None or loc not in t.unavailable:
                prices.append("-")
            elif t.unavailable[loc] is not None:
                prices.append("n/a")
            else:
                prices.append(f"{price.hourly_net:.4f}")
        rows.append(
            [
                t.name,
                t.architecture,
                t.cpu_type,
                str(t.cores),
                f"{t.memory_gb:g} GB",
                f"{t.disk_gb} GB",
                *prices,
            ]
        )
    print("Server types (hourly net price in EUR per location; -: not offered, n/a: not now):")
    print(table(header, rows, right=set(range(3, len(header)))))
    print()
    print("Locations:")
    print(
        table(
            ["NAME", "DESCRIPTION", "NETWORK ZONE"],
            [
                [loc.name, loc.description, loc.network_zone]
                for loc in sorted(catalog.locations.values(), key=lambda loc: loc.name)
            ],
        )
    )
    print()
    print("Images:")
    by_arch: dict[str, list[str]] = {}
    for image in catalog.images:
        if image.name and image.type == "system" and not image.deprecated_at(catalog.fetched):
            by_arch.setdefault(image.architecture, []).append(image.name)
    for arch, names in sorted(by_arch.items()):
        print(f"  {arch}: {', '.join(sorted(set(names)))}")
    return 0


async def _fetch_catalog() -> Catalog:
    from scherbelberg_dask.cloud.client import CloudClient

    cloud = CloudClient()
    try:
        return await cloud.catalog()
    finally:
        await cloud.close()


def _catalog_report(catalog: Catalog, types: list[Any], locations: list[str]) -> dict[str, Any]:
    return {
        "server_types": [
            {
                "name": t.name,
                "description": t.description,
                "architecture": t.architecture,
                "cpu_type": t.cpu_type,
                "cores": t.cores,
                "memory_gb": t.memory_gb,
                "disk_gb": t.disk_gb,
                "prices": {
                    loc: {
                        "hourly_net": p.hourly_net,
                        "hourly_gross": p.hourly_gross,
                        "monthly_net": p.monthly_net,
                        "monthly_gross": p.monthly_gross,
                        "orderable": t.orderable_in(loc),
                        "unavailable": t.unavailable.get(loc),
                    }
                    for loc, p in sorted(t.prices.items())
                    if loc in locations
                },
            }
            for t in types
        ],
        "locations": [
            {"name": loc.name, "description": loc.description, "network_zone": loc.network_zone}
            for loc in sorted(catalog.locations.values(), key=lambda loc: loc.name)
        ],
        "images": [
            {"id": i.id, "name": i.name, "architecture": i.architecture, "type": i.type}
            for i in catalog.images
            if not i.deprecated_at(catalog.fetched)
        ],
    }
