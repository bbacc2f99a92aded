"""Tests of scherbelberg_dask.bootstrap.cloudinit."""

from __future__ import annotations

import pytest

from scherbelberg_dask.bootstrap.cloudinit import (
    SSHD_DROP_IN,
    SSHD_NO_PASSWORDS,
    USER_DATA_LIMIT,
    CloudUser,
    parse_cloud_config,
    render_cloud_config,
)
from scherbelberg_dask.security import SSHKeyPair


def test_round_trip() -> None:
    host_key = SSHKeyPair.generate("cluster-node-worker000")
    user_key = SSHKeyPair.generate("cluster-key")
    text = render_cloud_config(
        host_key=host_key,
        users=[
            CloudUser(
                "clusteruser",
                [user_key.public_openssh],
                sudo="ALL=(ALL) NOPASSWD:ALL",
                groups=["adm", "users"],
            ),
            CloudUser("plain", [], shell=None),
        ],
        disable_root=True,
        hostname="cluster-node-worker000",
        extra={"packages": ["htop"]},
    )
    assert text.startswith("#cloud-config\n")
    data = parse_cloud_config(text)
    assert data["ssh_keys"] == {
        "ed25519_private": host_key.private_openssh,
        "ed25519_public": host_key.public_openssh,
    }
    # The installed key is usable: it loads back to the same key pair.
    assert SSHKeyPair.from_private_openssh(data["ssh_keys"]["ed25519_private"]) == host_key
    assert data["ssh_deletekeys"] is True
    assert data["ssh_genkeytypes"] == []
    assert "ssh_pwauth" not in data  # cloud-init would restart sshd mid-setup
    assert data["write_files"] == [
        {"path": SSHD_DROP_IN, "permissions": "0644", "content": SSHD_NO_PASSWORDS}
    ]
    assert data["disable_root"] is True
    assert data["hostname"] == "cluster-node-worker000"
    assert data["packages"] == ["htop"]
    first, second = data["users"]
    assert first["name"] == "clusteruser"
    assert first["ssh_authorized_keys"] == [user_key.public_openssh]
    assert first["shell"] == "/bin/bash"
    assert first["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert first["groups"] == "adm,users"
    assert first["lock_passwd"] is True
    assert second == {"name": "plain", "lock_passwd": True, "ssh_authorized_keys": []}


def test_defaults_leave_users_alone() -> None:
    data = parse_cloud_config(render_cloud_config(host_key=SSHKeyPair.generate("h")))
    assert "users" not in data and "hostname" not in data
    assert data["disable_root"] is False


def test_size_limit() -> None:
    host_key = SSHKeyPair.generate("h")
    # Fill up to exactly the limit with a padding value, then one byte more.
    key = "write_files_padding"
    one = len(render_cloud_config(host_key=host_key, extra={key: "x"}).encode())
    fill = USER_DATA_LIMIT - one + 1
    exact = render_cloud_config(host_key=host_key, extra={key: "x" * fill})
    assert len(exact.encode()) == USER_DATA_LIMIT
    with pytest.raises(ValueError, match="32 KiB"):
        render_cloud_config(host_key=host_key, extra={key: "x" * (fill + 1)})


def test_rejects_collisions_and_bad_input() -> None:
    host_key = SSHKeyPair.generate("h")
    with pytest.raises(ValueError, match="ssh_keys"):
        render_cloud_config(host_key=host_key, extra={"ssh_keys": {}})
    with pytest.raises(ValueError):
        render_cloud_config(host_key=host_key, users=[CloudUser("bad name", [])])
    with pytest.raises(ValueError):
        render_cloud_config(host_key=host_key, users=[CloudUser("u", ["not a key"])])
    with pytest.raises(ValueError, match="cloud-config"):
        parse_cloud_config("#!/bin/sh\necho hi\n")
    with pytest.raises(ValueError) as info:
        parse_cloud_config("#cloud-config\nkey: [unclosed SECRETMATERIAL\n")
    assert "SECRETMATERIAL" not in str(info.value)
