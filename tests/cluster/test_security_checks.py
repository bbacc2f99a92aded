"""Security by default (docs/design.md, "Security"): firewall, network, state, no token leaks."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from tests.cluster.conftest import assert_nothing_left, resources


def test_firewall_network_and_state_are_locked_down(
    cloud, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    with (
        HetznerCluster(
            workers=1, prefix="safe", allowed_cidrs=["127.0.0.0/8", "203.0.113.0/24"]
        ) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(int.__add__, 1, 2).result(timeout=60) == 3
        made = resources(cloud, "safe")

        # Inbound: SSH and the scheduler's TLS port, from the allowed networks, nothing else.
        (firewall,) = made["firewalls"]
        rules = sorted(firewall["rules"], key=lambda r: int(r["port"]))
        assert [(r["direction"], r["protocol"], r["port"]) for r in rules] == sorted(
            [("in", "tcp", str(cluster.settings.ssh_port)), ("in", "tcp", "9753")],
            key=lambda r: int(r[2]),
        )
        for rule in rules:
            assert sorted(rule["source_ips"]) == ["127.0.0.0/8", "203.0.113.0/24"]
        assert sorted(firewall["servers"]) == sorted(s["id"] for s in made["servers"])

        # Every node is on the cluster's private network; workers talk to it there.
        (network,) = made["networks"]
        assert sorted(network["servers"]) == sorted(s["id"] for s in made["servers"])
        worker = cluster.worker_nodes[0]
        assert worker.private_ip is not None
        info = client.scheduler_info()
        assert all(addr.startswith(f"tls://{worker.private_ip}:") for addr in info["workers"])

        # Local state: the directory 0700, every file 0600.
        state_dir = cluster.provisioner.state.path
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        files = [p for p in state_dir.rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for path in (p for p in state_dir.rglob("*") if p.is_dir()):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path

        # The token is nowhere: not in local state, not on the nodes, not in any log.
        token = os.environ["HCLOUD_TOKEN"].encode()
        for path in files:
            assert token not in path.read_bytes(), path
        node_root = Path(cloud.snapshot()["directory"])
        for path in node_root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert token not in path.read_bytes(), path
        logs = cluster.get_logs()
        assert all(token.decode() not in text for text in logs.values())
    assert token.decode() not in caplog.text
    assert_nothing_left(cloud)
