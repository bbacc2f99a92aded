"""The environment key of snapshots, the split setup script, the snapshot setting."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from datetime import datetime, timedelta, timezone

import pytest

from scherbelberg_dask.bootstrap import cloudscript, controller_unit
from scherbelberg_dask.bootstrap.environment import NodeEnvironment
from scherbelberg_dask.bootstrap.profiles import CloudProfile, EmulatorProfile, unusable_reason
from scherbelberg_dask.cli.images import parse_age, summary
from scherbelberg_dask.cloud.labels import CLUSTER
from scherbelberg_dask.cloud.snapshots import (
    CONTROLLER,
    FORMAT_VERSION,
    KEY,
    UNUSABLE,
    UNUSABLE_REASONS,
    Snapshot,
    environment_reason,
    label_value_ok,
    usable,
)
from scherbelberg_dask.cluster.provision import NodeStartError
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.cluster.snapshot_builder import environment_key
from scherbelberg_dask.errors import SettingsError

ENV = NodeEnvironment("3.11", {"dask": "2026.8.0", "distributed": "2026.8.0"}, ())


def _key(env: NodeEnvironment = ENV, image: str = "debian-12", arch: str = "x86") -> str:
    key = environment_key(CloudProfile(env), image, arch)
    assert key is not None
    return key.key


def test_the_key_changes_with_every_part_of_the_environment() -> None:
    assert _key() == _key()
    others = {
        _key(dataclasses.replace(ENV, extra=("six",))),
        _key(dataclasses.replace(ENV, python="3.12")),
        _key(dataclasses.replace(ENV, pinned={**ENV.pinned, "dask": "2026.9.0"})),
        _key(image="ubuntu-24.04"),
        _key(arch="arm"),
    }
    assert len(others) == 5 and _key() not in others


def test_snapshot_labels_keep_hetzner_rules_and_name_no_cluster() -> None:
    key = environment_key(
        CloudProfile(dataclasses.replace(ENV, extra=("xarray>=2024",))), "debian-12", "x86"
    )
    assert key is not None
    assert CLUSTER not in key.labels
    assert key.labels[KEY] == key.key and key.selector.endswith(key.key)
    assert key.labels["scherbelberg/extra-packages"] == "1"
    for name, value in key.labels.items():
        assert len(name.split("/")[-1]) <= 63 and label_value_ok(value), (name, value)
    assert "+xarray>=2024" in key.description


def test_a_non_autonomous_environment_keeps_the_key_it_had_before_the_controller() -> None:
    # The key as it was computed before environments knew the controller: snapshots made
    # then stay valid for clusters that are not autonomous.
    before = {
        "profile": "cloud",
        "version": FORMAT_VERSION,
        "digest": cloudscript.environment_digest(ENV),
        "base_image": "debian-12",
        "architecture": "x86",
        "python": "3.11",
        "packages": ["dask==2026.8.0", "distributed==2026.8.0"],
    }
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:32]
    assert _key(ENV) == expected
    key = environment_key(CloudProfile(ENV), "debian-12", "x86")
    assert key is not None and CONTROLLER not in key.labels
    assert "controller" not in key.description


def test_the_controller_dependencies_are_another_environment() -> None:
    autonomous = dataclasses.replace(ENV, controller=True)
    assert _key(autonomous) != _key(ENV)
    key = environment_key(CloudProfile(autonomous), "debian-12", "x86")
    assert key is not None
    assert key.labels[CONTROLLER] == "true"
    assert key.description.endswith(" +controller")
    assert key.labels["scherbelberg/extra-packages"] == "0"  # the user's extras only
    # What it holds: the controller's dependencies at the client's versions, installed
    # by the environment part (the image builder's script) like every other package.
    pins = controller_unit.requirements()
    assert {p.split("==")[0] for p in pins} == set(controller_unit.DEPENDENCIES)
    assert autonomous.requirements == ENV.requirements + pins
    builder = cloudscript.render_environment(autonomous)
    assert all(shlex.quote(pin) in builder for pin in pins)
    assert not any(shlex.quote(pin) in cloudscript.render_environment(ENV) for pin in pins)
    assert cloudscript.environment_digest(autonomous) != cloudscript.environment_digest(ENV)


def test_the_emulator_image_makes_no_snapshots() -> None:
    assert environment_key(EmulatorProfile(ENV), "scherbelberg-emulator", "x86") is None


def test_the_node_script_reuses_a_matching_environment_or_installs_it() -> None:
    digest = cloudscript.environment_digest(ENV)
    script = cloudscript.render(
        ENV, role="worker", user="dask", node_dir="node", from_snapshot=True
    )
    assert f'!= "{digest}"' in script and "install skipped" in script
    assert cloudscript.SNAPSHOT_UNUSABLE in script and '"yes" = yes' in script
    assert f"> {cloudscript.ENVIRONMENT_MARKER}" in script
    cold = cloudscript.render(ENV, role="worker", user="dask", node_dir="node")
    assert '"no" = yes' in cold


def test_the_image_builder_gets_the_environment_part_only_and_is_cleaned() -> None:
    builder = cloudscript.render_environment(ENV)
    assert "uv pip install" in builder
    for node_part in ("node.json", "dask-worker", "dask-scheduler", "PermitRootLogin"):
        assert node_part not in builder
    scrub = cloudscript.render_scrub(user="dask", node_dir="node")
    assert "rm -f /etc/ssh/ssh_host_*" in scrub and "cloud-init clean" in scrub
    assert ": > /etc/machine-id" in scrub and "uninitialized" not in scrub.replace(
        '"uninitialized"', ""
    )


def test_snapshot_setting_defaults_on_and_is_checked() -> None:
    assert ClusterSettings.resolve(prefix="a").snapshot is True
    assert ClusterSettings.resolve(prefix="a", snapshot=False).snapshot is False
    assert ClusterSettings.resolve(prefix="a").remembered()["snapshot"] is True
    with pytest.raises(SettingsError, match="snapshot must be true or false"):
        ClusterSettings.resolve(prefix="a", snapshot="no")


def test_prune_ages() -> None:
    assert parse_age("7d") == timedelta(days=7)
    assert parse_age("30m") == timedelta(minutes=30)
    with pytest.raises(SettingsError, match="older-than"):
        parse_age("soon")


def _snapshot(id: int, *, status: str = "available", disk: float = 40, **labels: str) -> Snapshot:
    return Snapshot(
        id=id,
        description="",
        status=status,
        created=datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(minutes=id),
        image_size=0.2,
        disk_size=disk,
        architecture="x86",
        labels={KEY: "k", **labels},
    )


def test_selection_skips_snapshots_labelled_unusable() -> None:
    newest_first = [
        _snapshot(5, **{UNUSABLE: "ssh-failed"}),
        _snapshot(4, status="creating"),
        _snapshot(3, disk=160),
        _snapshot(2),
        _snapshot(1),
    ]
    assert [s.id for s in usable(newest_first, disk_gb=80)] == [2, 1]
    assert [s.id for s in usable(newest_first, disk_gb=160)] == [3, 2, 1]
    assert newest_first[0].unusable == "ssh-failed" and newest_first[1].unusable is None


def test_the_setup_scripts_reasons_map_to_unusable_labels() -> None:
    digest = cloudscript.environment_digest(ENV)
    lines = {
        "no environment marker": "no-environment-marker",
        f"environment 0123abcd differs from {digest}": "environment-differs",
        "its venv is broken": "venv-broken",
    }
    for why, label in lines.items():
        line = f"{cloudscript.SNAPSHOT_UNUSABLE} ({why}): running the full setup"
        assert unusable_reason(line) == why
        assert environment_reason(why) == label
        assert label in UNUSABLE_REASONS and label_value_ok(label)
    # What the script says is what these parse: its reasons are in its text.
    script = cloudscript.render(ENV, role="worker", user="dask", node_dir="node")
    assert 'env_state="no environment marker"' in script and "venv is broken" in script
    assert "differs from" in script
    assert set(NodeStartError.SNAPSHOT_BROKEN.values()) <= set(UNUSABLE_REASONS)
    assert set(NodeStartError.SNAPSHOT_BROKEN) <= set(NodeStartError.TRANSIENT)


def test_the_listing_says_why_a_snapshot_is_unusable() -> None:
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    bad = summary(_snapshot(7, **{UNUSABLE: "boot-failed"}), 0.011, now)
    assert bad["unusable"] == "boot-failed"
    assert summary(_snapshot(8), 0.011, now)["unusable"] is None


def test_close_waits_for_a_snapshot_ten_minutes_unless_told_otherwise() -> None:
    assert ClusterSettings.resolve(prefix="a").snapshot_close_wait == 600
    assert ClusterSettings.resolve(prefix="a", snapshot_close_wait="30s").snapshot_close_wait == 30
    for off in (0, "off", "0s"):
        assert (
            ClusterSettings.resolve(prefix="a", snapshot_close_wait=off).snapshot_close_wait is None
        )
    # How one handle closes, not what the cluster is: not remembered for from_existing.
    assert "snapshot_close_wait" not in ClusterSettings.resolve(prefix="a").remembered()
    with pytest.raises(SettingsError, match="snapshot_close_wait must be a time span"):
        ClusterSettings.resolve(prefix="a", snapshot_close_wait="soon")
