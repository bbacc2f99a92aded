"""Benchmark: the real bootstrap's phases on the emulator's Debian servers.

Each cluster runs on servers of ``debian-12`` (``systemd-nspawn`` containers with real
systemd, sshd and cloud-init), which run the very setup script a Hetzner server gets:
uv from PyPI, the client's exact packages, the systemd unit, the sshd hardening.  For
every node the benchmark reports, in seconds from the ``HetznerCluster(...)`` call:

- ``running``: the server's create and start actions have finished (API);
- ``ssh``: the first SSH login succeeded (sshd up, cloud-init has put the key in place);
- ``uv``, ``packages``, ``service``: the setup script's own phase markers
  (``== phase NAME EPOCH`` in ``/var/log/scherbelberg-bootstrap.log``);
- ``dask``: the Dask process reported itself ready;
- ``ready``: a ``Client`` sees every worker (cluster-wide).

``--snapshot`` compares a cold start with one from a snapshot of the node environment
(docs/snapshots.md), in one emulator: a first cluster (full setup; its snapshot is made
in the background and waited for, not counted), a scale-up of it by ``--scale-up``
workers (from the snapshot), a second cluster (every node from the snapshot) and, as the
reference for the scale-up, a cluster without snapshots scaled up the same way.

``--packages`` adds extra packages to the node environment (for example ``pandas pyarrow``,
what ``dask[dataframe]`` brings); by default nodes get only the client's own Dask stack.
``--no-package-cache`` gives every server an empty uv cache (each downloads its wheels, as
a fresh Hetzner server does); by default the emulator shares uv's cache between servers.
The API answers instantly (``instant`` profile) unless ``--profile realistic`` is given;
``docs/benchmarks.md`` shows how the phases add up to a cold start on Hetzner.

Run ``python benchmarks/debian_bootstrap.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import dask.config
from dask.distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.debian import prepare
from scherbelberg_dask.emulator.pytest_plugin import free_port

logger = logging.getLogger("benchmarks.debian_bootstrap")

PHASES = ("running", "ssh", "uv", "packages", "service", "dask")
_MARK = re.compile(r"^== phase (\S+) (\d+\.\d+)$", re.MULTILINE)
_NODE = re.compile(r"^\[(\w+)\] (.*)$")


class Recorder(logging.Handler):
    """Times of the provisioning log lines, per node."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: dict[str, dict[str, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = _NODE.match(record.getMessage())
        if match is None:
            return
        node, text = match.groups()
        times = self.times.setdefault(node, {})
        if text.startswith("[root] Waiting for SSH") or text.startswith("[dask] Waiting for SSH"):
            times.setdefault("running", record.created)
        elif text.endswith("SSH up."):
            times.setdefault("ssh", record.created)
        elif text.startswith("Dask "):
            times.setdefault("dask", record.created)


async def _phases(
    cluster: HetznerCluster, recorder: Recorder, started: float, names: set[str] | None = None
) -> dict[str, dict[str, float]]:
    nodes = [n for n in [cluster.scheduler_node, *cluster.worker_nodes] if n is not None]
    rows = {}
    for node in nodes:
        if names is not None and node.name not in names:
            continue
        result = await node.run("grep '^== phase' /var/log/scherbelberg-bootstrap.log")
        times = dict(recorder.times.get(node.name, {}))
        for name, stamp in _MARK.findall(result.stdout):
            times[name] = float(stamp)
        rows[node.name] = {phase: times[phase] - started for phase in PHASES if phase in times}
    return rows


