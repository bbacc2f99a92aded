"""``HetznerCluster.dry_run``: the plan of a create, from Python, with nothing made."""

from __future__ import annotations

import pytest

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cloud.errors import CatalogError
from scherbelberg_dask.emulator import Emulator
from tests.cluster.conftest import assert_nothing_left


def test_dry_run_returns_the_plan_with_prices(cloud: Emulator) -> None:
    plan = HetznerCluster.dry_run(3, prefix="plan", worker_type="cx11")
    assert [n.name for n in plan.nodes] == ["scheduler", "worker000", "worker001", "worker002"]
    workers = [n for n in plan.nodes if n.role == "worker"]
    assert {(n.requested_type, n.server_type) for n in workers} == {("cx11", "cx23")}
    assert plan.hourly_eur == pytest.approx(sum(n.hourly_eur for n in plan.nodes))
    assert plan.monthly_eur > plan.hourly_eur > 0
    assert plan.to_dict()["created"] is False
    assert_nothing_left(cloud)


def test_dry_run_takes_dask_cloudprovider_keywords(cloud: Emulator) -> None:
    plan = HetznerCluster.dry_run(prefix="plan", n_workers=2, server_type="cpx22")
    assert [(n.role, n.server_type) for n in plan.nodes] == [
        ("scheduler", "cpx22"),
        ("worker", "cpx22"),
        ("worker", "cpx22"),
    ]
    with pytest.raises(TypeError, match="no_such_keyword"):
        HetznerCluster.dry_run(1, prefix="plan", no_such_keyword=1)
    assert_nothing_left(cloud)


@pytest.mark.parametrize(
    "arguments", [{"worker_type": "cx99"}, {"location": "atlantis"}, {"image": "ubuntu-20.04"}]
)
def test_dry_run_refuses_what_create_refuses(cloud: Emulator, arguments: dict[str, str]) -> None:
    with pytest.raises(CatalogError) as dry:
        HetznerCluster.dry_run(1, prefix="plan", **arguments)
    with pytest.raises(CatalogError) as real:
        HetznerCluster(1, prefix="plan", **arguments)
    assert str(dry.value) == str(real.value)
    assert_nothing_left(cloud)
