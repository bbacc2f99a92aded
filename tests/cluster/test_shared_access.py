"""From Python: a machine with a Dask-only bundle computes, but may not scale or destroy."""

from __future__ import annotations

from pathlib import Path

import dask.config
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.state import StateDir
from scherbelberg_dask.state.access import AccessError
from scherbelberg_dask.state.bundle import (
    decrypt_bundle,
    encrypt_bundle,
    install_bundle,
    make_bundle,
)
from tests.cluster.conftest import assert_nothing_left, resources


def test_dask_only_handle_computes_but_cannot_scale_or_destroy(
    cloud: Emulator, tmp_path: Path
) -> None:
    other = tmp_path / "other-machine"
    with HetznerCluster(workers=1, prefix="bundled") as cluster:
        own = StateDir("bundled", base=dask.config.get("scherbelberg.state-dir"))
        sealed = encrypt_bundle(
            make_bundle(own, "dask", scheduler_address=cluster.scheduler_address), "passphrase"
        )
        install_bundle(decrypt_bundle(sealed, "passphrase"), other)
        shared = HetznerCluster.from_existing("bundled", state_dir=str(other))
        try:
            with Client(shared) as client:
                assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            assert shared.dashboard_link == ""  # the tunnel needs the SSH key
            for refused in (lambda: shared.scale(3), shared.adapt, shared.destroy):
                with pytest.raises(AccessError, match="Dask-only access"):
                    refused()
        finally:
            shared.close()
        assert len(resources(cloud, "bundled")["servers"]) == 2
    assert_nothing_left(cloud)
