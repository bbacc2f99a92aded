"""Attaching from another process, several clusters side by side, nuke by labels."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import dask.config
from distributed import Client

from scherbelberg_dask import HetznerCluster, nuke
from tests.cluster.conftest import assert_nothing_left, resources


def _run_python(code: str, cloud) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run ``code`` in a fresh Python process configured for the emulator."""
    env = {
        **os.environ,
        **cloud.env(),
        "DASK_SCHERBELBERG__STATE_DIR": str(dask.config.get("scherbelberg.state-dir")),
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_attach_scale_and_destroy_from_another_process(cloud) -> None:  # type: ignore[no-untyped-def]
    cluster = HetznerCluster(workers=1, prefix="shared")
    try:
        result = _run_python(
            """
            from distributed import Client
            from scherbelberg_dask import HetznerCluster
            cluster = HetznerCluster.from_existing("shared")
            assert sorted(cluster.worker_spec) == ["worker000"], cluster.worker_spec
            with Client(cluster) as client:
                cluster.scale(2)
                client.wait_for_workers(2, timeout=120)
                assert client.submit(sum, [1, 2, 3]).result() == 6
            cluster.close()   # attached: leaves the cluster running
            print("attached-ok")
            """,
            cloud,
        )
        assert result.returncode == 0, result.stderr
        assert "attached-ok" in result.stdout
        # Still running after the other process closed its handle, with the new worker.
        names = sorted(s["name"] for s in resources(cloud, "shared")["servers"])
        assert names == ["shared-node-scheduler", "shared-node-worker000", "shared-node-worker001"]
        with Client(cluster) as client:
            assert client.submit(pow, 2, 10).result(timeout=60) == 1024

        result = _run_python(
            """
            from scherbelberg_dask import HetznerCluster
            HetznerCluster.from_existing("shared").destroy()
            print("destroyed")
            """,
            cloud,
        )
        assert result.returncode == 0, result.stderr
        assert_nothing_left(cloud)
    finally:
        cluster.close()
    assert_nothing_left(cloud)


def test_side_by_side_and_nuke_by_label(cloud) -> None:  # type: ignore[no-untyped-def]
    with (
        HetznerCluster(workers=1, prefix="ab") as ab,
        HetznerCluster(workers=1, prefix="abc") as abc,
    ):
        abc_before = resources(cloud, "abc")
        deleted = nuke("ab")
        assert deleted["servers"] == 2
        assert_nothing_left(cloud, "ab")
        assert resources(cloud, "abc") == abc_before
        with Client(abc) as client:
            assert client.submit(len, "abc").result(timeout=60) == 3
        del ab
    assert_nothing_left(cloud)
    # nuke is idempotent
    assert nuke("ab") == {"servers": 0, "firewalls": 0, "networks": 0, "ssh_keys": 0}
