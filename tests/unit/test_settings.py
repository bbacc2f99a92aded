"""Cluster settings: defaults and valid input (bad input: tests/cluster/test_bad_input.py)."""

from __future__ import annotations

import pytest

from scherbelberg_dask.cluster.settings import ClusterSettings


def test_defaults_are_current_and_cheap() -> None:
    settings = ClusterSettings.resolve()
    assert settings.prefix == "cluster"
    assert settings.worker_type == settings.scheduler_type == "cx23"
    assert (settings.ports.scheduler, settings.ports.dashboard, settings.ports.nanny) == (
        9753,
        9756,
        9759,
    )


def test_valid_extras_are_kept() -> None:
    settings = ClusterSettings.resolve(
        packages="xarray zarr>=2.18 pandas[parquet]",
        env_vars={"OMP_NUM_THREADS": 1, "MODE": "fast"},
        worker_options={"nthreads": 2, "resources": {"GPU": 1}, "lifetime": "1h"},
        scheduler_options={"idle_timeout": "10 minutes"},
        allowed_cidrs="203.0.113.0/24",
        timeouts={"ssh": 5},
    )
    assert settings.packages == ("xarray", "zarr>=2.18", "pandas[parquet]")
    assert settings.env_vars == {"OMP_NUM_THREADS": "1", "MODE": "fast"}
    assert settings.worker_options["resources"] == {"GPU": 1}
    assert settings.allowed_cidrs == ("203.0.113.0/24",)
    assert settings.timeouts.ssh == 5.0


def test_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown cluster settings: colour; known: prefix"):
        ClusterSettings.resolve(colour="blue")


def test_zero_workers_is_valid() -> None:
    assert ClusterSettings.resolve(workers=0).workers == 0


def test_remembered_settings_rebuild_the_same_cluster() -> None:
    settings = ClusterSettings.resolve(
        prefix="team-a",
        workers=3,
        worker_type="cpx32",
        scheduler_port=9000,
        packages=["xarray"],
        env_vars={"MODE": "fast"},
        worker_options={"nthreads": 2},
        allowed_cidrs=["203.0.113.0/24"],
        boot_retries=0,
        timeouts={"ssh": 5},
    )
    remembered = settings.remembered()
    # What belongs to one handle is not remembered: the attaching process has its own.
    assert not {"workers", "state_dir", "timeouts"} & set(remembered)
    again = ClusterSettings.resolve(**remembered, workers=3, timeouts={"ssh": 5})
    assert again == settings


def test_boot_retries_are_a_count() -> None:
    assert ClusterSettings.resolve().boot_retries == 2
    with pytest.raises(ValueError, match="boot_retries must be a whole number"):
        ClusterSettings.resolve(boot_retries=-1)
