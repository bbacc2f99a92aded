"""dask-cloudprovider's documented Hetzner example, with only the import changed.

The example (``dask_cloudprovider.hetzner.HetznerCluster``'s docstring) relies on
dask-cloudprovider's config defaults, the retired ``cx11`` and ``ubuntu-20.04``; here
defaults are not choices, so it runs unchanged on current types.
"""

from __future__ import annotations

import dask.config

from tests.cluster.conftest import assert_nothing_left, resources


def test_documented_example_with_only_the_import_changed(cloud) -> None:  # type: ignore[no-untyped-def]
    # from dask_cloudprovider.hetzner import HetznerCluster
    from scherbelberg_dask import HetznerCluster

    cluster = HetznerCluster(n_workers=1)

    from dask.distributed import Client

    client = Client(cluster)

    import dask.array as da

    arr = da.random.random((1000, 1000), chunks=(100, 100))
    assert 0.49 < arr.mean().compute() < 0.51

    servers = resources(cloud, "cluster")["servers"]
    assert sorted(s["name"] for s in servers) == [
        "cluster-node-scheduler",
        "cluster-node-worker000",
    ]

    client.close()
    cluster.close()
    assert_nothing_left(cloud)


def test_cloudprovider_server_type_picks_the_type_when_nothing_else_does(cloud) -> None:  # type: ignore[no-untyped-def]
    from scherbelberg_dask import HetznerCluster

    with dask.config.set({"cloudprovider.hetzner.server_type": "cpx22"}):
        with HetznerCluster(n_workers=1, prefix="cptype") as cluster:
            types = {s["name"]: s["server_type"] for s in resources(cloud, "cptype")["servers"]}
            assert types == {"cptype-node-scheduler": "cpx22", "cptype-node-worker000": "cpx22"}
            # What one worker brings follows the type (cpx22: 2 cores).
            assert cluster.worker_spec["worker000"]["options"]["nthreads"] == 2
        # Ours, when set, wins over dask-cloudprovider's section.
        with (
            dask.config.set({"scherbelberg.worker-type": "cx33"}),
            HetznerCluster(n_workers=1, prefix="ourtype"),
        ):
            types = {s["name"]: s["server_type"] for s in resources(cloud, "ourtype")["servers"]}
            assert types == {"ourtype-node-scheduler": "cpx22", "ourtype-node-worker000": "cx33"}
    assert_nothing_left(cloud)
