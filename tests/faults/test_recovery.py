"""Data safety over many scale-downs, recovery from a killed client, and rate limits."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
from distributed import Client, wait

from scherbelberg_dask import HetznerCluster, nuke
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.pytest_plugin import free_port
from tests.cluster.conftest import count_left

pytestmark = pytest.mark.faults

CYCLES = int(os.environ.get("SCHERBELBERG_DATA_CYCLES", "4"))
KILLS = int(os.environ.get("SCHERBELBERG_KILLS", "3"))  # kill points, 1 to 7


async def _worker_count(client: Client) -> int:
    return len((await client.scheduler.identity())["workers"])


async def _until(predicate: Any, timeout: float = 120) -> None:
    async def poll() -> None:
        while not await predicate():  # noqa: ASYNC110 - remote state, bounded below
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


async def test_scale_down_and_adapt_down_lose_no_keys(hetzner_emulator_env: Emulator) -> None:
    """Persisted data survives every scale-down and adapt-down (retire before delete).

    The data is scattered, so it cannot be recomputed: a key lost is a key missing.
    """
    lost = checked = 0
    async with (
        HetznerCluster(workers=1, prefix="data", asynchronous=True) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        rng = np.random.default_rng(1)
        for cycle in range(CYCLES):
            cluster.scale(3)
            await client.wait_for_workers(3, timeout=120)
            values = rng.random(60_000)
            futures = client.scatter(np.array_split(values, 12))
            futures = await futures
            await wait(futures)
            holders = await client.who_has(futures)
            assert len({w for addrs in holders.values() for w in addrs}) >= 2
            if cycle % 2:
                cluster.adapt(minimum=1, maximum=3, interval="300ms", wait_count=2)
            else:
                cluster.scale(1)

            async def one_left() -> bool:
                return await _worker_count(client) == 1

            await _until(one_left)
            if cycle % 2:
                cluster._adaptive.stop()  # back to manual scaling for the next cycle
            missing = [f.key for f in futures if f.status != "finished"]
            lost += len(missing)
            checked += len(futures)
            total = sum(float(chunk.sum()) for chunk in await client.gather(futures))
            assert total == pytest.approx(values.sum())
    print(f"data safety: {CYCLES} scale-down cycles, {checked} keys checked, {lost} lost")
    assert lost == 0


def _poll_until(predicate: Any, timeout: float) -> None:
    """Wait (bounded) for a condition on another process's progress."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def test_killed_client_is_recovered(hetzner_emulator_env: Emulator) -> None:
    """kill -9 of the creating process at random points of its start.

    A cluster that was fully up is taken over with ``from_existing`` (it computes, then
    ``destroy`` removes it); a half-made one is removed by ``nuke``.  Nothing is left.
    """
    cloud = hetzner_emulator_env
    state_dir = dask.config.get("scherbelberg.state-dir")
    code = textwrap.dedent(
        """
        import sys, time
        from scherbelberg_dask import HetznerCluster
        print("starting", flush=True)
        cluster = HetznerCluster(workers=2, prefix=sys.argv[1])
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    # Kill points: after this many of the cluster's resources exist (key, network,
    # firewall, then three servers), or once the whole cluster is up (always tried).
    partial: list[int | str] = [0, 1, 3, 4, 5, 6]
    random.Random(3).shuffle(partial)
    points = ["ready", *partial[: max(0, KILLS - 1)]]
    made: dict[str, int] = {}  # resources of each kill point's cluster when killed
    for index, point in enumerate(points):
        prefix = f"kill{index}"
        env = {**os.environ, **cloud.env(), "DASK_SCHERBELBERG__STATE_DIR": str(state_dir)}
        process = subprocess.Popen(
            [sys.executable, "-c", code, prefix],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "starting"
        if point == "ready":
            assert process.stdout.readline().strip() == "ready"
        else:
            _poll_until(
                lambda p=prefix, n=point, proc=process: (
                    count_left(cloud, p) >= n or proc.poll() is not None
                ),
                120,
            )
        assert process.poll() is None, f"the creating process ended by itself (point {point})"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        made[str(point)] = count_left(cloud, prefix)
        if point == "ready":
            with HetznerCluster.from_existing(prefix) as cluster, Client(cluster) as client:
                client.wait_for_workers(2, timeout=60)
                assert client.submit(sum, range(10)).result(timeout=60) == 45
                cluster.destroy()
        else:
            nuke(prefix)
        assert count_left(cloud, prefix) == 0, f"kill at {point}: resources left after recovery"
    print(f"killed client: resources when killed {made}; all recovered, 0 left")


def test_many_workers_with_a_small_rate_limit_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client paces itself by the RateLimit headers instead of failing on 429."""
    workers = int(os.environ.get("SCHERBELBERG_RATE_WORKERS", "6"))

    async def main() -> dict[str, int]:
        async with Emulator(
            ssh_port=free_port(), rate_limit=3600, rate_limit_capacity=12
        ) as emulator:
            for name, value in emulator.env().items():
                monkeypatch.setenv(name, value)
            with dask.config.set(
                {**emulator.dask_config(), "scherbelberg.state-dir": str(tmp_path)}
            ):
                async with (
                    HetznerCluster(workers=workers, prefix="rate", asynchronous=True) as cluster,
                    Client(cluster, asynchronous=True) as client,
                ):
                    await client.wait_for_workers(workers, timeout=300)
                    assert not cluster.failures
            counters = emulator.counters()
            assert count_left(emulator, "rate") == 0
            return counters

    counters = asyncio.run(main())
    requests = counters["total"]["requests"]
    refused = counters["by_status"].get("429", 0)
    print(f"rate limit: {workers} workers, {requests} requests, {refused} answered 429")
    # The bucket really was too small for this cluster: pacing was needed ...
    assert requests > 3 * 12
    # ... and the client paced itself by the RateLimit headers instead of running into
    # the limit (the few 429s allowed are answers overtaken by others in flight).
    assert refused <= max(2, requests // 50), counters
