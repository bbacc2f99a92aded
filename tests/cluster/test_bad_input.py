"""Bad input fails before anything is created, with a message that names the fix.

Every row of the table goes through ``HetznerCluster(...)`` against the emulator; the
emulator must hold nothing afterwards, and the token must not be in the message.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from typing import Any

import pytest

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cloud.errors import CloudAuthError, CloudUnreachableError
from scherbelberg_dask.errors import ClusterExistsError
from tests.cluster.conftest import assert_nothing_left

#: Stands for an endpoint on a port where nothing listens (bound for the test's duration).
CLOSED_PORT_ENDPOINT = "http://127.0.0.1:<closed>/v1"

PREFIX_FIX = r"use 1 to 30 lowercase letters, digits and '-'"
WORKERS_FIX = r"workers must be a whole number ≥ 0 \(0 means: adapt up from nothing\)"
CIDR_FIX = r"CIDR notation with no host bits set \(e.g. 203.0.113.0/24"


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
    ({"timeouts": {"dask": float("inf")}}, ValueError, r"timeouts.dask must be a positive number"),
    ({"env_vars": {"1BAD": "x"}}, ValueError, r"use letters, digits and '_', not starting with"),
    ({"env_vars": {"A": None}}, ValueError, r"env_vars\['A'\] must be a string \(without NUL\) or"),
    ({"env_vars": {"A": "a\0b"}}, ValueError, r"must be a string \(without NUL\)"),
    ({"packages": ["numpy;"]}, ValueError, r"not a pip requirement \(e.g. 'xarray', 'zarr>="),
    ({"packages": ["git+https://x/y"]}, ValueError, r"not a pip requirement.*'name @ https://"),
    ({"worker_options": {"nthreads": "x"}}, ValueError, r"'nthreads'\] must be a whole number"),
    ({"worker_options": {"port": 1}}, ValueError, r"set by the cluster itself; leave it out"),
    ({"worker_options": {"env": {"A": "1"}}}, ValueError, r"use env_vars instead"),
    ({"worker_options": {"colour": 1}}, ValueError, r"not a parameter of Nanny or Worker"),
    ({"scheduler_options": {"idle_timeout": object()}}, ValueError, r"must be plain data"),
    ({"colour": "blue"}, TypeError, r"unexpected keyword argument 'colour'"),
    ({"security": False}, ValueError, r"security must be True: .*mutual TLS"),
    # -- the catalog: checked against the API before anything is created
    ({"worker_type": ""}, ValueError, r"worker_type must be a non-empty string"),
    ({"worker_type": "cx99"}, ValueError, r"unknown server type 'cx99'.*valid server types"),
    ({"scheduler_type": "huge"}, ValueError, r"scheduler_type: unknown server type.*valid"),
    # -- retired types: their successor unless asked not to (tests/cluster/test_retired_types.py)
    (
        {"worker_type": "cx11", "retired_types": "error"},
        ValueError,
        r"worker_type: server type 'cx11' is retired.*successor is cx23.*valid server types in",
    ),
    (
        {"scheduler_type": "ccx12", "retired_types": "error"},
        ValueError,
        r"scheduler_type: server type 'ccx12' is retired.*its successor is ccx13 \(2 cores, 8 GB",
    ),
    (
        {"worker_type": "cx11", "scheduler_type": "cpx12", "location": "ash"},
        ValueError,
        r"'cx11' is not offered in ash, and its successor cx22 → cx23 cannot be ordered in ash "
        r"either; nearest: cpx12 \(1 core, 2 GB\)",
    ),
    ({"retired_types": "newest"}, ValueError, r"retired_types must be 'successor' \(use the"),
    ({"worker_type": "cx99"}, ValueError, r"unknown server type 'cx99'; nearest: cx"),
    (
        {"worker_type": "cax11", "scheduler_type": "cpx12", "location": "ash"},
        ValueError,
        r"worker_type: server type 'cax11' is not offered in ash; nearest: cpx22 \(2 cores, "
        r"4 GB\), .*; valid server types in ash",
    ),
    ({"location": "mars1"}, ValueError, r"unknown location 'mars1'; valid locations: .*fsn1"),
    ({"location": "FSN1"}, ValueError, r"unknown location 'FSN1'; valid locations: .*fsn1"),
    ({"image": "windows-95"}, ValueError, r"unknown image 'windows-95'.*valid images"),
    ({"image": "ubuntu-20.04"}, ValueError, r"'ubuntu-20.04' is deprecated.*ubuntu-24.04"),
    ({"image": "debian-11"}, ValueError, r"'debian-11' is deprecated.*current debian image is"),
    ({"image": "ubuntu-18.04"}, ValueError, r"unknown image 'ubuntu-18.04'.*ubuntu image is"),
    # -- the API: token and endpoint
    ({"token": "x" * 64}, CloudAuthError, r"refused the token.*check HCLOUD_TOKEN"),
    ({"token": "abc\ndef"}, CloudAuthError, r"spaces, control or non-ASCII characters: set"),
    ({"token": "t\u20acken"}, CloudAuthError, r"spaces, control or non-ASCII characters: set"),
    (
        {"api_endpoint": CLOSED_PORT_ENDPOINT},
        CloudUnreachableError,
        r"cannot reach the Hetzner Cloud API.*check HCLOUD_ENDPOINT",
    ),
    ({"api_endpoint": "not a url"}, CloudUnreachableError, r"not an http\(s\) URL: check HCLOUD"),
    ({"api_endpoint": "ftp://x/v1"}, CloudUnreachableError, r"not an http\(s\) URL: check HCLOUD"),
]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    BAD_INPUT,
    ids=[", ".join(f"{k}={v!r}"[:40] for k, v in row[0].items()) for row in BAD_INPUT],
)
def test_rejected_before_creating(
    cloud: Any, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = str(closed.getsockname()[1])
        arguments = {
            key: value.replace("<closed>", port) if value == CLOSED_PORT_ENDPOINT else value
            for key, value in arguments.items()
        }
        with pytest.raises(error, match=message) as info:
            HetznerCluster(**{"workers": 1, "prefix": "bad", **arguments})
    for token in {cloud.token, arguments.get("token", cloud.token)}:
        assert token not in str(info.value)
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


def test_endpoint_that_is_not_the_api(cloud: Any, tmp_path: Any) -> None:
    # The emulator under a wrong path (a JSON 404), and a plain web server (an HTML 404).
    wrong_path = cloud.env()["HCLOUD_ENDPOINT"].rstrip("/").removesuffix("/v1") + "/v2"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        try:
            for endpoint in (wrong_path, f"http://127.0.0.1:{web.server_address[1]}/v1"):
                with pytest.raises(CloudUnreachableError, match=r"is not the Hetzner Cloud API"):
                    HetznerCluster(workers=1, prefix="bad", api_endpoint=endpoint)
        finally:
            web.shutdown()
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
