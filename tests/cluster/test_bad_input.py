"""Bad input fails before anything is created, with a message that names the fix.

Every row of the table goes through ``HetznerCluster(...)`` against the emulator; the
emulator must hold nothing afterwards, and the token must not be in the message.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cloud.errors import CloudAuthError, CloudUnreachableError
from scherbelberg_dask.cluster.context import ClusterExistsError
from tests.cluster.conftest import assert_nothing_left

PREFIX_FIX = r"use 1 to 30 lowercase letters, digits and '-'"
WORKERS_FIX = r"workers must be a whole number ≥ 0 \(0 means: adapt up from nothing\)"
CIDR_FIX = r"CIDR notation with no host bits set \(e.g. 203.0.113.0/24"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: (arguments, error, message): the message must say what to do instead.
BAD_INPUT: list[tuple[dict[str, Any], type[Exception], str]] = [
    # -- the prefix names every resource: Hetzner's label and name rules apply
    ({"prefix": "Cluster"}, ValueError, PREFIX_FIX),
    ({"prefix": "a" * 31}, ValueError, PREFIX_FIX),
    ({"prefix": "-ab"}, ValueError, PREFIX_FIX),
    ({"prefix": "a_b"}, ValueError, PREFIX_FIX),
    ({"prefix": ""}, ValueError, PREFIX_FIX),
    # -- worker counts (zero is valid: it adapts up from nothing)
    ({"workers": -1}, ValueError, WORKERS_FIX),
    ({"workers": 1.5}, ValueError, WORKERS_FIX),
    ({"workers": "2"}, ValueError, WORKERS_FIX),
    ({"workers": True}, ValueError, WORKERS_FIX),
    # -- ports
    ({"scheduler_port": 9756}, ValueError, r"ports clash: give each its own port"),
    ({"nanny_port": 70000}, ValueError, r"nanny port must be a TCP port number from 1 to 65535"),
    ({"dashboard_port": "http"}, ValueError, r"dashboard port must be a TCP port number from 1"),
    ({"ssh_port": 9753}, ValueError, r"ssh_port 9753 clashes with a Dask port; choose another"),
    # -- networks
    ({"allowed_cidrs": ["10.0.0.1/8"]}, ValueError, CIDR_FIX),
    ({"allowed_cidrs": ["not-a-net"]}, ValueError, CIDR_FIX),
    ({"allowed_cidrs": []}, ValueError, r"non-empty list of networks in CIDR notation, e.g."),
    ({"network_ip_range": "10.0.0.0/28"}, ValueError, r"must be an IPv4 network of /24 or larger"),
    ({"network_ip_range": "fd00::/64"}, ValueError, r"must be an IPv4 network of /24 or larger"),
    ({"network_ip_range": "banana"}, ValueError, r"not a network in CIDR notation \(e.g. 10.0"),
    # -- what runs on the nodes
    ({"timeouts": {"ssh": 0}}, ValueError, r"timeouts.ssh must be a positive number of seconds"),
    ({"timeouts": {"sssh": 5}}, ValueError, r"unknown timeouts: sssh; known: server, ssh"),
    ({"env_vars": {"1BAD": "x"}}, ValueError, r"use letters, digits and '_', not starting with"),
    ({"env_vars": {"A": None}}, ValueError, r"env_vars\['A'\] must be a string or a number"),
    ({"packages": ["numpy;"]}, ValueError, r"not a pip requirement \(e.g. 'xarray', 'zarr>="),
    ({"worker_options": {"nthreads": "x"}}, ValueError, r"'nthreads'\] must be a whole number"),
    ({"worker_options": {"port": 1}}, ValueError, r"set by the cluster itself; leave it out"),
    ({"worker_options": {"colour": 1}}, ValueError, r"not a parameter of Nanny or Worker"),
    ({"scheduler_options": {"idle_timeout": object()}}, ValueError, r"must be plain data"),
    ({"colour": "blue"}, TypeError, r"unexpected keyword argument 'colour'"),
    ({"security": False}, ValueError, r"security must be True: .*mutual TLS"),
    # -- the catalog: checked against the API before anything is created
    ({"worker_type": ""}, ValueError, r"worker_type must be a non-empty string"),
    ({"worker_type": "cx99"}, ValueError, r"unknown server type 'cx99'.*valid server types"),
    ({"scheduler_type": "huge"}, ValueError, r"scheduler_type: unknown server type.*valid"),
    ({"worker_type": "cx11"}, ValueError, r"retired.*valid server types in fsn1: .*cx23"),
    (
        {"worker_type": "cax11", "scheduler_type": "cpx12", "location": "ash"},
        ValueError,
        r"worker_type: server type 'cax11' is not offered in ash; valid server types in ash",
    ),
    ({"location": "mars1"}, ValueError, r"unknown location 'mars1'; valid locations: .*fsn1"),
    ({"location": "FSN1"}, ValueError, r"unknown location 'FSN1'; valid locations: .*fsn1"),
    ({"image": "windows-95"}, ValueError, r"unknown image 'windows-95'.*valid images"),
    # -- the API: token and endpoint
    ({"token": "x" * 64}, CloudAuthError, r"refused the token.*check HCLOUD_TOKEN"),
    ({"token": "abc\ndef"}, CloudAuthError, r"spaces or control characters: set HCLOUD_TOKEN"),
    (
        {"api_endpoint": f"http://127.0.0.1:{_closed_port()}/v1"},
        CloudUnreachableError,
        r"cannot reach the Hetzner Cloud API.*check HCLOUD_ENDPOINT",
    ),
    ({"api_endpoint": "not a url"}, CloudUnreachableError, r"check HCLOUD_ENDPOINT"),
]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    BAD_INPUT,
    ids=[", ".join(f"{k}={v!r}"[:40] for k, v in row[0].items()) for row in BAD_INPUT],
)
def test_rejected_before_creating(
    cloud: Any, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        HetznerCluster(**{"workers": 1, "prefix": "bad", **arguments})
    assert cloud.token not in str(info.value)
    assert_nothing_left(cloud)


def test_the_table_is_at_least_twenty_rows() -> None:
    assert len(BAD_INPUT) >= 20


def test_missing_token(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import dask.config

    monkeypatch.delenv("HCLOUD_TOKEN")
    with (
        dask.config.set({"scherbelberg.api.token": None}),
        pytest.raises(CloudAuthError, match="set HCLOUD_TOKEN"),
    ):
        HetznerCluster(workers=1, prefix="bad")
    assert_nothing_left(cloud)


def test_endpoint_that_is_not_the_api(cloud: Any) -> None:
    endpoint = cloud.env()["HCLOUD_ENDPOINT"].rstrip("/").removesuffix("/v1") + "/v2"
    with pytest.raises(CloudUnreachableError, match=r"is not the Hetzner Cloud API.*/v1"):
        HetznerCluster(workers=1, prefix="bad", api_endpoint=endpoint)
    assert_nothing_left(cloud)


def test_existing_prefix_is_not_taken_over(cloud: Any) -> None:
    with HetznerCluster(workers=0, prefix="taken") as cluster:
        with pytest.raises(ClusterExistsError, match=r"from_existing\('taken'\)"):
            HetznerCluster(workers=0, prefix="taken")
        assert cluster.scheduler_node is not None
    assert_nothing_left(cloud)


def test_an_image_the_emulator_cannot_run_fails_clearly(cloud: Any) -> None:
    """A real-cloud image on the emulator: its servers exist, so this one cleans up."""
    with pytest.raises(RuntimeError, match=r"cannot run the setup.*only executes commands"):
        HetznerCluster(workers=1, prefix="bad", image="ubuntu-24.04")
    assert_nothing_left(cloud)
