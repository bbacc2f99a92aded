"""The user's own example runs: retired server types resolve to their successors.

``HetznerCluster(workers=8, worker_type="ccx52")`` (trimmed to one worker) on the
emulator, whose catalog retires ccx52 as Hetzner did.
"""

from __future__ import annotations

import logging
from typing import Any

import dask.config
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cloud.errors import CatalogError
from tests.cluster.conftest import assert_nothing_left, resources


def _successor_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "using its successor" in record.getMessage()
    ]


def _types(cloud: Any, prefix: str) -> dict[str, str]:
    """Server name → server type name of cluster ``prefix``."""
    return {s["name"]: s["server_type"] for s in resources(cloud, prefix)["servers"]}


def _server_type_name(value: Any) -> str:
    return value["name"] if isinstance(value, dict) else str(value)


def test_the_mission_example_gets_ccx53_workers_with_one_warning(
    cloud: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with HetznerCluster(workers=1, worker_type="ccx52", prefix="mission") as cluster:
        types = {k: _server_type_name(v) for k, v in _types(cloud, "mission").items()}
        assert types == {"mission-node-scheduler": "cx23", "mission-node-worker000": "ccx53"}
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            # Dask sees what a ccx53 brings (32 cores), and a scale-up adds no warning.
            (worker,) = client.scheduler_info()["workers"].values()
            assert worker["nthreads"] == 32
            cluster.scale(2)
            client.wait_for_workers(2, timeout=120)
        types = {k: _server_type_name(v) for k, v in _types(cloud, "mission").items()}
        assert types["mission-node-worker001"] == "ccx53"
    (line,) = _successor_warnings(caplog)
    assert line.startswith("worker_type ccx52 (32 cores, 128 GB) is retired")
    assert "successor ccx53 (32 cores, 128 GB)" in line and "EUR/month) less" in line
    assert cloud.token not in caplog.text
    assert_nothing_left(cloud)


@pytest.mark.parametrize("how", ["keyword", "config"])
def test_error_policy_fails_before_anything_exists(cloud: Any, how: str) -> None:
    keyword = {"retired_types": "error"} if how == "keyword" else {}
    configured = {"scherbelberg.retired-types": "error"} if how == "config" else {}
    with (
        dask.config.set(configured),
        pytest.raises(CatalogError, match=r"worker_type: .*'ccx52' is retired.*successor is ccx53"),
    ):
        HetznerCluster(workers=1, worker_type="ccx52", prefix="strict", **keyword)
    assert_nothing_left(cloud)


def test_an_unknown_type_still_fails_with_the_nearest(cloud: Any) -> None:
    with pytest.raises(CatalogError, match=r"unknown server type 'ccx54'; nearest: ccx5"):
        HetznerCluster(workers=1, worker_type="ccx54", prefix="unknown")
    assert_nothing_left(cloud)


def test_attached_cluster_scales_up_with_the_successor(
    cloud: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster asked for cx11 (retired since): attached, it grows with cx23 workers."""
    with HetznerCluster(workers=1, scheduler_type="cx11", worker_type="cx11", prefix="old"):
        # Its creator said it once for both roles.
        (line,) = _successor_warnings(caplog)
        assert line.startswith("scheduler_type and worker_type cx11 (1 core, 2 GB) is retired")
        caplog.clear()
        with HetznerCluster.from_existing("old") as attached, Client(attached) as client:
            attached.scale(2)
            client.wait_for_workers(2, timeout=120)
        # One line about the type new workers get (the scheduler exists), however many.
        (line,) = _successor_warnings(caplog)
        assert line.startswith("worker_type cx11 (1 core, 2 GB) is retired")
        types = {k: _server_type_name(v) for k, v in _types(cloud, "old").items()}
        assert types["old-node-worker001"] == "cx23"

        # Asked to refuse retired types, it still attaches, but cannot grow.
        with HetznerCluster.from_existing("old", retired_types="error") as strict:
            assert sorted(strict.worker_spec) == ["worker000", "worker001"]
            with pytest.raises(CatalogError, match=r"worker_type: .*'cx11' is retired"):
                strict.scale(3)
            assert sorted(strict.worker_spec) == ["worker000", "worker001"]
        assert len(_types(cloud, "old")) == 3
    assert_nothing_left(cloud)


def test_retired_types_is_remembered_for_from_existing(cloud: Any) -> None:
    with HetznerCluster(workers=0, prefix="remember", retired_types="error") as cluster:
        with HetznerCluster.from_existing("remember") as attached:
            assert attached.settings.retired_types == "error"
        assert cluster.settings.retired_types == "error"
    assert_nothing_left(cloud)
