"""Benchmark: the real bootstrap's phases on the emulator's Debian servers.

Each cluster runs on servers of ``debian-12`` (``systemd-nspawn`` containers with real
systemd, sshd and cloud-init), which run the very setup script a Hetzner server gets:
uv from PyPI, the client's exact packages, the systemd unit, the sshd hardening.  For
every node the benchmark reports, in seconds from the ``HetznerCluster(...)`` call:

- ``running``: the server's create and start actions have finished (API);
- ``ssh``: the first SSH login succeeded (sshd up, cloud-init has put the key in place);
- ``cloud-init``, ``uv``, ``packages``, ``service``: the setup script's own phase markers
  (``== phase NAME EPOCH`` in ``/var/log/scherbelberg-bootstrap.log``);
- ``dask``: the Dask process reported itself ready;
- ``ready``: a ``Client`` sees every worker (cluster-wide).

``--no-package-cache`` gives every server an empty uv cache (each downloads its wheels, as
a fresh Hetzner server does); by default the emulator shares uv's cache between servers.
The API answers instantly (``instant`` profile) unless ``--profile realistic`` is given;
``docs/benchmarks.md`` shows how the phases add up to a cold start on Hetzner.

Run ``python benchmarks/debian_bootstrap.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import dask.config
from dask.distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.debian import prepare
from scherbelberg_dask.emulator.pytest_plugin import free_port

logger = logging.getLogger("benchmarks.debian_bootstrap")

PHASES = ("running", "ssh", "cloud-init", "uv", "packages", "service", "dask")
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


async def one_cluster(workers: int, recorder: Recorder) -> dict[str, Any]:
    recorder.times.clear()
    started = time.time()
    async with (
        HetznerCluster(workers=workers, image="debian-12", asynchronous=True) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        await client.wait_for_workers(workers, timeout=1800)
        ready = time.time() - started
        nodes = [n for n in [cluster.scheduler_node, *cluster.worker_nodes] if n is not None]
        rows = {}
        for node in nodes:
            result = await node.run("grep '^== phase' /var/log/scherbelberg-bootstrap.log")
            times = dict(recorder.times.get(node.name, {}))
            for name, stamp in _MARK.findall(result.stdout):
                times[name] = float(stamp)
            rows[node.name] = {phase: times[phase] - started for phase in PHASES if phase in times}
    return {"workers": workers, "ready": ready, "nodes": rows}


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| cluster | node | " + " | ".join(PHASES) + " |",
        "|---|---|" + "---|" * len(PHASES),
    ]
    for result in results:
        label = f"1+{result['workers']} (ready {result['ready']:.1f} s)"
        nodes = result["nodes"]
        for group, names in (
            ("scheduler", ["scheduler"]),
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
    results = []
    for workers in args.sizes:
        for _ in range(args.repeat):
            async with Emulator(
                ssh_port=free_port(),
                profile=args.profile,
                time_scale=args.time_scale,
                package_cache=not args.no_package_cache,
            ) as emulator:
                os.environ.update(emulator.env())
                with (
                    tempfile.TemporaryDirectory() as state,
                    dask.config.set({**emulator.dask_config(), "scherbelberg.state-dir": state}),
                ):
                    result = await one_cluster(workers, recorder)
            print(f"1+{workers}: ready after {result['ready']:.1f} s", file=sys.stderr)
            results.append(result)
    print(table(results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4], help="workers per cluster")
    parser.add_argument("--repeat", type=int, default=1, help="clusters per size")
    parser.add_argument("--profile", default="instant", choices=["instant", "realistic"])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument(
        "--no-package-cache", action="store_true", help="every server downloads its wheels"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
