"""``create``: make a cluster and leave it running for other commands and processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

from scherbelberg_dask.cli import progress
from scherbelberg_dask.cli.common import (
    PROG,
    AddParser,
    add_retired_types,
    close_cluster,
    default_help,
    plural,
    prefix_of,
)

logger = logging.getLogger(__name__)

#: Bounded waits a user can change (``--timeout-<key>``), with what they bound.
TIMEOUTS = {
    "server": "a server to be created and running",
    "ssh": "the first SSH login to a server",
    "bootstrap": "setting up a node (installing Python and Dask)",
    "dask": "a Dask scheduler or worker to come up",
    "delete": "deleting resources",
}


def register(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``create`` verb."""
    parser = add_parser(
        "create",
        parents=parents,
        help="create a cluster and leave it running",
        description=(
            "Create a cluster (a scheduler server plus worker servers), wait until Dask runs "
            "on every node, and exit; the cluster keeps running until 'destroy'. Server "
            "types, image and location are checked against the live catalog before "
            "anything is made (a retired type is replaced by its successor, with a "
            "warning, unless --retired-types error), and a failed create removes what it "
            "made."
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=default_help("number of workers", "workers"),
    )
    parser.add_argument(
        "--worker",
        dest="worker_type",
        metavar="TYPE",
        help=default_help("server type of the workers", "worker-type"),
    )
    parser.add_argument(
        "--scheduler",
        dest="scheduler_type",
        metavar="TYPE",
        help=default_help("server type of the scheduler", "scheduler-type"),
    )
    parser.add_argument("--image", help=default_help("server image", "image"))
    parser.add_argument("--location", help=default_help("Hetzner location", "location"))
    add_retired_types(parser)
    parser.add_argument(
        "--package",
        dest="packages",
        action="append",
        metavar="SPEC",
        help="extra pip requirement installed on every node (repeatable)",
    )
    parser.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        default=None,
        help=(
            "make no snapshot of the node environment and boot no node from one "
            "(default: scherbelberg.snapshot, on; docs/snapshots.md)"
        ),
    )
    parser.add_argument(
        "--allowed-cidr",
        dest="allowed_cidrs",
        action="append",
        metavar="CIDR",
        help=default_help(
            "network that may reach SSH and the scheduler port (repeatable)", "allowed-cidrs"
        ),
    )
    parser.add_argument(
        "--autonomous",
        action="store_true",
        default=None,
        help=(
            "a controller service on the scheduler node adapts the cluster and deletes it "
            "when idle or too old, with this machine switched off; keeps the API token on "
            "the scheduler node, readable only by the controller's system user "
            "(docs/autonomous.md; config scherbelberg.autonomous)"
        ),
    )
    parser.add_argument(
        "--idle-timeout",
        metavar="SPAN",
        help=default_help(
            "an autonomous cluster deletes itself after this long without work and "
            "clients (e.g. 30m, 2h; off: never)",
            "idle-timeout",
        ),
    )
    parser.add_argument(
        "--max-lifetime",
        metavar="SPAN",
        help=default_help(
            "an autonomous cluster deletes itself this long after its creation, busy or "
            "not (e.g. 8h; off: no limit)",
            "max-lifetime",
        ),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help=(
            "check everything against the live catalog as a create does, print what would "
            "be created and its hourly and monthly price, and create nothing"
        ),
    )
    for key, what in TIMEOUTS.items():
        parser.add_argument(
            f"--timeout-{key}",
            type=float,
            metavar="SECONDS",
            help=default_help(f"longest wait for {what}", f"timeouts.{key}"),
        )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Create the cluster; return the exit status."""
    try:
        return asyncio.run(_create(args))
    except asyncio.CancelledError:  # SIGTERM; what was made is removed
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """SIGTERM cancels the current task, as Ctrl-C does, so that cleanup runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    try:
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows)
        task = None
    try:
        yield
    finally:
        if task is not None:
            loop.remove_signal_handler(signal.SIGTERM)


async def finish_snapshot(cluster: Any) -> None:
    """Wait for the environment snapshot under way before this process ends.

    The cluster is up and usable meanwhile; ending the process would stop the snapshot
    (docs/snapshots.md).
    """
    if cluster.provisioner.snapshot_pending:
        logger.info(
            "Cluster %s is up; finishing the snapshot of its node environment, so that "
            "later nodes start faster (--no-snapshot skips it) ...",
            cluster.prefix,
        )
        await cluster.provisioner.snapshot_ready()


async def _create(args: argparse.Namespace) -> int:
    from scherbelberg_dask.cluster.cluster import HetznerCluster
    from scherbelberg_dask.cluster.provisioner import Ownership

    timeouts = {
        key: value for key in TIMEOUTS if (value := getattr(args, f"timeout_{key}")) is not None
    }
    options = dict(
        prefix=prefix_of(args),
        scheduler_type=args.scheduler_type,
        worker_type=args.worker_type,
        image=args.image,
        location=args.location,
        retired_types=args.retired_types,
        allowed_cidrs=args.allowed_cidrs,
        packages=args.packages,
        snapshot=args.snapshot,
        timeouts=timeouts or None,
        autonomous=args.autonomous,
        idle_timeout=args.idle_timeout,
        max_lifetime=args.max_lifetime,
    )
    if args.dry_run:
        plan = await HetznerCluster.dry_run_async(args.workers, **options)
        print(plan.describe())
        print("Dry run: nothing was created. Create it with the same options without --dry-run.")
        return 0
    cluster = HetznerCluster(
        workers=args.workers, shutdown_on_close=False, asynchronous=True, **options
    )
    prefix = cluster.prefix
    wanted = cluster.settings.workers

    def nodes_done() -> int:
        up = (cluster.scheduler_node is not None) + len(cluster.worker_nodes)
        return up + len(cluster.failures)

    try:
        with _cancel_on_sigterm():
            async with progress.tracking("nodes up", 1 + wanted, nodes_done):
                await cluster
    except BaseException:
        # Dask already removed a cluster whose start failed; an interrupted start needs
        # this close (it deletes everything this process made; a clash made nothing).
        if cluster.ownership is Ownership.OWNED:
            logger.info("Removing what was created of cluster %s ...", prefix)
            await close_cluster(cluster)
        raise
    failures = cluster.failures
    workers = len(cluster.worker_nodes)
    await finish_snapshot(cluster)
    await cluster.detach()
    for name, error in sorted(failures.items()):
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        logger.error("Worker %s did not come up: %s", name, first)
    if failures:
        print(
            f"error: cluster {prefix} is running with {workers} of {plural(wanted, 'worker')}; "
            f"add workers with '{PROG} scale --prefix {prefix} {wanted}' or remove it with "
            f"'{PROG} destroy --prefix {prefix}'",
            file=sys.stderr,
        )
        return 1
    logger.info("Successfully created cluster %s.", prefix)
    print(
        f"cluster {prefix} is running with {plural(workers, 'worker')}; "
        f"see it with '{PROG} ls --prefix {prefix}'"
    )
    return 0