async def one_cluster(
    workers: int,
    recorder: Recorder,
    *,
    prefix: str = "bench",
    snapshot: bool = False,
    wait_snapshot: bool = False,
    scale_up: int = 0,
) -> dict[str, Any]:
    """Create a cluster (and scale it up by ``scale_up``): ready times and node phases."""
    recorder.times.clear()
    started = time.time()
    result: dict[str, Any] = {"workers": workers}
    async with (
        HetznerCluster(
            workers=workers, prefix=prefix, image="debian-12", snapshot=snapshot, asynchronous=True
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        await client.wait_for_workers(workers, timeout=1800)
        result["ready"] = time.time() - started
        result["nodes"] = await _phases(cluster, recorder, started)
        if wait_snapshot:
            made = await cluster.provisioner.snapshot_ready()
            result["snapshot"] = time.time() - started
            result["snapshot_gb"] = made.image_size if made is not None else None
        if scale_up:
            before = set(cluster.worker_spec)
            recorder.times.clear()
            scaled = time.time()
            cluster.scale(workers + scale_up)
            await client.wait_for_workers(workers + scale_up, timeout=1800)
            result["scale_up"] = time.time() - scaled
            new = set(cluster.worker_spec) - before
            await cluster  # Dask sees a worker before its provisioning has returned
            result["scale_nodes"] = await _phases(cluster, recorder, scaled, new)
    return result


@contextlib.asynccontextmanager
async def local_cloud(args: argparse.Namespace) -> AsyncIterator[Emulator]:
    """An emulator as ``args`` ask, with the environment, config and a state dir for it."""
    async with Emulator(
        ssh_port=free_port(),
        profile=args.profile,
        time_scale=args.time_scale,
        package_cache=not args.no_package_cache,
    ) as emulator:
        os.environ.update(emulator.env())
        with (
            tempfile.TemporaryDirectory() as state,
            dask.config.set(
                {
                    **emulator.dask_config(),
                    "scherbelberg.state-dir": state,
                    "scherbelberg.packages": args.packages,
                }
            ),
        ):
            yield emulator


async def snapshot_comparison(
    args: argparse.Namespace, recorder: Recorder
) -> tuple[tuple[float, float], list[str]]:
    """First cluster, its scale-up, a second cluster, and a cold scale-up: one emulator.

    Returns the two ratios (second cluster / first, snapshot scale-up / full) and the report.
    """
    workers, extra = args.sizes[0], args.scale_up
    async with local_cloud(args):
        first = await one_cluster(
            workers,
            recorder,
            prefix="first",
            snapshot=True,
            wait_snapshot=True,
            scale_up=extra,
        )
        second = await one_cluster(workers, recorder, prefix="second", snapshot=True)
        cold = await one_cluster(workers, recorder, prefix="cold", scale_up=extra)
    lines = [
        f"first cluster 1+{workers} (full setup): ready after {first['ready']:.1f} s; "
        f"its snapshot ({first['snapshot_gb']} GB) was ready {first['snapshot']:.1f} s "
        "after the call",
        f"second cluster 1+{workers} (from the snapshot): ready after {second['ready']:.1f} s "
        f"= {second['ready'] / first['ready']:.2f} of the first",
        f"scale-up +{extra} from the snapshot: {first['scale_up']:.1f} s; full setup "
        f"(snapshot=False): {cold['scale_up']:.1f} s = "
        f"{first['scale_up'] / cold['scale_up']:.2f}",
        "",
        "first cluster:",
        table([first]),
        "second cluster:",
        table([second]),
        "scale-up from the snapshot (seconds from scale()):",
        table([{"workers": extra, "ready": first["scale_up"], "nodes": first["scale_nodes"]}]),
        "scale-up with the full setup (seconds from scale()):",
        table([{"workers": extra, "ready": cold["scale_up"], "nodes": cold["scale_nodes"]}]),
    ]
    return (second["ready"] / first["ready"], first["scale_up"] / cold["scale_up"]), lines


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| cluster | node | " + " | ".join(PHASES) + " |",
        "|---|---|" + "---|" * len(PHASES),
    ]
    for result in results:
        label = f"1+{result['workers']} (ready {result['ready']:.1f} s)"
        nodes = result["nodes"]
        for group, names in (
            ("scheduler", [n for n in ["scheduler"] if n in nodes]),
            ("workers, median", [n for n in nodes if n != "scheduler"]),
            ("workers, slowest", [n for n in nodes if n != "scheduler"]),
        ):
            cells = []
            for phase in PHASES:
                values = [nodes[n][phase] for n in names if phase in nodes.get(n, {})]
                if not values:
                    cells.append("-")
                elif group.endswith("slowest"):
                    cells.append(f"{max(values):.1f}")
                else:
                    cells.append(f"{statistics.median(values):.1f}")
            lines.append(f"| {label} | {group} | " + " | ".join(cells) + " |")
            label = ""
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    prepare("debian-12", lambda line: print(f"debian-12: {line}", file=sys.stderr))
    recorder = Recorder()
    provision = logging.getLogger("scherbelberg_dask.cluster.provision")
    provision.setLevel(logging.INFO)
    provision.addHandler(recorder)
    if args.snapshot:
        ratios = []
        for run in range(1, args.repeat + 1):  # each in a new emulator: no snapshot yet
            ratio, lines = await snapshot_comparison(args, recorder)
            ratios.append(ratio)
            print(f"run {run} of {args.repeat}:", *lines, sep="\n", end="\n\n")
        if args.repeat > 1:
            second, scale_up = (sorted(r[i] for r in ratios) for i in (0, 1))
            print(
                f"over {args.repeat} runs, second cluster / first: median "
                f"{statistics.median(second):.2f} (range {second[0]:.2f}-{second[-1]:.2f}); "
                f"scale-up from the snapshot / full: median {statistics.median(scale_up):.2f} "
                f"(range {scale_up[0]:.2f}-{scale_up[-1]:.2f})"
            )
        return 0
    results = []
    for workers in args.sizes:
        for _ in range(args.repeat):
            async with local_cloud(args):
                result = await one_cluster(workers, recorder)
            print(f"1+{workers}: ready after {result['ready']:.1f} s", file=sys.stderr)
            results.append(result)
    print(table(results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4], help="workers per cluster")
    parser.add_argument(
        "--repeat", type=int, default=1, help="clusters per size (--snapshot: comparisons)"
    )
    parser.add_argument("--profile", default="instant", choices=["instant", "realistic"])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument(
        "--no-package-cache", action="store_true", help="every server downloads its wheels"
    )
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="compare a cold start with one from a snapshot (first size only)",
    )
    parser.add_argument("--scale-up", type=int, default=2, help="workers added (--snapshot)")
    parser.add_argument(
        "--packages",
        nargs="*",
        default=[],
        help="extra packages of the node environment (e.g. pandas pyarrow, as dask[dataframe])",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
