"""Benchmark: how long ``HetznerCluster`` takes to create, how many API requests it makes,
and how long it blocks its event loop, for clusters of several sizes.

Every cluster runs on the local Hetzner Cloud emulator with its ``realistic`` timing
profile scaled down by ``--time-scale``.  The emulator runs in a child process by default,
so that its work (API, SSH servers, emulated machines) does not compete for this
process's GIL and distort the event-loop measurement; each emulated node still runs a
real Dask scheduler or nanny+worker process on this machine.

For each size the benchmark creates a cluster with ``asynchronous=True`` in a fresh event
loop it owns, connects a ``Client`` and waits until the scheduler has all workers
("ready"), then closes the cluster and checks that no server, network, firewall, SSH key,
emulated process or local state is left.  Meanwhile a monitor task wakes up every
``--stall-interval`` seconds and records how late each wakeup was: the longest lateness
is the longest stall of the loop.

Run ``python benchmarks/create_cluster.py --help`` for the options; the results table and
an analysis are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import faulthandler
import gc
import json
import logging
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulator_host import (
    ChildEmulator,
    EmulatorHandle,
    ThreadEmulator,
    client_cpu,
    emulated_processes,
    emulator_cpu,
    machine_busy,
)
from loopstall import SlowCallbacks, StallMonitor, StallSampler, StallSummary

logger = logging.getLogger("benchmarks.create_cluster")

#: Cloud resource kinds that must all be gone after ``close()``.
KINDS = ("servers", "networks", "firewalls", "ssh_keys")
#: Seconds a deleted server's processes get to end before they count as left behind.
_PROCESS_GRACE = 30.0
#: Targets from issue 3.
TARGET_REQUESTS_PER_WORKER = 1.5
TARGET_RATIO = 1.25
TARGET_STALL_MS = 20.0


# -- one cluster -------------------------------------------------------------------------


class Timeline(logging.Handler):
    """Keep scherbelberg-dask's INFO log lines with their time since the start of a run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._start = time.time()
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created - self._start, record.getMessage()))

    def reset(self) -> None:
        self._start = time.time()
        self.lines = []

    def first(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def last(self, text: str) -> float | None:
        found = [t for t, line in self.lines if text in line]
        return found[-1] if found else None


@dataclasses.dataclass
class RunResult:
    """Measurements of one create/close cycle."""

    workers: int
    create_s: float  # until ``await HetznerCluster(...)`` returned
    ready_s: float  # until a Client saw every worker
    close_s: float
    create_requests: dict[str, int]  # by route, create until ready
    close_requests: dict[str, int]
    client_requests: int  # as counted by the cluster's own CloudClient
    create_stalls: StallSummary  # from the constructor until ``await`` returned
    connect_stalls: StallSummary  # connecting a Client and waiting for the workers
    #: The longest stalls: (at s, stall ms, loop CPU ms, CPU wait ms, GC ms, sampled sites).
    top_stalls: list[tuple[float, float, float, float, float, str]]
    gc_max_ms: float  # longest garbage-collector pause, create and Client connect
    failed_nodes: int  # nodes that failed to come up (deleted; dropped or replaced)
    client_cpu_s: float
    emulator_cpu_s: float
    machine_busy: float  # fraction of both cores busy during create
    first_post_s: float | None
    last_post_s: float | None
    first_ssh_s: float | None
    last_ssh_s: float | None
    scheduler_up_s: float | None
    last_worker_up_s: float | None
    left: dict[str, int]
    stall_sites: list[tuple[str, float, str]] = dataclasses.field(default_factory=list)
    slow_callbacks: list[str] = dataclasses.field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.create_requests.values())


