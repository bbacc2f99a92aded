"""Preparing Debian images, and what a host that cannot run them says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.debian import host
from scherbelberg_dask.emulator.debian.images import PreparedImage
from tests.cluster.conftest import assert_nothing_left


def test_missing_tools_are_named_with_their_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A PATH holding every tool the containers need except nspawn and debootstrap.
    for tool in ("unshare", "setpriv", "nsenter", "mount", "cp"):
        found = shutil.which(tool)
        assert found is not None, f"this host lacks {tool}"
        (tmp_path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tmp_path))
    host.host_problem.cache_clear()
    try:
        problem = host.host_problem()
    finally:
        host.host_problem.cache_clear()
    assert problem is not None
    assert "missing debootstrap, systemd-nspawn:" in problem
    assert "apt-get install debootstrap systemd-container`" in problem
    assert "util-linux" not in problem


def test_an_unprepared_image_fails_the_create_naming_the_prepare_command(
    hetzner_emulator_env: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCHERBELBERG_EMULATOR_IMAGES", str(tmp_path / "no-images"))
    with (
        pytest.raises(Exception) as failure,
        HetznerCluster(workers=0, prefix="noimg", image="debian-12"),
    ):
        pass
    text = repr(failure.value) + repr(failure.value.__cause__)
    reason = host.host_problem() or "emulator prepare debian-12"
    assert reason.split(":")[0] in text
    assert_nothing_left(hetzner_emulator_env)


def test_prepare_is_idempotent(debian_image: PreparedImage) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scherbelberg_dask", "emulator", "prepare", "debian-12"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert "already prepared" in done.stderr
    assert done.stdout.strip() == str(debian_image.rootfs)


def test_prepare_refuses_other_images() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scherbelberg_dask", "emulator", "prepare", "ubuntu-24.04"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "debian-12" in done.stderr
