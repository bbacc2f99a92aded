"""Bootstrap profiles: chosen by image; the cloud profile's script, rendered but never run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scherbelberg_dask.bootstrap.environment import PROBE, NodeEnvironment
from scherbelberg_dask.bootstrap.node_config import NodeConfig, NodePorts
from scherbelberg_dask.bootstrap.profiles import (
    DASK_USER,
    CloudProfile,
    EmulatorProfile,
    profile_for_image,
)
from scherbelberg_dask.security.sshkeys import SSHKeyPair

ENV = NodeEnvironment("3.11", {"dask": "2026.8.0", "distributed": "2026.8.0"}, ("xarray>=2024",))


@pytest.mark.parametrize(
    ("image", "profile"),
    [
        ("scherbelberg-emulator", EmulatorProfile),
        ("ubuntu-24.04", CloudProfile),
        ("debian-12", CloudProfile),
    ],
)
def test_profile_is_chosen_by_image(image: str, profile: type) -> None:
    assert type(profile_for_image(image, ENV)) is profile


def test_unknown_image_names_what_works() -> None:
    with pytest.raises(ValueError, match=r"ubuntu-24\.04.*scherbelberg-emulator"):
        profile_for_image("windows-2022", ENV)


def test_cloud_script_pins_the_client_environment_and_hardens_ssh() -> None:
    script = CloudProfile(ENV).script("worker")
    # The image's Python when it matches, else uv's; uv itself pinned by hash; no apt.
    assert "command -v python3.11" in script and "uv python install 3.11" in script
    assert "sha256sum -c" in script and "apt-get" not in script
    assert "dask==2026.8.0 distributed==2026.8.0 'xarray>=2024'" in script
    assert f"User={DASK_USER}" in script and "Restart=on-failure" in script
    assert "PermitRootLogin no" in script and "PasswordAuthentication no" in script
    assert "systemctl enable --now dask-worker" in script
    if shutil.which("bash"):
        # Syntax only (bash -n never executes anything).
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_cloud_script_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError, match="role"):
        CloudProfile(ENV).script("janitor")


@pytest.mark.parametrize(("profile", "root"), [(EmulatorProfile, False), (CloudProfile, True)])
def test_cloud_config_pins_host_key_and_user(profile: type, root: bool) -> None:
    host_key = SSHKeyPair.generate("node")
    login = SSHKeyPair.generate("cluster-key").public_openssh
    text = profile(ENV).cloud_config(
        host_key=host_key, authorized_key=login, hostname="c-node-worker000"
    )
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"]["ed25519_public"].split()[:2] == host_key.public_openssh.split()[:2]
    assert doc["users"][0]["name"] == DASK_USER
    assert [k.split()[:2] for k in doc["users"][0]["ssh_authorized_keys"]] == [login.split()[:2]]
    # The emulator profile never lets root in; the cloud profile locks root after setup.
    assert doc["disable_root"] is (not root)


def test_environment_mismatches_are_named() -> None:
    probe = '{"python": "3.12", "packages": {"dask": "2026.8.0"}}'
    problems = ENV.mismatches(probe)
    assert problems == ["python 3.12 (client: 3.11)", "distributed missing (client: 2026.8.0)"]
    local = NodeEnvironment.local()
    result = subprocess.run(
        [shutil.which("python3") or "python3", "-c", PROBE], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert isinstance(local.mismatches(result.stdout), list)


def test_bootstrap_script_verb_prints_without_running(capsys: pytest.CaptureFixture[str]) -> None:
    from scherbelberg_dask.cli import main

    assert main(["bootstrap-script", "--role", "scheduler", "--package", "xarray"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("#!/bin/bash\n")
    assert "systemctl enable --now dask-scheduler" in printed and "xarray" in printed


def _node_config() -> NodeConfig:
    return NodeConfig(
        role="worker",
        name="worker003",
        public_ip="203.0.113.7",
        private_ip="10.0.0.7",
        listen=("203.0.113.7", "10.0.0.7"),
        scheduler_address="tls://10.0.0.2:9753",
        ports=NodePorts(9753, 9756, 9759),
        env={"MODE": "fast"},
        options={"nthreads": 2},
        dask_config={"distributed": {"worker": {"memory": {"target": 0.55}}}},
    )


def test_node_config_round_trips_as_node_json() -> None:
    conf = _node_config()
    assert NodeConfig.from_json(conf.to_json()) == conf
    data = yaml.safe_load(conf.to_json())  # JSON is YAML
    assert data["tls"] == {
        "ca": "scherbelberg/tls/ca.pem",
        "cert": "scherbelberg/tls/node.pem",
        "key": "scherbelberg/tls/node.key",
    }
    assert conf.ready_file == "scherbelberg/worker.ready"


def test_node_runner_runs_alone_with_its_contract(tmp_path: Path) -> None:
    # On a node the runner and node_config.py are all there is of this package.
    files = CloudProfile(ENV).node_files({"tls/ca.pem": b"ca"}, _node_config())
    assert set(files) == {
        "scherbelberg/node_runner.py",
        "scherbelberg/node_config.py",
        "scherbelberg/node.json",
        "scherbelberg/tls/ca.pem",
    }
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "scherbelberg/node_runner.py",
            "wait",
            "scherbelberg/node.json",
            "0",
        ],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "worker not ready after 0 s" in result.stderr