async def _create_and_close(
    workers: int,
    emulator: EmulatorHandle,
    args: argparse.Namespace,
    state_dir: str,
    timeline: Timeline,
) -> RunResult:
    from distributed import Client

    from scherbelberg_dask import HetznerCluster

    loop = asyncio.get_running_loop()
    slow = SlowCallbacks()
    if args.asyncio_debug:
        loop.set_debug(True)
        loop.slow_callback_duration = TARGET_STALL_MS / 1000
        logging.getLogger("asyncio").addHandler(slow)
    prefix = f"bench{workers}"
    await asyncio.to_thread(emulator.reset_counters)
    monitor = StallMonitor(args.stall_interval)
    sampler = (
        StallSampler(monitor, threshold=args.sample_threshold / 1000) if args.diagnose else None
    )
    cpu0, emu0, busy0 = client_cpu(), emulator_cpu(emulator), machine_busy()
    timeline.reset()
    monitor.start()
    if sampler is not None:
        sampler.start()
    started = time.monotonic()
    cluster: Any = None
    measured = False
    try:
        try:
            cluster = await HetznerCluster(
                workers=workers, prefix=prefix, asynchronous=True, state_dir=state_dir
            )
            created = time.monotonic()
            async with Client(cluster, asynchronous=True) as client:
                # A node that fails to come up is dropped (and may be replaced): wait for
                # the workers the cluster has, not for the number asked for.
                expected = len(cluster.worker_spec)
                await client.wait_for_workers(expected, timeout=args.timeout)
            ready = time.monotonic()
        finally:
            await monitor.stop()
            if sampler is not None:
                sampler.stop()
            if args.asyncio_debug:
                loop.set_debug(False)
                logging.getLogger("asyncio").removeHandler(slow)
        cpu1, emu1, busy1 = client_cpu(), emulator_cpu(emulator), machine_busy()
        create_counts = (await asyncio.to_thread(emulator.counters))["by_route"]
        client_requests = cluster.provisioner.cloud.requests
        failed = len(cluster.failures)
        measured = True
    finally:
        if cluster is not None and not measured:
            logger.error("the run failed; closing its cluster")
            await cluster.close()

    print(f"  ready after {ready - started:.1f} s; closing ...", flush=True)
    await asyncio.to_thread(emulator.reset_counters)
    closing = time.monotonic()
    await asyncio.wait_for(cluster.close(), args.timeout)
    closed = time.monotonic()
    close_counts = (await asyncio.to_thread(emulator.counters))["by_route"]
    left = await _leftovers(emulator, prefix, Path(state_dir) / prefix, _PROCESS_GRACE)

    top_stalls = []
    for at, late, used, waited in sorted(monitor.stalls, key=lambda s: -s[1])[:5]:
        sites = ""
        if sampler is not None:
            found = sampler.sites_between(at, at + late + monitor.interval)
            sites = "; ".join(f"{site} x{n}" for site, n in found.most_common(3))
        gc_ms = 1000 * monitor.gc_between(at, at + late + monitor.interval)
        top_stalls.append((at, 1000 * late, 1000 * used, 1000 * waited, gc_ms, sites))
    samples = []
    if sampler is not None:
        period_ms = sampler.period * 1000
        samples = [
            (site, count * period_ms, sampler.example[site])
            for site, count in sampler.by_site.most_common(8)
        ]
    return RunResult(
        workers=workers,
        create_s=created - started,
        ready_s=ready - started,
        close_s=closed - closing,
        create_requests=create_counts,
        close_requests=close_counts,
        client_requests=client_requests,
        create_stalls=monitor.summary(0.0, created - started),
        connect_stalls=monitor.summary(created - started),
        top_stalls=top_stalls,
        gc_max_ms=monitor.max_gc_ms,
        failed_nodes=failed,
        client_cpu_s=cpu1 - cpu0,
        emulator_cpu_s=emu1 - emu0,
        machine_busy=(busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]),
        first_post_s=timeline.first("Creating node"),
        last_post_s=timeline.last("Creating node"),
        first_ssh_s=timeline.first("SSH up"),
        last_ssh_s=timeline.last("SSH up"),
        scheduler_up_s=timeline.first("Dask scheduler up"),
        last_worker_up_s=timeline.last("Dask worker up"),
        left=left,
        stall_sites=samples,
        slow_callbacks=slow.records,
    )


