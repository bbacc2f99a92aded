"""Access bundles: what each kind holds, encryption, and installing them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from scherbelberg_dask.security import ClusterCA, SSHKeyPair
from scherbelberg_dask.state import StateDir
from scherbelberg_dask.state.access import access_of, require
from scherbelberg_dask.state.bundle import (
    NODE_CERT,
    BundleError,
    decrypt_bundle,
    encrypt_bundle,
    install_bundle,
    make_bundle,
    write_private_file,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")

PASSPHRASE = "a long enough passphrase"


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    """The state of the machine that created cluster ``team``."""
    state = StateDir("team", base=tmp_path_factory.mktemp("owner"))
    ca = ClusterCA.create("team")
    state.save_ca(ca)
    state.save_ssh_key(SSHKeyPair.generate("team-key"))
    state.save_client_cert(ca.issue("client", server=False))
    state.set_known_host(["127.0.0.9"], 22, SSHKeyPair.generate("host").public_openssh)
    state.write_metadata({"prefix": "team", "image": "x", "settings": {"ssh_port": 22}})
    return state


@pytest.fixture(scope="module")
def sealed(owner: StateDir) -> dict[str, bytes]:
    """An encrypted bundle of each kind (scrypt is slow on purpose: made once)."""
    return {
        kind: encrypt_bundle(make_bundle(owner, kind, scheduler_address="tls://x:1"), PASSPHRASE)
        for kind in ("dask", "operator")
    }


def test_each_kind_holds_only_what_it_allows(owner: StateDir) -> None:
    dask = make_bundle(owner, "dask", scheduler_address=None)
    assert set(dask.files) == {StateDir.CA_CERT, StateDir.CLIENT_CERT, StateDir.CLIENT_KEY}
    operator = make_bundle(owner, "operator", scheduler_address=None)
    assert StateDir.SSH_KEY in operator.files and StateDir.KNOWN_HOSTS in operator.files
    assert StateDir.CA_KEY not in operator.files
    with_ca = make_bundle(owner, "operator", scheduler_address=None, include_ca_key=True)
    assert with_ca.has_ca_key
    with pytest.raises(BundleError, match="only go into an operator bundle"):
        make_bundle(owner, "dask", scheduler_address=None, include_ca_key=True)
    # A new client certificate of the cluster's CA, not the owner's own.
    ca = owner.load_ca()
    assert dask.files[StateDir.CLIENT_CERT] != owner.read_bytes(StateDir.CLIENT_CERT)
    assert ca.issued(dask.files[StateDir.CLIENT_CERT])
    assert ca.issued(operator.files[NODE_CERT])
    assert "BEGIN" not in repr(operator)


def test_roundtrip_and_secrets_stay_inside(owner: StateDir, sealed: dict[str, bytes]) -> None:
    for kind, data in sealed.items():
        text = data.decode()
        assert "PRIVATE KEY" not in text and PASSPHRASE not in text
        bundle = decrypt_bundle(data, PASSPHRASE)
        assert (bundle.prefix, bundle.kind, bundle.scheduler_address) == ("team", kind, "tls://x:1")
        assert bundle.metadata["settings"] == {"ssh_port": 22}


@pytest.mark.parametrize(
    "change",
    ["passphrase", "ciphertext", "salt", "scrypt-n", "kind-in-header", "truncated", "not-json"],
)
def test_wrong_passphrase_or_any_change_fails_with_one_line(
    sealed: dict[str, bytes], change: str
) -> None:
    data, passphrase = sealed["operator"], PASSPHRASE
    document = json.loads(data)
    if change == "passphrase":
        passphrase = "not it"
    elif change == "ciphertext":
        document["ciphertext"] = document["ciphertext"][::-1]
    elif change == "salt":
        document["kdf"]["salt"] = "AAAAAAAAAAAAAAAAAAAAAA=="
    elif change == "scrypt-n":
        document["kdf"]["n"] = 2**30  # would exhaust memory: refused before deriving
    elif change == "kind-in-header":
        document["kind"] = "dask"  # the header is authenticated
    if change == "truncated":
        data = data[: len(data) // 2]
    elif change == "not-json":
        data = b"\x00\xff"
    else:
        data = json.dumps(document).encode()
    with pytest.raises(BundleError) as error:
        decrypt_bundle(data, passphrase)
    message = str(error.value)
    assert "\n" not in message and PASSPHRASE not in message and "BEGIN" not in message


def test_install_gives_the_access_of_its_kind(sealed: dict[str, bytes], tmp_path: Path) -> None:
    base = tmp_path / "other"
    dask = install_bundle(decrypt_bundle(sealed["dask"], PASSPHRASE), base)
    assert access_of(dask) == "dask"
    assert stat.S_IMODE(dask.path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in dask.path.rglob("*") if p.is_file())
    assert dask.read_metadata()["shared"]["kind"] == "dask"
    dask.dask_security()  # the client's TLS files are there and private
    with pytest.raises(PermissionError, match="Dask-only access"):
        require(dask, "operator", "destroy")
    operator = decrypt_bundle(sealed["operator"], PASSPHRASE)
    with pytest.raises(BundleError, match="already has local state"):
        install_bundle(operator, base)
    assert access_of(dask) == "dask"  # unchanged
    install_bundle(operator, base, replace=True)
    assert access_of(StateDir("team", base=base)) == "operator"
    require(StateDir("team", base=base), "operator", "destroy")
    assert sorted(os.listdir(base)) == ["team"]  # no staging left behind


def test_owner_access_and_no_access(owner: StateDir, tmp_path: Path) -> None:
    assert access_of(owner) == "owner"
    assert access_of(StateDir("team", base=tmp_path)) is None


def test_bundle_files_are_new_and_private(tmp_path: Path) -> None:
    path = tmp_path / "x.bundle"
    write_private_file(path, b"data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(BundleError, match="exists already"):
        write_private_file(path, b"other")
    assert path.read_bytes() == b"data"
