"""``demo``: a whole cluster lifecycle on an in-process emulator, with real Dask work."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dask.config

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="workers to start with")
    parser.add_argument("--scale-to", type=int, default=4, help="workers to scale up to")
    parser.add_argument("--size", type=int, default=2000, help="matrix size for the work")
    parser.add_argument(
        "--prefix", default="demo", help="name of the demo cluster (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.workers, args.scale_to, args.size, args.prefix))


async def _step(what: str, action: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    logger.info("%s ...", what)
    result = await action()
    print(f"  {what:<48} {time.perf_counter() - started:7.2f} s", flush=True)
    return result


async def _wait_workers(client: Any, count: int, timeout: float = 120) -> None:
    async def settled() -> None:
        # The scheduler's worker count is remote state: poll it (bounded by the timeout).
        while len((await client.scheduler.identity())["workers"]) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    await asyncio.wait_for(settled(), timeout)


async def _demo(workers: int, scale_to: int, size: int, prefix: str = "demo") -> int:
    import dask.array as da
    from distributed import Client

    from scherbelberg_dask import HetznerCluster
    from scherbelberg_dask.emulator import Emulator

    print("scherbelberg-dask demo: a Dask cluster on the local Hetzner Cloud emulator\n")
    with tempfile.TemporaryDirectory(prefix="sb-demo-") as state_dir:
        async with Emulator(profile="instant") as emulator:
            env = emulator.env()
            os.environ.update(
                HCLOUD_ENDPOINT=env["HCLOUD_ENDPOINT"], HCLOUD_TOKEN=env["HCLOUD_TOKEN"]
            )
            with dask.config.set(emulator.dask_config()):
                cluster = await _step(
                    f"create cluster: scheduler + {workers} workers",
                    lambda: HetznerCluster(
                        workers=workers, prefix=prefix, asynchronous=True, state_dir=state_dir
                    ).__aenter__(),
                )
                try:
                    async with Client(cluster, asynchronous=True) as client:
                        print(f"  dashboard: {cluster.dashboard_link}")
                        x = da.random.random((size, size), chunks=size // 4)
                        total = await _step(
                            f"compute (x @ x.T).mean() on {size}x{size}",
                            lambda: client.compute((x @ x.T).mean()),
                        )
                        print(f"  result: {total:.4f}")
                        cluster.scale(scale_to)
                        await _step(
                            f"scale up to {scale_to} workers",
                            lambda: _wait_workers(client, scale_to),
                        )
                        total = await _step(
                            f"compute again on {scale_to} workers",
                            lambda: client.compute((x @ x.T).mean()),
                        )
                        cluster.scale(1)
                        await _step("scale down to 1 worker", lambda: _wait_workers(client, 1))
                finally:
                    await _step("close the cluster", lambda: cluster.__aexit__(None, None, None))
            left = {
                kind: len(items)
                for kind, items in emulator.snapshot().items()
                if kind in ("servers", "networks", "firewalls", "ssh_keys")
            }
            print(f"\ncloud resources left after close: {left}")
            return 0 if not any(left.values()) else 1