async def _leftovers(
    emulator: EmulatorHandle, prefix: str, state_path: Path, timeout: float
) -> dict[str, int]:
    """What of cluster ``prefix`` is left: cloud resources, emulated processes, state."""
    snapshot = await asyncio.to_thread(emulator.snapshot)
    left = {
        kind: sum(
            1 for item in snapshot[kind] if item["labels"].get("scherbelberg/cluster") == prefix
        )
        for kind in KINDS
    }
    # A deleted server's processes end shortly after the API says it is gone.
    deadline = time.monotonic() + timeout
    processes = await asyncio.to_thread(emulated_processes, emulator)
    while processes and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        processes = await asyncio.to_thread(emulated_processes, emulator)
    left["processes"] = len(processes)
    left["state_dir"] = int(await asyncio.to_thread(state_path.exists))
    return left


# -- the whole benchmark -----------------------------------------------------------------


@contextlib.contextmanager
def pointed_at(emulator: EmulatorHandle, state_dir: str) -> Iterator[None]:
    """Environment and Dask config that point ``HetznerCluster`` at the emulator."""
    import dask.config

    env = emulator.env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with dask.config.set({**emulator.dask_config(), "scherbelberg.state-dir": state_dir}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_run(
    workers: int,
    emulator: EmulatorHandle,
    args: argparse.Namespace,
    state_dir: str,
    timeline: Timeline,
) -> RunResult:
    """One create/close cycle in a fresh event loop; dump all stacks if it hangs."""
    faulthandler.dump_traceback_later(3 * args.timeout, exit=False)
    gc.collect()  # the previous run's garbage is not this run's pause
    try:
        return asyncio.run(_create_and_close(workers, emulator, args, state_dir, timeline))
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_benchmark(args: argparse.Namespace) -> list[RunResult]:
    """Create and close a cluster of every size ``args.repeat`` times; return all runs."""
    options = {
        "profile": "realistic",
        "time_scale": args.time_scale,
        "ssh_port": _free_port(),
        "rate_limit": args.rate_limit,
    }
    emulator: EmulatorHandle = (
        ChildEmulator(options, args.emulator_nice)
        if args.emulator == "process"
        else ThreadEmulator(options)
    )
    timeline = Timeline()
    logging.getLogger("scherbelberg_dask").addHandler(timeline)
    logging.getLogger("scherbelberg_dask").setLevel(logging.INFO)
    sizes = sorted(set(args.sizes) | set(args.ratio))
    results: list[RunResult] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="sb-bench-") as state_dir,
            pointed_at(emulator, state_dir),
        ):
            if args.warmup:
                print("warm-up: 1 worker (not measured) ...", flush=True)
                _one_run(1, emulator, args, state_dir, timeline)
            for repeat in range(args.repeat):
                for workers in sizes:
                    print(
                        f"run {repeat + 1}/{args.repeat}: scheduler + {workers} workers ...",
                        flush=True,
                    )
                    result = _one_run(workers, emulator, args, state_dir, timeline)
                    _print_run(result, args)
                    results.append(result)
    finally:
        logging.getLogger("scherbelberg_dask").removeHandler(timeline)
        emulator.close()
    return results


# -- reporting ---------------------------------------------------------------------------


