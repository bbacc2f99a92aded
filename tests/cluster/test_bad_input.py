"""Bad input fails before anything is created, with a message that names the fix."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cloud.errors import CloudAuthError, CloudUnreachableError
from scherbelberg_dask.cluster.context import ClusterExistsError
from tests.cluster.conftest import assert_nothing_left


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"worker_type": "cx99"}, ValueError, r"unknown server type 'cx99'.*valid server types"),
        ({"scheduler_type": "huge"}, ValueError, r"scheduler_type: unknown server type"),
        ({"worker_type": "cx11"}, ValueError, r"retired.*valid server types in fsn1: .*cx23"),
        ({"worker_type": "cax11", "location": "ash"}, ValueError, r"not offered in ash"),
        ({"location": "mars1"}, ValueError, r"unknown location 'mars1'; valid locations: .*fsn1"),
        ({"image": "windows-95"}, ValueError, r"unknown image 'windows-95'.*valid images"),
        ({"token": "x" * 64}, CloudAuthError, r"refused the token.*HCLOUD_TOKEN"),
    ],
)
def test_rejected_before_creating(
    cloud: Any, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        HetznerCluster(workers=1, prefix="bad", **arguments)
    assert_nothing_left(cloud)


def test_missing_token(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.config

    monkeypatch.delenv("HCLOUD_TOKEN")
    with (
        dask.config.set({"scherbelberg.api.token": None}),
        pytest.raises(CloudAuthError, match="set HCLOUD_TOKEN"),
    ):
        HetznerCluster(workers=1, prefix="bad")
    assert_nothing_left(cloud)


def test_unreachable_endpoint(cloud: Any) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(CloudUnreachableError, match=r"cannot reach.*HCLOUD_ENDPOINT") as info:
        HetznerCluster(workers=1, prefix="bad", api_endpoint=endpoint)
    assert cloud.token not in str(info.value)
    assert_nothing_left(cloud)


def test_existing_prefix_is_not_taken_over(cloud: Any) -> None:
    with HetznerCluster(workers=0, prefix="taken") as cluster:
        with pytest.raises(ClusterExistsError, match=r"from_existing\('taken'\)"):
            HetznerCluster(workers=0, prefix="taken")
        assert cluster.scheduler_node is not None
    assert_nothing_left(cloud)
