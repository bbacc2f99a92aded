"""Tests of scherbelberg_dask.state: the per-cluster local state directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import dask.config
import pytest

from scherbelberg_dask.security import ClusterCA, SSHKeyPair
from scherbelberg_dask.state import (
    CONFIG_KEY,
    InsecureStateError,
    StateDir,
    default_base_dir,
    list_prefixes,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    # Several missing levels: every one we create must be 0700.
    return tmp_path / "deep" / "er" / "clusters"


def test_nothing_touches_disk_until_written(base: Path) -> None:
    state = StateDir("cluster", base=base)
    assert state.path == base / "cluster"
    assert not state.exists()
    state.check()  # absent directory is fine
    assert not base.exists()


def test_directories_and_files_are_private(base: Path, tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a typical umask must not widen anything
    try:
        state = StateDir("cluster", base=base)
        path = state.write_text("ssh/known_hosts", "x\n")
    finally:
        os.umask(old_umask)
    assert path == state.known_hosts_path
    for directory in (tmp_path / "deep", tmp_path / "deep" / "er", base, state.path):
        assert _mode(directory) == 0o700, directory
    assert _mode(state.path / "ssh") == 0o700
    assert _mode(path) == 0o600
    assert state.read_text(StateDir.KNOWN_HOSTS) == "x\n"
    # No temporary files left behind by the atomic write.
    assert sorted(p.name for p in (state.path / "ssh").iterdir()) == ["known_hosts"]


def test_overwrite_is_atomic_replace(base: Path) -> None:
    state = StateDir("c1", base=base)
    state.write_bytes("cluster.json", b"{}")
    first_inode = os.stat(state.metadata_path).st_ino
    state.write_metadata({"prefix": "c1", "workers": 3})
    assert os.stat(state.metadata_path).st_ino != first_inode  # renamed over, not rewritten
    assert state.read_metadata() == {"prefix": "c1", "workers": 3}
    assert _mode(state.metadata_path) == 0o600


def test_named_paths_and_typed_helpers(base: Path) -> None:
    state = StateDir("cluster", base=base)
    key = SSHKeyPair.generate("cluster-key")
    ca = ClusterCA.create("cluster")
    client = ca.issue("client", server=False)
    state.save_ssh_key(key)
    state.save_ca(ca)
    state.save_client_cert(client)
    expected = {
        state.ssh_key_path: "ssh/id_ed25519",
        state.ssh_public_key_path: "ssh/id_ed25519.pub",
        state.ca_cert_path: "tls/ca.pem",
        state.ca_key_path: "tls/ca.key",
        state.client_cert_path: "tls/client.pem",
        state.client_key_path: "tls/client.key",
    }
    for path, rel in expected.items():
        assert path == state.path / rel
        assert _mode(path) == 0o600
    assert state.known_hosts_path == state.path / "ssh" / "known_hosts"
    assert state.metadata_path == state.path / "cluster.json"

    loaded = state.load_ssh_key()
    assert loaded == key and loaded.public_openssh == key.public_openssh
    assert state.load_ca().cert_pem == ca.cert_pem
    assert state.load_client_cert() == client
    sec = state.dask_security()
    assert sec.require_encryption
    assert sec.get_tls_config_for_role("client")["cert"] == str(state.client_cert_path)


def test_known_hosts_helpers(base: Path) -> None:
    state = StateDir("cluster", base=base)
    a, b = SSHKeyPair.generate("a"), SSHKeyPair.generate("b")
    assert state.known_host_keys("1.2.3.4", 2222) == []
    state.set_known_host(["1.2.3.4", "10.0.0.2"], 2222, a.public_openssh)
    state.set_known_host("5.6.7.8", 2222, b.public_openssh)
    blob_a = " ".join(a.public_openssh.split()[:2])
    assert state.known_host_keys("10.0.0.2", 2222) == [blob_a]
    state.remove_known_host(["1.2.3.4", "10.0.0.2"], 2222)
    assert state.known_host_keys("1.2.3.4", 2222) == []
    assert state.known_host_keys("5.6.7.8", 2222) != []
    assert _mode(state.known_hosts_path) == 0o600


def test_refuses_group_accessible_directory(base: Path) -> None:
    state = StateDir("cluster", base=base)
    state.write_text("cluster.json", "{}")
    os.chmod(state.path, 0o750)
    with pytest.raises(InsecureStateError, match="0750"):
        state.check()
    with pytest.raises(InsecureStateError):
        state.read_text("cluster.json")
    with pytest.raises(InsecureStateError):
        state.write_text("cluster.json", "{}")
    os.chmod(state.path, 0o700)
    os.chmod(state.path / "cluster.json", 0o644)
    with pytest.raises(InsecureStateError, match="0644"):
        state.read_text("cluster.json")


def test_refuses_insecure_subdirectory_and_symlink(base: Path, tmp_path: Path) -> None:
    state = StateDir("cluster", base=base)
    state.write_text("ssh/known_hosts", "")
    os.chmod(state.path / "ssh", 0o755)
    with pytest.raises(InsecureStateError):
        state.check()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (base / "linked").symlink_to(elsewhere)
    with pytest.raises(InsecureStateError, match="symlink"):
        StateDir("linked", base=base).write_text("cluster.json", "{}")
    with pytest.raises(InsecureStateError):
        StateDir("linked", base=base).remove()


def test_refuses_world_writable_base(tmp_path: Path) -> None:
    base = tmp_path / "shared"
    base.mkdir()
    os.chmod(base, 0o777)
    with pytest.raises(InsecureStateError, match="writable"):
        StateDir("cluster", base=base).ensure()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_refuses_directory_owned_by_other_user(base: Path) -> None:
    state = StateDir("cluster", base=base).ensure()
    os.chown(state.path, 12345, -1)
    with pytest.raises(InsecureStateError, match="owned by uid 12345"):
        state.check()


def test_relative_paths_must_stay_inside(base: Path) -> None:
    state = StateDir("cluster", base=base)
    for bad in ("../x", "/etc/passwd", "ssh/../../x", "", "."):
        with pytest.raises(ValueError):
            state.write_text(bad, "x")
    for prefix in ("", "..", "a/b", ".hidden", "x" * 64):
        with pytest.raises(ValueError):
            StateDir(prefix, base=base)


def test_read_missing_file(base: Path) -> None:
    state = StateDir("cluster", base=base)
    with pytest.raises(FileNotFoundError):
        state.read_bytes("cluster.json")
    state.ensure()
    assert not state.has("cluster.json")
    with pytest.raises(FileNotFoundError):
        state.read_metadata()
    state.delete("cluster.json")  # idempotent


def test_remove_and_list_prefixes(base: Path) -> None:
    assert list_prefixes(base) == []
    for prefix in ("beta", "alpha", "alphabet"):
        StateDir(prefix, base=base).write_metadata({"prefix": prefix})
    (base / ".junk").mkdir()
    (base / "file.txt").write_text("not a cluster")
    assert list_prefixes(base) == ["alpha", "alphabet", "beta"]
    StateDir("alpha", base=base).remove()
    StateDir("alpha", base=base).remove()  # idempotent
    assert list_prefixes(base) == ["alphabet", "beta"]
    assert StateDir("alphabet", base=base).exists()


def test_base_from_dask_config(tmp_path: Path) -> None:
    with dask.config.set({CONFIG_KEY: str(tmp_path / "configured")}):
        assert default_base_dir() == tmp_path / "configured"
        state = StateDir("cluster")
        assert state.path == tmp_path / "configured" / "cluster"
        state.write_text("cluster.json", "{}")
        assert list_prefixes() == ["cluster"]


def test_default_base_is_platform_user_data_dir() -> None:
    import platformdirs

    with dask.config.set({CONFIG_KEY: None}):
        expected = Path(platformdirs.user_data_dir("scherbelberg-dask", appauthor=False))
        assert default_base_dir() == expected / "clusters"
