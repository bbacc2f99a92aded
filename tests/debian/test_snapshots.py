"""Snapshots of the node environment on real Debian servers (docs/snapshots.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from dask.distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.bootstrap.environment import NodeEnvironment
from scherbelberg_dask.bootstrap.profiles import CloudProfile
from scherbelberg_dask.cloud.snapshots import KEY, MADE_BY, UNUSABLE, SnapshotKey
from scherbelberg_dask.cluster.snapshot_builder import environment_key
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.ssh import connect
from scherbelberg_dask.state.statedir import StateDir
from tests.cluster.conftest import assert_nothing_left, resources

from .conftest import run_cli


def _images(emulator: Emulator, prefix: str) -> dict[str, Any]:
    """Node name -> the image its server booted from (a system image's name, a snapshot's ID)."""
    return {
        s["labels"]["scherbelberg/node"]: s["image"]
        for s in resources(emulator, prefix)["servers"]
        if s["labels"].get("scherbelberg/role") in ("scheduler", "worker")
    }


def _secrets_of(prefix: str, state_base: str) -> dict[str, bytes]:
    """Strings that only cluster ``prefix``'s nodes and local state hold."""
    state = StateDir(prefix, base=state_base)
    markers = {"prefix": f"{prefix}-".encode()}
    ca_key = state.ca_key_path.read_text().splitlines()
    markers["ca key"] = ca_key[1].encode()
    markers["ca cert"] = state.ca_cert_path.read_text().splitlines()[1].encode()
    markers["ssh key"] = state.ssh_public_key_path.read_text().split()[1].encode()
    for i, line in enumerate(state.known_hosts_path.read_text().splitlines()):
        if line.strip() and not line.startswith("#"):
            markers[f"host key {i}"] = line.split()[2].encode()
    return markers


def _found_in_tree(root: Path, markers: dict[str, bytes]) -> dict[str, str]:
    """Which markers occur in which file below ``root``."""
    found = {}
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for what, marker in markers.items():
            if marker in data:
                found[what] = str(path.relative_to(root))
    return found


