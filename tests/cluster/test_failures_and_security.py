"""Failing nodes, data safety on scale-down, adaptivity, and mutual TLS."""

from __future__ import annotations

import asyncio
import dataclasses

import dask.array as da
import dask.config
import numpy as np
import pytest
from distributed import Client, wait
from distributed.security import Security

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.security.tls import ClusterCA
from scherbelberg_dask.ssh import HostKeyMismatchError, SSHAuthError, connect
from tests.cluster.conftest import assert_nothing_left, resources


async def _until(predicate, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - remote state, bounded by the timeout
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def _worker_names(client: Client) -> list[str]:
    info = await client.scheduler.identity()
    return sorted(w["name"] for w in info["workers"].values())


async def test_failed_boot_is_replaced(cloud) -> None:  # type: ignore[no-untyped-def]
    async with HetznerCluster(workers=1, prefix="boot", asynchronous=True) as cluster:
        cloud.faults.fail_next_boots(1)
        cluster.scale(2)
        await _until(lambda: "worker001" in cluster.failures)
        error = str(cluster.failures["worker001"])
        assert "node worker001" in error and "failed to boot" in error
        # The worker's process interface tried a new server for it, under the same name;
        # the failed server is gone.
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(2, timeout=120)
            assert await _worker_names(client) == ["worker000", "worker001"]
            assert await client.submit(sum, [1, 2]) == 3
        servers = resources(cloud, "boot")["servers"]
        assert sorted(s["name"] for s in servers) == [
            "boot-node-scheduler",
            "boot-node-worker000",
            "boot-node-worker001",
        ]
        # Scheduler, worker000, worker001's failed server and its replacement.
        assert cloud.counters()["by_route"]["POST /v1/servers"] == 4
    assert_nothing_left(cloud)


async def test_failed_dask_start_shows_log_tail(cloud) -> None:  # type: ignore[no-untyped-def]
    # A preload module the node does not have: the worker service starts, crashes, restarts.
    # A failure of the node itself is not retried: a new server would fail the same way.
    async with HetznerCluster(
        workers=0,
        prefix="tail",
        asynchronous=True,
        timeouts={"dask": 8},
        worker_options={"preload": ["scherbelberg_no_such_module"]},
    ) as cluster:
        cluster.scale(1)
        await _until(lambda: "worker000" in cluster.failures, timeout=180)
        error = cluster.failures["worker000"]
        assert "worker000" in str(error)
        assert "last lines of its log" in str(error)
        assert "Error" in error.log_tail  # the crash of the Dask process
        await _until(lambda: len(resources(cloud, "tail")["servers"]) == 1)
        assert not cluster.worker_spec
    assert_nothing_left(cloud)


async def test_scale_down_keeps_data(cloud) -> None:  # type: ignore[no-untyped-def]
    async with (
        HetznerCluster(workers=2, prefix="keep", asynchronous=True) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        values = np.random.default_rng(42).random(400_000)
        x = da.from_array(values, chunks=25_000)
        await client.wait_for_workers(2)
        persisted = client.persist(x)
        await wait(persisted)
        who_has = await client.who_has(persisted)
        holders = {w for addrs in who_has.values() for w in addrs}
        assert len(holders) == 2, "data should be spread over both workers"
        cluster.scale(1)
        await _until(lambda: len(resources(cloud, "keep")["servers"]) == 2)
        assert await _worker_names(client) == ["worker000"]
        assert await client.compute(persisted.sum()) == pytest.approx(values.sum())
    assert_nothing_left(cloud)


async def test_adapt_up_from_zero_and_down(cloud) -> None:  # type: ignore[no-untyped-def]
    async with (
        HetznerCluster(workers=0, prefix="adapt", asynchronous=True) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        cluster.adapt(minimum=0, maximum=2, interval="300ms", wait_count=2)
        futures = client.map(lambda i: i * i, range(20))
        assert sum(await client.gather(futures)) == sum(i * i for i in range(20))
        assert len(resources(cloud, "adapt")["servers"]) >= 2
        del futures
        await _until(lambda: len(resources(cloud, "adapt")["servers"]) == 1)
        assert await _worker_names(client) == []
    assert_nothing_left(cloud)


async def test_plain_tcp_and_foreign_ca_are_refused(cloud) -> None:  # type: ignore[no-untyped-def]
    async with HetznerCluster(workers=0, prefix="tls", asynchronous=True) as cluster:
        host_port = cluster.scheduler_address.removeprefix("tls://")
        with pytest.raises((OSError, TimeoutError)):
            await Client(f"tcp://{host_port}", asynchronous=True, timeout=5)

        foreign = ClusterCA.create("intruder")
        pair = foreign.issue("client", server=False)
        tmp = cluster.provisioner.state.path.parent / "intruder"
        tmp.mkdir(mode=0o700)
        (tmp / "ca.pem").write_bytes(foreign.cert_pem)
        (tmp / "c.pem").write_bytes(pair.cert_pem)
        (tmp / "c.key").write_bytes(pair.key_pem)
        security = Security(
            tls_ca_file=str(tmp / "ca.pem"),
            tls_client_cert=str(tmp / "c.pem"),
            tls_client_key=str(tmp / "c.key"),
            require_encryption=True,
        )
        with pytest.raises((OSError, TimeoutError)):
            await Client(cluster.scheduler_address, security=security, asynchronous=True, timeout=5)

        # Our own client certificate works.
        async with Client(cluster, asynchronous=True) as client:
            identity = await client.scheduler.identity()
            assert identity["address"].startswith("tls://")
    assert_nothing_left(cloud)


async def test_root_login_refused_and_host_keys_pinned(cloud) -> None:  # type: ignore[no-untyped-def]
    async with HetznerCluster(workers=0, prefix="pin", asynchronous=True) as cluster:
        node = cluster.scheduler_node
        assert node is not None and await node.ping_ssh()
        result = await node.run("echo $USER")
        assert result.stdout.strip() == "dask"
        # Root may not log in, not even with the cluster's key.
        with pytest.raises(SSHAuthError):
            await connect(dataclasses.replace(node.ssh, username="root"), timeout=10)
        # A host key other than the pinned one is refused before anything is sent.
        state = cluster.provisioner.state
        hosts = [node.public_ip, node.private_ip]
        state.set_known_host(hosts, node.ssh.port, SSHKeyPair.generate("x").public_openssh)
        with pytest.raises(HostKeyMismatchError):
            await connect(node.ssh, timeout=10)
        assert not await node.ping_ssh()
    assert_nothing_left(cloud)


async def test_from_existing_awaited_asynchronously(cloud) -> None:  # type: ignore[no-untyped-def]
    async with HetznerCluster(workers=1, prefix="await", asynchronous=True) as owner:
        attached = await HetznerCluster.from_existing("await", asynchronous=True)
        assert sorted(attached.worker_spec) == ["worker000"]
        assert attached.scheduler_address == owner.scheduler_address
        await attached.close()
        # Closing the attached handle leaves the cluster running.
        assert len(resources(cloud, "await")["servers"]) == 2
    assert_nothing_left(cloud)


async def test_lost_worker_is_replaced_and_rebooted_worker_returns(cloud) -> None:  # type: ignore[no-untyped-def]
    import hcloud

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "60s"}):
        async with (
            HetznerCluster(workers=2, prefix="heal", asynchronous=True) as cluster,
            Client(cluster, asynchronous=True) as client,
        ):
            by_name = {s["name"]: s for s in resources(cloud, "heal")["servers"]}
            api = hcloud.Client(token=cloud.token, api_endpoint=cloud.endpoint, poll_interval=0.1)

            # A reboot: the worker's service comes back and re-registers as itself.
            server = api.servers.get_by_id(by_name["heal-node-worker000"]["id"])
            await asyncio.to_thread(lambda: server.reboot().wait_until_finished())
            await _until(lambda: len(cluster.scheduler_info["workers"]) == 2, timeout=120)
            assert await _worker_names(client) == ["worker000", "worker001"]

            # A crash: the server is gone for good; a new worker takes its place once the
            # lost-worker timeout (read when the worker is lost) has passed.
            dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"})
            cloud.faults.crash_server(by_name["heal-node-worker001"]["id"])
            await _until(lambda: "heal-node-worker002" in _server_names(cloud), timeout=120)
            await client.wait_for_workers(2, timeout=120)
            await _until(lambda: "heal-node-worker001" not in _server_names(cloud), timeout=60)
            assert await _worker_names(client) == ["worker000", "worker002"]
    assert_nothing_left(cloud)


def _server_names(cloud, prefix: str = "heal") -> set[str]:  # type: ignore[no-untyped-def]
    return {s["name"] for s in resources(cloud, prefix)["servers"]}


async def test_start_cancelled_while_creating_resources(cloud) -> None:  # type: ignore[no-untyped-def]
    # Ctrl-C during the start, before Dask's part of it ran: what was made goes, and the
    # close that follows (the CLI's, or Dask's at exit) completes.
    cluster = HetznerCluster(workers=1, prefix="cancel", asynchronous=True)

    async def started() -> None:
        await cluster

    start = asyncio.ensure_future(started())
    await _until(lambda: bool(resources(cloud, "cancel")["networks"]) or start.done())
    assert not start.done(), "the start finished before it could be cancelled"
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    await cluster.close()
    assert cluster.status.name == "closed"
    assert_nothing_left(cloud, "cancel")
