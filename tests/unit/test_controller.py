"""The controller's pieces that need no cloud: its systemd unit, the shipped package,
its settings and its state across restarts."""

from __future__ import annotations

import io
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from scherbelberg_dask.bootstrap import controller_unit
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.controller.install import package_zip
from scherbelberg_dask.controller.spec import CLIENT, ControllerSpec, ControllerState, Directive
from scherbelberg_dask.errors import SettingsError


def test_systemd_unit_runs_as_its_own_user_with_the_token_as_a_credential() -> None:
    unit = controller_unit.unit("/opt/scherbelberg/venv/bin/python")
    lines = set(unit.splitlines())
    assert f"User={controller_unit.CONTROLLER_USER}" in lines
    assert f"LoadCredential=hcloud-token:{controller_unit.TOKEN_PATH}" in lines
    assert "Restart=on-failure" in lines and "WantedBy=multi-user.target" in lines
    assert "NoNewPrivileges=yes" in lines and "ProtectHome=yes" in lines
    assert "HCLOUD_TOKEN" not in unit  # never in the environment


def test_install_script_keeps_the_token_root_only_and_is_valid_shell() -> None:
    script = controller_unit.install_script("/opt/scherbelberg/venv/bin/python")
    assert f"chmod 0600 {controller_unit.TOKEN_PATH}" in script
    assert f"chown root:root {controller_unit.TOKEN_DIR} {controller_unit.TOKEN_PATH}" in script
    assert "--shell /usr/sbin/nologin" in script
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_package_zip_is_our_code_without_bytecode() -> None:
    names = zipfile.ZipFile(io.BytesIO(package_zip())).namelist()
    assert "scherbelberg_dask/controller/service.py" in names
    assert "scherbelberg_dask/scherbelberg.yaml" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_autonomy_settings() -> None:
    s = ClusterSettings.resolve(autonomous=True, idle_timeout="30m", max_lifetime="off")
    assert (s.autonomous, s.idle_timeout, s.max_lifetime) == (True, 1800.0, None)
    assert ClusterSettings.resolve().autonomous is False  # opt-in
    assert ClusterSettings.resolve(idle_timeout=90).idle_timeout == 90.0
    with pytest.raises(SettingsError, match="time span"):
        ClusterSettings.resolve(idle_timeout="soon")
    with pytest.raises(SettingsError, match="true or false"):
        ClusterSettings.resolve(autonomous="yes")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = Directive(generation=1, idle_timeout=60.0)
    state = ControllerState.load(path, first)
    assert state.directive == first and state.idle_since is None
    state.directive = Directive(generation=2, driver=CLIENT, max_lifetime=3600.0)
    state.idle_since = 1234.5
    state.save(path)
    again = ControllerState.load(path, first)
    assert again.directive == state.directive and again.idle_since == 1234.5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_controller_spec_round_trips() -> None:
    spec = ControllerSpec(
        prefix="c",
        endpoint="https://api.hetzner.cloud/v1",
        state_dir="state",
        created=1.0,
        interval=5.0,
        directive=Directive(generation=3, adapt={"minimum": 0, "maximum": 4}),
    )
    assert ControllerSpec.from_json(spec.to_json()) == spec