async def test_later_clusters_and_scale_ups_boot_from_the_snapshot(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, caplog: Any, cli_env, no_containers_left
) -> None:
    import dask.config

    state_base = str(dask.config.get("scherbelberg.state-dir"))
    # The first cluster: full setup, then a snapshot made by an image builder.
    async with HetznerCluster(
        workers=1, prefix="snapa", image="debian-12", asynchronous=True
    ) as first:
        snapshot = await first.provisioner.snapshot_ready()
        assert snapshot is not None and snapshot.status == "available"
        assert snapshot.labels["scherbelberg/base-image"] == "debian-12"
        assert snapshot.labels["scherbelberg/python"] == NodeEnvironment.local().python
        assert "scherbelberg/cluster" not in snapshot.labels  # it belongs to no cluster
        assert set(_images(debian_cloud, "snapa").values()) == {"debian-12"}
        # The builder is gone, and the snapshot stays.
        assert not [
            s for s in resources(debian_cloud, "snapa")["servers"] if "builder" in s["name"]
        ]
        # A scale-up of the running cluster boots from the snapshot.
        async with Client(first, asynchronous=True) as client:
            first.scale(2)
            await client.wait_for_workers(2, timeout=300)
        assert _images(debian_cloud, "snapa")["worker001"] == snapshot.id
        secrets = _secrets_of("snapa", state_base)
    layers = list((debian_cloud.directory or Path("/nonexistent")).rglob(f"images/{snapshot.id}"))
    assert layers, "the snapshot has no files"
    # Nothing of the first cluster is in the snapshot (it never was on the builder).
    assert _found_in_tree(layers[0], secrets) == {}

    # A second cluster of the same environment boots every node from it.
    async with (
        HetznerCluster(workers=1, prefix="snapb", image="debian-12", asynchronous=True) as second,
        Client(second, asynchronous=True) as client,
    ):
        await client.wait_for_workers(1, timeout=60)
        assert set(_images(debian_cloud, "snapb").values()) == {snapshot.id}
        assert await second.provisioner.snapshot_ready() is None  # nothing new to make
        logs = run_cli(cli_env, "logs", "--prefix", "snapb", "worker000", "-n", "400")
        assert "install skipped" in logs.stdout, logs.stdout
        # No secret of the first cluster is readable on a node of the second.
        node = second.provisioner.nodes["worker000"]
        async with await connect(node.ssh, timeout=30) as conn:
            patterns = " ".join(f"-e {m.decode()!r}" for m in secrets.values())
            found = await conn.run(
                f"grep -rlsF {patterns} /etc /home /opt /var /tmp /root /usr/local",
                check=False,
                timeout=300,
            )
        assert found.stdout.strip() == ""

    # Another extra package is another environment: the old snapshot is not used.
    caplog.set_level(logging.INFO, logger="scherbelberg_dask")
    async with HetznerCluster(
        workers=0, prefix="snapc", image="debian-12", packages=["six"], asynchronous=True
    ) as third:
        assert _images(debian_cloud, "snapc") == {"scheduler": "debian-12"}
        assert third.provisioner.snapshot_pending  # its own snapshot is under way ...
    # ... and closing right after ready waited for it, once its node was gone.
    waited = [
        r.getMessage() for r in caplog.records if "Waiting for the snapshot" in r.getMessage()
    ]
    assert len(waited) == 1 and "snapshot-close-wait: off skips" in waited[0], waited
    six = await asyncio.to_thread(_snapshots_of, debian_cloud, "snapc")
    assert [s["status"] for s in six] == ["available"], six
    assert six[0]["labels"]["scherbelberg/extra-packages"] == "1"
    assert_nothing_left(debian_cloud)

    # The CLI lists it with its size, environment and monthly cost, and removes it.
    listed = run_cli(cli_env, "images", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    price = report["price_per_gb_month_net_eur"]
    (row,) = [r for r in report["snapshots"] if r["id"] == snapshot.id]
    assert row["monthly_net_eur"] == pytest.approx(row["size_gb"] * price)
    assert "debian-12" in row["environment"] and row["key"] == snapshot.key
    text = run_cli(cli_env, "images")
    assert str(snapshot.id) in text.stdout and "EUR per GB and month" in text.stdout
    kept = run_cli(cli_env, "images", "prune", "--older-than", "1d")
    assert kept.returncode == 0 and "deleted 0 snapshots" in kept.stdout, kept.stderr
    nuked = run_cli(cli_env, "nuke", "--prefix", "snapa")  # snapshots stay ...
    assert nuked.returncode == 0, nuked.stderr
    assert snapshot.id in [
        r["id"] for r in json.loads(run_cli(cli_env, "images", "--json").stdout)["snapshots"]
    ]
    removed = run_cli(cli_env, "images", "rm", str(snapshot.id))  # ... until removed
    assert removed.returncode == 0 and "deleted 1 snapshot" in removed.stdout, removed.stderr
    left = json.loads(run_cli(cli_env, "images", "--json").stdout)["snapshots"]
    assert snapshot.id not in [r["id"] for r in left]


def _api(emulator: Emulator) -> Any:
    import hcloud

    return hcloud.Client(token=emulator.token, api_endpoint=emulator.endpoint, poll_interval=0.2)


def _snapshots_of(emulator: Emulator, made_by: str) -> list[dict[str, Any]]:
    """The snapshots cluster ``made_by``'s image builder made, as the API shows them."""
    return [
        {"id": i.id, "status": i.status, "labels": i.labels}
        for i in _api(emulator).images.get_all(type=["snapshot"])
        if i.labels.get(MADE_BY) == made_by
    ]


#: A planter that disables cloud-init and powers off: a server made from its snapshot
#: keeps the planter's host keys and gets neither its own nor its users' keys.
_LETS_NO_ONE_IN = "#cloud-config\nruncmd:\n  - touch /etc/cloud/cloud-init.disabled\n  - poweroff\n"


def _plant_snapshot(emulator: Emulator, key: SnapshotKey, user_data: str | None = None) -> int:
    """A snapshot with the environment's labels, of a server that never set up.

    With ``user_data`` the planter runs it and the snapshot waits until it powered off.
    """
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    api = _api(emulator)
    answer = api.servers.create(
        name="planter",
        server_type=ServerType(name="cx23"),
        image=Image(name="debian-12"),
        user_data=user_data,
    )
    answer.action.wait_until_finished()
    deadline = time.monotonic() + 120
    while user_data is not None and api.servers.get_by_id(answer.server.id).status != "off":
        assert time.monotonic() < deadline, "the planter did not power off"
        time.sleep(0.2)
    made = api.servers.create_image(
        answer.server, description=key.description, type="snapshot", labels=key.labels
    )
    made.action.wait_until_finished()
    api.servers.delete(answer.server).wait_until_finished()
    return int(made.image.id)


async def test_an_unusable_snapshot_falls_back_to_the_full_setup(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, caplog: Any, cli_env, no_containers_left
) -> None:
    key = environment_key(CloudProfile(NodeEnvironment.local(())), "debian-12", "x86")
    assert key is not None
    planted = await asyncio.to_thread(_plant_snapshot, debian_cloud, key)
    caplog.set_level(logging.WARNING, logger="scherbelberg_dask")
    async with HetznerCluster(workers=0, prefix="snapx", image="debian-12", asynchronous=True):
        images = _images(debian_cloud, "snapx")
        assert images["scheduler"] == planted  # it was tried ...
        logs = run_cli(cli_env, "logs", "--prefix", "snapx", "scheduler", "-n", "400")
        assert "snapshot not usable (no environment marker)" in logs.stdout, logs.stdout
        assert "== phase packages" in logs.stdout
    # ... and said so where the user sees it.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("snapshot not usable" in w and "full setup" in w for w in warnings), warnings
    # It is labelled so, and no cluster boots from it again.
    labels = (await asyncio.to_thread(_api(debian_cloud).images.get_by_id, planted)).labels
    assert labels[UNUSABLE] == "no-environment-marker"
    assert labels[KEY] == key.key  # its other labels are kept
    assert_nothing_left(debian_cloud)


async def test_a_snapshot_that_lets_no_one_in_is_retried_from_the_base_image(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, caplog: Any, cli_env, no_containers_left
) -> None:
    key = environment_key(CloudProfile(NodeEnvironment.local(())), "debian-12", "x86")
    assert key is not None
    planted = await asyncio.to_thread(_plant_snapshot, debian_cloud, key, _LETS_NO_ONE_IN)
    caplog.set_level(logging.INFO, logger="scherbelberg_dask")
    # No boot retries: the retry from the base image is not one of them.
    async with HetznerCluster(
        workers=0,
        prefix="snapy",
        image="debian-12",
        boot_retries=0,
        timeouts={"ssh": 60},
        asynchronous=True,
    ) as cluster:
        # The node came up from the base image ...
        assert _images(debian_cloud, "snapy") == {"scheduler": "debian-12"}
        assert cluster.failures["scheduler"].phase == "ssh"  # type: ignore[attr-defined]
        # ... after the snapshot's server was tried, and the snapshot is labelled.
        labels = (await asyncio.to_thread(_api(debian_cloud).images.get_by_id, planted)).labels
        assert labels[UNUSABLE] == "ssh-failed" and labels[KEY] == key.key
        assert await cluster.provisioner.snapshot_ready() is None  # no new one from here
    tried = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and f"Snapshot {planted} did not come up" in r.getMessage()
    ]
    assert len(tried) == 1 and "ssh-failed" in tried[0] and "debian-12" in tried[0], tried
    assert_nothing_left(debian_cloud)
    caplog.clear()

    # A second cluster does not try it (and closing does not wait for its own snapshot).
    async with HetznerCluster(
        workers=0, prefix="snapz", image="debian-12", snapshot_close_wait=0, asynchronous=True
    ):
        assert _images(debian_cloud, "snapz") == {"scheduler": "debian-12"}
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if f"napshot {planted}" in m or "from snapshot" in m], said
    assert not [m for m in said if "Waiting for the snapshot" in m], said
    listed = json.loads(run_cli(cli_env, "images", "--json").stdout)["snapshots"]
    (row,) = [r for r in listed if r["id"] == planted]
    assert row["unusable"] == "ssh-failed"
    assert "unusable: ssh-failed" in run_cli(cli_env, "images").stdout
    assert_nothing_left(debian_cloud)
