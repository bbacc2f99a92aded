"""The client's Dask configuration reaches every node: at creation, scale-up, attach."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cluster.dask_config_shipping import DaskConfigTooLargeError
from tests.cluster.conftest import assert_nothing_left

SHIPPED = {
    "distributed.worker.memory.target": 0.55,
    "distributed.scheduler.worker-saturation": 2.5,
    "myproject.answer": 42,
}


async def _check(client: Client, workers: int) -> None:
    # Defined here, so that cloudpickle sends them by value (the nodes lack our tests).
    def worker_view(dask_worker: Any) -> dict[str, Any]:
        return {
            "target": dask_worker.memory_manager.memory_target_fraction,
            "answer": dask.config.get("myproject.answer", None),
            "scherbelberg": dask.config.get("scherbelberg", None),
            "cloudprovider": dask.config.get("cloudprovider", None),
        }

    def scheduler_view(dask_scheduler: Any) -> dict[str, Any]:
        return {
            "saturation": dask_scheduler.WORKER_SATURATION,
            "answer": dask.config.get("myproject.answer", None),
            "scherbelberg": dask.config.get("scherbelberg", None),
        }

    views = await client.run(worker_view)
    assert len(views) == workers
    for view in views.values():
        assert view == {"target": 0.55, "answer": 42, "scherbelberg": None, "cloudprovider": None}
    scheduler = await client.run_on_scheduler(scheduler_view)
    assert scheduler == {"saturation": 2.5, "answer": 42, "scherbelberg": None}


async def test_config_reaches_scheduler_and_workers_also_after_scale_up(cloud) -> None:  # type: ignore[no-untyped-def]
    with dask.config.set(SHIPPED):
        cluster = HetznerCluster(workers=1, prefix="conf", asynchronous=True)
    # Changed after creation: the cluster keeps what it had at its creation.
    with dask.config.set({"distributed.worker.memory.target": 0.8}):
        async with cluster, Client(cluster, asynchronous=True) as client:
            await _check(client, workers=1)
            cluster.scale(2)
            await client.wait_for_workers(2, timeout=120)
            await _check(client, workers=2)

            # The node's files never carry the API token or our own settings.
            def node_json() -> str:  # as the node runner reads it, from the home directory
                return (Path.home() / "scherbelberg" / "node.json").read_text()

            for text in (await client.run(node_json)).values():
                assert cloud.token not in text
                assert "scherbelberg.api" not in text and '"api"' not in text
                assert json.loads(text)["dask_config"]["myproject"] == {"answer": 42}
    assert_nothing_left(cloud)


async def test_from_existing_keeps_what_the_creator_shipped(cloud) -> None:  # type: ignore[no-untyped-def]
    with dask.config.set(SHIPPED):
        creator = HetznerCluster(workers=1, prefix="keep", asynchronous=True)
        await creator
    await creator.detach()
    attached = await HetznerCluster.from_existing("keep", asynchronous=True)
    try:
        async with Client(attached, asynchronous=True) as client:
            attached.scale(2)
            await client.wait_for_workers(2, timeout=120)
            await _check(client, workers=2)
    finally:
        await attached.destroy()
    assert_nothing_left(cloud)


def test_too_large_a_config_creates_nothing(cloud) -> None:  # type: ignore[no-untyped-def]
    with (
        dask.config.set({"myproject.blob": "x" * 70_000}),
        pytest.raises(DaskConfigTooLargeError, match=r"biggest keys: myproject\.blob"),
    ):
        HetznerCluster(workers=1, prefix="huge")
    assert_nothing_left(cloud)
