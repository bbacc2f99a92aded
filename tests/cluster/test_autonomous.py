"""Autonomous clusters on the emulator: a controller on the scheduler node adapts the
cluster and deletes it when idle or too old, with the creating process gone."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from tests.cluster.conftest import assert_nothing_left, count_left, resources


async def _wait_for(predicate: Any, timeout: float = 90, cloud: Any = None) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - remote state, bounded by the timeout
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        if cloud is not None:
            print(_controller_logs(cloud))
        raise


def _controller_logs(cloud: Any) -> str:
    """The controllers' service logs (shown when a wait fails)."""
    logs = sorted(Path(cloud.directory).glob("*/var/log/services/scherbelberg-controller.log"))
    return "\n".join(f"--- {p}\n{p.read_text()[-6000:]}" for p in logs)


@pytest.fixture
def fast_controller():  # type: ignore[no-untyped-def]
    with dask.config.set({"scherbelberg.controller.interval": 0.2}):
        yield


def _workers(cloud: Any, prefix: str) -> list[str]:
    return sorted(
        s["name"]
        for s in resources(cloud, prefix)["servers"]
        if s["labels"].get("scherbelberg/role") == "worker"
    )


async def test_idle_cluster_deletes_itself(cloud, fast_controller) -> None:  # type: ignore[no-untyped-def]
    cluster = await HetznerCluster(
        workers=1, prefix="idle", autonomous=True, idle_timeout="2s", asynchronous=True
    )
    async with Client(cluster, asynchronous=True) as client:
        assert await client.submit(lambda v: v + 1, 1) == 2
        status = cluster.autonomy()
        status = await status if asyncio.iscoroutine(status) else status
        await _wait_for(lambda: True)
    await cluster.detach()
    assert count_left(cloud, "idle") > 0
    await _wait_for(lambda: count_left(cloud, "idle") == 0)
    assert_nothing_left(cloud, "idle")


async def test_survives_its_creator_killed(cloud, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The creator adapts, leaves work and dies: the cluster scales for it, then goes."""
    env = {
        **os.environ,
        "DASK_SCHERBELBERG__CONTROLLER__INTERVAL": "0.2",
        "DASK_SCHERBELBERG__STATE_DIR": str(tmp_path / "creator-state"),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    creator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.cluster.autonomous_creator",
        "orphan",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert creator.stdout is not None
        line = await asyncio.wait_for(creator.stdout.readline(), 120)
        assert line.strip() == b"ready"
    finally:
        creator.kill()  # SIGKILL: no close, no cleanup of any kind
        await creator.wait()
    assert creator.returncode == -signal.SIGKILL
    seen: set[str] = set()

    def scaled_up() -> bool:
        seen.update(_workers(cloud, "orphan"))
        return bool(seen)

    await _wait_for(scaled_up, cloud=cloud)  # the controller scales up for the work ...
    await _wait_for(lambda: count_left(cloud, "orphan") == 0, 180, cloud)  # ... and away
    assert 1 <= len(seen) <= 3
    assert_nothing_left(cloud, "orphan")
