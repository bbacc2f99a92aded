"""A whole cluster lifecycle against the emulator: create, compute, scale, close."""

from __future__ import annotations

import asyncio
import stat

import dask.array as da
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from tests.cluster.conftest import assert_nothing_left, resources


async def _wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - remote state, bounded by the timeout
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_async_lifecycle(cloud) -> None:  # type: ignore[no-untyped-def]
    async with HetznerCluster(workers=2, prefix="life", asynchronous=True) as cluster:
        # One server per node, labelled, on the private network, behind the firewall.
        made = resources(cloud, "life")
        assert sorted(s["name"] for s in made["servers"]) == [
            "life-node-scheduler",
            "life-node-worker000",
            "life-node-worker001",
        ]
        assert len(made["networks"]) == len(made["firewalls"]) == len(made["ssh_keys"]) == 1
        assert cluster.scheduler_address.startswith("tls://")
        async with Client(cluster, asynchronous=True) as client:
            workers = (await client.scheduler.identity())["workers"].values()
            assert sorted(w["name"] for w in workers) == ["worker000", "worker001"]
            x = da.arange(10_000, chunks=1_000)
            assert await client.compute(x.sum()) == sum(range(10_000))

            cluster.scale(3)
            await client.wait_for_workers(3, timeout=120)
            assert len(resources(cloud, "life")["servers"]) == 4

            cluster.scale(1)
            await _wait_for(lambda: len(resources(cloud, "life")["servers"]) == 2)
            info = await client.scheduler.identity()
            assert [w["name"] for w in info["workers"].values()] == ["worker000"]
            assert await client.compute(x.sum()) == sum(range(10_000))
        state_dir = cluster.provisioner.state.path
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert_nothing_left(cloud)
    assert not state_dir.exists()


def test_sync_with_statement(cloud) -> None:  # type: ignore[no-untyped-def]
    with HetznerCluster(workers=1, prefix="sync") as cluster, Client(cluster) as client:
        assert client.submit(lambda v: v + 1, 41).result(timeout=60) == 42
        assert cluster.dashboard_link.startswith("http://127.0.0.1:")
        node = cluster.worker_nodes[0]
        assert node.name == "worker000"
        assert node.private_ip is not None and node.public_ip is not None
    assert_nothing_left(cloud)


def test_invalid_input_creates_nothing(cloud) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="valid"):
        HetznerCluster(workers=1, prefix="bad", worker_type="cx99")
    with pytest.raises(ValueError, match="prefix"):
        HetznerCluster(workers=1, prefix="Bad_Prefix")
    with pytest.raises(ValueError, match="whole number"):
        HetznerCluster(workers=-1, prefix="bad")
    assert_nothing_left(cloud)


def test_logs_include_node_logs(cloud) -> None:  # type: ignore[no-untyped-def]
    with HetznerCluster(workers=1, prefix="logs") as cluster:
        logs = cluster.get_logs()
        assert "worker000 (node)" in logs and "scheduler (node)" in logs
        # The nodes' service logs show the Dask processes starting.
        assert "Start Nanny at" in logs["worker000 (node)"]
        assert "Scheduler at:" in logs["scheduler (node)"]
        assert any("Scheduler" in key for key in logs)
    assert_nothing_left(cloud)
