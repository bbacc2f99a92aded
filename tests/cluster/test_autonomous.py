"""Autonomous clusters on the emulator: a controller on the scheduler node adapts the
cluster and deletes it when idle or too old, with the creating process gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
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


async def test_idle_timeout_set_from_another_process(cloud, fast_controller) -> None:  # type: ignore[no-untyped-def]
    """``ls`` shows the autonomy; an attached handle sets the idle timeout; the idle
    cluster then deletes itself, with no process of ours running for it."""
    from scherbelberg_dask.cli.listing import all_clusters

    cluster = await HetznerCluster(
        workers=1, prefix="idle", autonomous=True, idle_timeout="off", asynchronous=True
    )
    async with Client(cluster, asynchronous=True) as client:
        assert await client.submit(lambda v: v + 1, 1) == 2
    status = await _wait_status(cluster, lambda s: s["clients"] == 0, cloud)
    assert status["idle_timeout"] is None and status["deadlines"]["idle"] is None
    await cluster.detach()

    async def listed() -> dict[str, Any]:
        while True:
            rows = {r["prefix"]: r for r in (await all_clusters())["clusters"]}
            info = rows["idle"]["autonomous"]
            if info is not None and info["idle_seconds"] is not None:
                return info  # type: ignore[no-any-return]
            await asyncio.sleep(0.2)

    info = await asyncio.wait_for(listed(), 60)
    assert info["deletes_at"] is None  # idle, but no idle timeout: it stays

    other = await HetznerCluster.from_existing("idle", asynchronous=True)
    acknowledged = await other.set_timeouts(idle_timeout="1s")
    assert acknowledged["idle_timeout"] == 1.0 and acknowledged["driver"] == "controller"
    await other.detach()
    await _wait_for(lambda: count_left(cloud, "idle") == 0, cloud=cloud)
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


async def _status(cluster: Any) -> dict[str, Any]:
    return await cluster.autonomy()  # type: ignore[no-any-return]


async def _wait_status(cluster: Any, predicate: Any, cloud: Any, timeout: float = 60) -> dict:
    """The controller's first published status that satisfies ``predicate``."""

    async def poll() -> dict[str, Any]:
        while True:
            status = await _status(cluster)
            if status is not None and predicate(status):
                return status
            await asyncio.sleep(0.1)

    try:
        return await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        print(_controller_logs(cloud))
        raise


async def test_max_lifetime_deletes_a_busy_cluster(cloud, fast_controller) -> None:  # type: ignore[no-untyped-def]
    cluster = await HetznerCluster(
        workers=1,
        prefix="old",
        autonomous=True,
        idle_timeout="off",
        max_lifetime="6s",
        asynchronous=True,
    )
    client = await Client(cluster, asynchronous=True)
    busy = client.submit(time.sleep, 600)  # never done before the lifetime is up
    status = await _wait_status(cluster, lambda s: s["tasks"] == 1, cloud)
    assert status["clients"] >= 1 and status["idle_since"] is None
    await _wait_for(lambda: count_left(cloud, "old") == 0, cloud=cloud)
    del busy
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 10)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(cluster.detach(), 10)
    assert_nothing_left(cloud, "old")


def _files_with(root: Path, secret: str, skip: str) -> list[Path]:
    """Files below ``root`` that contain ``secret``, except below directories ``skip``."""
    found = []
    for path in root.rglob("*"):
        if skip in path.parts or not path.is_file() or path.is_symlink():
            continue
        try:
            if secret.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


def _environment(dask_worker: Any = None, dask_scheduler: Any = None) -> str:
    return "\n".join(f"{k}={v}" for k, v in os.environ.items())


# The nodes do not have this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def test_handoff_restart_and_token(cloud, fast_controller) -> None:  # type: ignore[no-untyped-def]
    """One cluster: the controller adapts, survives a restart, keeps the token to
    itself, and yields to an attached client's ``scale``."""
    from scherbelberg_dask.bootstrap.profiles import CONTROLLER_DIR, CONTROLLER_USER

    token = os.environ["HCLOUD_TOKEN"]
    cluster = await HetznerCluster(
        workers=0, prefix="ctl", autonomous=True, idle_timeout="off", asynchronous=True
    )
    try:
        await cluster.adapt(minimum=1, maximum=2, interval="200ms", wait_count=3)
        await _wait_for(lambda: len(_workers(cloud, "ctl")) == 1, cloud=cloud)
        before = await _wait_status(cluster, lambda s: s["adapting"], cloud)
        assert before["driver"] == "controller" and before["adapt"]["maximum"] == 2
        assert before["package"].endswith("scherbelberg_dask.zip/scherbelberg_dask")

        # A restart of the controller (killed: the service manager starts it again).
        os.kill(before["pid"], signal.SIGKILL)
        after = await _wait_status(
            cluster, lambda s: s["started"] != before["started"] and s["adapting"], cloud
        )
        for key in ("generation", "driver", "adapt", "idle_timeout", "idle_since", "created"):
            assert after[key] == before[key], key

        # The token: in the controller's own 0600 file, nowhere else on any node, not in
        # the environment of the scheduler or of a worker.
        root = Path(cloud.directory)
        home = f"*/home/{CONTROLLER_USER}/{CONTROLLER_DIR}"
        token_files = await asyncio.to_thread(lambda: list(root.glob(f"{home}/hcloud-token")))
        assert len(token_files) == 1
        assert stat.S_IMODE(token_files[0].stat().st_mode) == 0o600
        assert await asyncio.to_thread(_files_with, root, token, CONTROLLER_USER) == []
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(1, timeout=60)
            environments = await client.run(_environment)
            environments["scheduler"] = await client.run_on_scheduler(_environment)
        assert len(environments) == 2
        assert all(token not in text for text in environments.values())

        # An attached client's scale takes over; the controller stops adapting.
        other = await HetznerCluster.from_existing("ctl", asynchronous=True)
        try:
            await other.scale(2)
            await _wait_for(lambda: len(_workers(cloud, "ctl")) == 2, cloud=cloud)
            taken = await _wait_status(cluster, lambda s: s["driver"] == "client", cloud)
            assert not taken["adapting"]
            # Later rounds of the controller leave the client's two workers alone (its
            # own policy, minimum 1 without work, would retire one).
            await _wait_status(cluster, lambda s: s["now"] > taken["now"] + 2, cloud)
            assert len(_workers(cloud, "ctl")) == 2
        finally:
            await other.close()
    finally:
        await cluster.close()
    assert_nothing_left(cloud, "ctl")