def _print_run(r: RunResult, args: argparse.Namespace) -> None:
    c = r.create_stalls
    print(
        f"  ready {r.ready_s:6.1f} s (create {r.create_s:.1f} s), close {r.close_s:.1f} s, "
        f"{r.requests} requests, max stall {c.max_ms:.1f} ms (without CPU wait "
        f"{c.max_own_ms:.1f} ms; most loop CPU in one interval {c.max_loop_cpu_ms:.1f} ms; "
        f"while connecting the Client {r.connect_stalls.max_ms:.1f} ms), "
        f"client CPU {r.client_cpu_s:.1f} s, nodes+emulator CPU {r.emulator_cpu_s:.1f} s, "
        f"machine busy {100 * r.machine_busy:.0f} %",
        flush=True,
    )
    print(
        f"  timeline: first POST /servers at {_fmt(r.first_post_s)}, last at "
        f"{_fmt(r.last_post_s)}, SSH up from {_fmt(r.first_ssh_s)} to {_fmt(r.last_ssh_s)}, "
        f"scheduler up at {_fmt(r.scheduler_up_s)}, last worker up "
        f"at {_fmt(r.last_worker_up_s)}",
        flush=True,
    )
    for at, ms, cpu, wait, gc_ms, sites in r.top_stalls:
        print(
            f"  stall {ms:4.0f} ms at {at:5.2f} s: loop CPU {cpu:3.0f} ms, waiting for a CPU "
            f"{wait:3.0f} ms, garbage collection {gc_ms:3.0f} ms"
            + (f"; sampled in {sites}" if sites else ""),
            flush=True,
        )
    if r.failed_nodes:
        print(
            f"  {r.failed_nodes} node(s) failed to come up (the cluster dropped or replaced them)",
            flush=True,
        )
    leftover = {k: v for k, v in r.left.items() if v}
    print(f"  left after close: {leftover or 'nothing'}", flush=True)
    for site, ms, example in r.stall_sites:
        print(f"  stall site {ms:7.0f} ms sampled: {site}", flush=True)
        print("    " + example.rstrip().replace("\n", "\n    "), flush=True)
    if r.slow_callbacks:
        print(f"  asyncio slow callbacks (> {TARGET_STALL_MS:.0f} ms): {len(r.slow_callbacks)}")
        for line in r.slow_callbacks[:10]:
            print(f"    {line[:300]}")


