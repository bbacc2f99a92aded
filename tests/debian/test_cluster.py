"""A cluster on real Debian servers: the cloud profile's setup, systemd, hardened sshd."""

from __future__ import annotations

import asyncio
import dataclasses

import dask.array as da
import numpy as np
import pytest
from dask.distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.cluster.provision import NodeStartError
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.ssh import SSHAuthError, connect
from tests.cluster.conftest import assert_nothing_left, resources

from .conftest import containers, run_cli, until


async def _worker_names(client: Client) -> list[str]:
    info = await client.scheduler.identity()
    return sorted(w["name"] for w in info["workers"].values())


async def test_cluster_on_debian_servers(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, cli_env, no_containers_left
) -> None:
    import hcloud

    prefix = "deb"
    async with (
        # Snapshots have their own tests (test_snapshots.py); here every node is set up in full.
        HetznerCluster(
            workers=2, prefix=prefix, image="debian-12", snapshot=False, asynchronous=True
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        servers = resources(debian_cloud, prefix)["servers"]
        assert {s["image"] for s in servers} == {"debian-12"}
        assert len(containers(debian_cloud.id)) == 3

        # Real work with numpy on the workers.
        x = da.arange(1_000_000, chunks=100_000, dtype=float).reshape(1000, 1000)
        total = await client.compute((x @ x.T).trace())
        local = np.arange(1_000_000, dtype=float).reshape(1000, 1000)
        assert total == pytest.approx(np.trace(local @ local.T))

        # A worker as a user sees it.
        def ssh(node: str, command: str) -> str:
            done = run_cli(cli_env, "ssh", "--prefix", prefix, node, "--", command)
            assert done.returncode == 0, done.stderr
            return done.stdout

        os_release = ssh("worker000", "cat /etc/os-release")
        assert 'VERSION_ID="12"' in os_release and "Debian" in os_release
        assert ssh("worker000", "systemctl is-active dask-worker").strip() == "active"
        assert ssh("scheduler", "systemctl is-active dask-scheduler").strip() == "active"
        pid = ssh("worker000", "systemctl show -p MainPID --value dask-worker").strip()
        users = ssh("worker000", f"ps -o user= -p {pid}; ps -o user= --ppid {pid}").split()
        assert users and set(users) == {"dask"}
        # cloud-init finishes its later stages beside the setup, without an error.
        assert ssh("worker000", "cloud-init status --wait").split()[-1] == "done"
        assert ssh("worker000", "hostname").strip() == f"{prefix}-node-worker000"
        node = cluster.scheduler_node
        assert node is not None
        with pytest.raises(SSHAuthError):
            await connect(dataclasses.replace(node.ssh, username="root"), timeout=20)

        # A reboot: systemd starts the worker again and it rejoins as itself.
        api = hcloud.Client(
            token=debian_cloud.token, api_endpoint=debian_cloud.endpoint, poll_interval=0.2
        )
        by_name = {s["name"]: s for s in servers}
        server = api.servers.get_by_id(by_name[f"{prefix}-node-worker001"]["id"])
        await asyncio.to_thread(lambda: server.reboot().wait_until_finished())
        await until(lambda: len(cluster.scheduler_info["workers"]) == 1)
        await until(lambda: len(cluster.scheduler_info["workers"]) == 2)
        assert await _worker_names(client) == ["worker000", "worker001"]

        # Scale 2 -> 3 -> 1 with no key lost (scattered data cannot be recomputed).
        futures = await client.scatter([np.full(1000, i) for i in range(20)])
        cluster.scale(3)
        await client.wait_for_workers(3, timeout=300)
        assert await _worker_names(client) == ["worker000", "worker001", "worker002"]
        cluster.scale(1)
        await until(lambda: len(cluster.scheduler_info["workers"]) == 1, timeout=300)
        await until(lambda: len(resources(debian_cloud, prefix)["servers"]) == 2, timeout=300)
        values = await client.gather(futures)
        assert [int(v[0]) for v in values] == list(range(20))

        # The logs: the real bootstrap log and the unit's journal.
        for node_name, unit in (("scheduler", "dask-scheduler"), ("worker000", "dask-worker")):
            logs = run_cli(cli_env, "logs", "--prefix", prefix, node_name, "-n", "400")
            assert logs.returncode == 0, logs.stderr
            assert "scherbelberg-dask setup started" in logs.stdout
            assert "== phase packages" in logs.stdout
            assert f"Started {unit}.service" in logs.stdout, logs.stdout
    assert_nothing_left(debian_cloud)


async def test_failed_setup_shows_the_bootstrap_log(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, no_containers_left
) -> None:
    with pytest.raises(Exception) as failure:
        async with HetznerCluster(
            workers=0,
            prefix="debfail",
            image="debian-12",
            packages=["scherbelberg-no-such-package==1.0"],
            asynchronous=True,
        ):
            pass
    chain: list[BaseException] = []
    error: BaseException | None = failure.value
    while error is not None:
        chain.append(error)
        error = error.__cause__
    started = [e for e in chain if isinstance(e, NodeStartError)]
    assert started, chain
    message = str(started[0])
    assert "last lines of its log" in message
    assert "scherbelberg-no-such-package" in message
    assert "setup failed" in message
    assert_nothing_left(debian_cloud)