def _count(value: float) -> str:
    """A mean request count: whole numbers without decimals."""
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _worst(summaries: list[StallSummary]) -> dict[str, float]:
    """Per statistic, the worst value over several runs."""
    return {
        field.name: max(getattr(s, field.name) for s in summaries)
        for field in dataclasses.fields(StallSummary)
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(results: list[RunResult], args: argparse.Namespace) -> dict[str, Any]:
    """Per size: median times, requests, worst stall; plus the targets."""
    by_size: dict[int, list[RunResult]] = collections.defaultdict(list)
    for r in results:
        by_size[r.workers].append(r)
    rows: list[dict[str, Any]] = []
    for workers, runs in sorted(by_size.items()):
        routes: collections.Counter[str] = collections.Counter()
        close_routes: collections.Counter[str] = collections.Counter()
        for r in runs:
            routes.update(r.create_requests)
            close_routes.update(r.close_requests)
        requests = _median([r.requests for r in runs])
        rows.append(
            {
                "workers": workers,
                "runs": len(runs),
                "ready_s": _median([r.ready_s for r in runs]),
                "create_s": _median([r.create_s for r in runs]),
                "close_s": _median([r.close_s for r in runs]),
                "requests": requests,
                "requests_per_worker": requests / workers,
                "close_requests": _median([sum(r.close_requests.values()) for r in runs]),
                "routes": {k: v / len(runs) for k, v in sorted(routes.items())},
                "close_routes": {k: v / len(runs) for k, v in sorted(close_routes.items())},
                "create_stalls": _worst([r.create_stalls for r in runs]),
                "connect_stalls": _worst([r.connect_stalls for r in runs]),
                "gc_max_ms": max(r.gc_max_ms for r in runs),
                "failed_nodes": sum(r.failed_nodes for r in runs),
                "client_cpu_s": _median([r.client_cpu_s for r in runs]),
                "emulator_cpu_s": _median([r.emulator_cpu_s for r in runs]),
                "machine_busy": _median([r.machine_busy for r in runs]),
                "phases": {
                    name: _median([getattr(r, name) for r in runs if getattr(r, name) is not None])
                    for name in (
                        "first_post_s",
                        "last_post_s",
                        "first_ssh_s",
                        "last_ssh_s",
                        "scheduler_up_s",
                        "last_worker_up_s",
                    )
                },
                "left": {
                    k: max(r.left.get(k, 0) for r in runs)
                    for k in (*KINDS, "processes", "state_dir")
                },
            }
        )
    table = {row["workers"]: row for row in rows}
    sizes = sorted(table)
    marginal = None
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        marginal = (table[hi]["requests"] - table[lo]["requests"]) / (hi - lo)
    small, large = args.ratio
    ratio = (
        table[large]["ready_s"] / table[small]["ready_s"]
        if small in table and large in table
        else None
    )
    return {"rows": rows, "marginal_requests_per_worker": marginal, "ratio": ratio}


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        cells = (
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the results as Markdown tables (ready to paste into docs/benchmarks.md)."""
    rows = summary["rows"]
    header = [
        "workers",
        "ready s",
        "create s",
        "close s",
        "requests",
        "per worker",
        "close requests",
        "client CPU s",
        "nodes CPU s",
        "machine busy",
        "failed nodes",
        "left",
    ]
    body = [
        [
            f"1+{row['workers']}",
            f"{row['ready_s']:.1f}",
            f"{row['create_s']:.1f}",
            f"{row['close_s']:.1f}",
            _count(row["requests"]),
            f"{row['requests_per_worker']:.2f}",
            _count(row["close_requests"]),
            f"{row['client_cpu_s']:.1f}",
            f"{row['emulator_cpu_s']:.1f}",
            f"{100 * row['machine_busy']:.0f} %",
            f"{row['failed_nodes']}",
            f"{sum(row['left'].values())}",
        ]
        for row in rows
    ]
    print()
    print(_markdown(header, body))
    print("\nEvent-loop stalls during create (worst run), milliseconds:\n")
    header = [
        "workers",
        "max stall",
        "stalls > 20",
        "max own stall",
        "own > 20",
        "max loop CPU",
        "max GC pause",
        "max stall, Client connect",
    ]
    body = [
        [
            f"1+{row['workers']}",
            f"{row['create_stalls']['max_ms']:.0f}",
            f"{row['create_stalls']['over_20ms']:.0f}",
            f"{row['create_stalls']['max_own_ms']:.0f}",
            f"{row['create_stalls']['own_over_20ms']:.0f}",
            f"{row['create_stalls']['max_loop_cpu_ms']:.0f}",
            f"{row['gc_max_ms']:.0f}",
            f"{row['connect_stalls']['max_ms']:.0f}",
        ]
        for row in rows
    ]
    print(_markdown(header, body))
    print("\nWhere the time goes (median seconds since the start of create):\n")
    phases = [
        ("last POST /servers issued", "last_post_s"),
        ("first node accepts SSH", "first_ssh_s"),
        ("last node accepts SSH", "last_ssh_s"),
        ("scheduler up", "scheduler_up_s"),
        ("last worker up", "last_worker_up_s"),
    ]
    table = [
        [label, *(f"{row['phases'].get(key, float('nan')):.1f}" for row in rows)]
        for label, key in phases
    ]
    table.append(["ready (Client sees all workers)", *(f"{row['ready_s']:.1f}" for row in rows)])
    print(_markdown(["phase", *(f"1+{row['workers']}" for row in rows)], table))
    for phase, key in (("create (until ready)", "routes"), ("close", "close_routes")):
        print(f"\nAPI requests during {phase}, by route (mean per run):\n")
        routes = sorted({route for row in rows for route in row[key]})
        table = [
            [f"`{route}`", *(_count(row[key].get(route, 0)) for row in rows)] for route in routes
        ]
        table.append(
            ["total", *(_count(sum(row[key].values())) for row in rows)],
        )
        print(_markdown(["route", *(f"1+{row['workers']}" for row in rows)], table))
    print("\ntargets (issue 3):")
    marginal = summary["marginal_requests_per_worker"]
    if marginal is not None:
        verdict = "met" if marginal <= TARGET_REQUESTS_PER_WORKER else "MISSED"
        print(
            f"  API requests per additional worker: {marginal:.2f} "
            f"(target <= {TARGET_REQUESTS_PER_WORKER}): {verdict}"
        )
    ratio = summary["ratio"]
    small, large = args.ratio
    if ratio is not None:
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(f"  T(1+{large}) / T(1+{small}) = {ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")
    worst = max(row["create_stalls"]["max_ms"] for row in rows)
    own = max(row["create_stalls"]["max_own_ms"] for row in rows)
    verdict = "met" if worst <= TARGET_STALL_MS else "MISSED"
    print(
        f"  longest event-loop stall: {worst:.1f} ms (target <= {TARGET_STALL_MS:.0f}): {verdict}"
    )
    verdict = "met" if own <= TARGET_STALL_MS else "MISSED"
    print(f"  ... own stalls (not waiting for a CPU): {own:.1f} ms: {verdict}")
    left = {k: v for row in rows for k, v in row["left"].items() if v}
    print(f"  left after close: {left or 'nothing'}")


def describe_machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark HetznerCluster creation on the local emulator.",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 4, 16], help="worker counts (default 1 4 16)"
    )
    parser.add_argument(
        "--ratio",
        type=int,
        nargs=2,
        default=[1, 8],
        metavar=("SMALL", "LARGE"),
        help="worker counts compared for T(1+LARGE)/T(1+SMALL) (default 1 8)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="factor on the realistic profile's durations (default %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the unmeasured warm-up run"
    )
    parser.add_argument(
        "--emulator",
        choices=("process", "thread"),
        default="process",
        help="run the emulator in a child process (default) or in a thread of this process",
    )
    parser.add_argument(
        "--emulator-nice",
        type=int,
        default=10,
        help="niceness of the emulator process and its nodes, so that they do not starve "
        "the client as they would not on real servers (default %(default)s; 0: same priority)",
    )
    parser.add_argument(
        "--rate-limit", type=int, default=3600, help="emulator's requests per hour (default 3600)"
    )
    parser.add_argument(
        "--stall-interval",
        type=float,
        default=0.005,
        help="period of the stall monitor's wakeup in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="sample the loop thread's stack during stalls and report where they happen",
    )
    parser.add_argument(
        "--sample-threshold",
        type=float,
        default=10.0,
        help="with --diagnose: sample once a wakeup is this many ms overdue (default 10)",
    )
    parser.add_argument(
        "--asyncio-debug",
        action="store_true",
        help=f"asyncio debug mode; report callbacks slower than {TARGET_STALL_MS:.0f} ms",
    )
    parser.add_argument("--timeout", type=float, default=600, help="bound on each wait (s)")
    parser.add_argument("--json", type=Path, help="also write all measurements to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO and full stacks")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: dump stacks
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (clusters, emulator) as on Ctrl-C
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, _interrupt)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    import scherbelberg_dask

    print(f"machine: {describe_machine()}")
    print(
        f"scherbelberg_dask {scherbelberg_dask.__version__} from "
        f"{Path(scherbelberg_dask.__file__).parent}"
    )
    print(
        f"emulator: realistic profile x {args.time_scale} ({args.emulator}); "
        f"stall monitor every {1000 * args.stall_interval:.0f} ms\n",
        flush=True,
    )
    started = time.monotonic()
    results = run_benchmark(args)
    summary = summarise(results, args)
    print_table(summary, args)
    print(f"\ntotal benchmark time {time.monotonic() - started:.0f} s; {describe_machine()}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": describe_machine(),
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "summary": summary,
                    "runs": [dataclasses.asdict(r) for r in results],
                },
                indent=1,
            )
        )
    left = any(v for row in summary["rows"] for v in row["left"].values())
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
