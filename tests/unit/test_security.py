"""Tests of scherbelberg_dask.security: cluster CA, Dask mutual TLS, SSH keys, known_hosts."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import asyncssh
import dask.config
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from distributed import Client, Scheduler, Worker

from scherbelberg_dask.security import (
    CertKeyPair,
    ClusterCA,
    SSHKeyPair,
    dask_security,
    fingerprint_md5,
    fingerprint_sha256,
    host_keys_for,
    known_hosts_line,
    remove_host,
    set_host_key,
)

# ------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("testcluster")


def test_ca_is_constrained_p256_ca(ca: ClusterCA) -> None:
    cert = ca.certificate
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3650
    assert ca.cluster_name == "testcluster"


def test_ca_pem_round_trip(ca: ClusterCA) -> None:
    loaded = ClusterCA.from_pem(ca.cert_pem, ca.key_pem)
    assert loaded.cert_pem == ca.cert_pem
    pair = loaded.issue("node")
    assert ca.issued(pair.cert_pem)


def test_ca_from_pem_rejects_foreign_key_and_leaf(ca: ClusterCA) -> None:
    other = ClusterCA.create("other")
    with pytest.raises(ValueError, match="does not match"):
        ClusterCA.from_pem(ca.cert_pem, other.key_pem)
    leaf = ca.issue("leaf")
    with pytest.raises(ValueError, match="not a CA"):
        ClusterCA.from_pem(leaf.cert_pem, leaf.key_pem)
    with pytest.raises(ValueError, match="private key") as info:
        ClusterCA.from_pem(ca.cert_pem, b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    assert "garbage" not in str(info.value)


def test_issue_sets_names_and_usages(ca: ClusterCA) -> None:
    pair = ca.issue(
        "cluster-node-worker000",
        ip_addresses=["10.0.1.100", "2001:db8::1"],
        dns_names=["worker.example"],
        client=False,
        days=30,
    )
    cert = pair.certificate
    assert ca.issued(pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.1.100"),
        ipaddress.ip_address("2001:db8::1"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["cluster-node-worker000", "worker.example"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not bc.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in (30, 31)
    assert b"PRIVATE KEY" in pair.key_pem
    assert "PRIVATE" not in repr(pair) and "PRIVATE" not in repr(ca)
    with pytest.raises(ValueError):
        ca.issue("nothing", client=False, server=False)


def test_issued_is_false_for_other_ca(ca: ClusterCA) -> None:
    other = ClusterCA.create("testcluster")  # same name, different key
    assert not ca.issued(other.issue("node").cert_pem)
    assert not ca.issued(other.cert_pem)


def _write_pair(directory: Path, name: str, ca: ClusterCA, pair: CertKeyPair) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca": directory / f"{name}-ca.pem",
        "cert": directory / f"{name}.pem",
        "key": directory / f"{name}.key",
    }
    paths["ca"].write_bytes(ca.cert_pem)
    paths["cert"].write_bytes(pair.cert_pem)
    paths["key"].write_bytes(pair.key_pem)
    return paths


async def test_dask_mutual_tls(tmp_path: Path, ca: ClusterCA) -> None:
    node = _write_pair(tmp_path, "node", ca, ca.issue("node", ip_addresses=["127.0.0.1"]))
    client = _write_pair(tmp_path, "client", ca, ca.issue("client", server=False))
    other_ca = ClusterCA.create("intruder")
    intruder = _write_pair(tmp_path, "intruder", other_ca, other_ca.issue("client"))
    node_sec = dask_security(node["ca"], node["cert"], node["key"])
    client_sec = dask_security(client["ca"], client["cert"], client["key"])
    assert node_sec.require_encryption and client_sec.require_encryption

    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
        async with (
            Scheduler(
                host="127.0.0.1",
                port=0,
                protocol="tls",
                security=node_sec,
                dashboard_address=None,
                dashboard=False,
            ) as scheduler,
            Worker(scheduler.address, security=node_sec, nthreads=1, name="w0") as worker,
        ):
            assert scheduler.address.startswith("tls://127.0.0.1:")
            async with Client(scheduler.address, security=client_sec, asynchronous=True) as c:
                assert await c.submit(lambda x: x * 6, 7) == 42
                # The scheduler reaches the worker over TLS too.
                assert await c.run(lambda: "pong") == {worker.address: "pong"}

            # Certificate from another CA: the handshake fails, no client is admitted.
            with pytest.raises(OSError) as refused:
                async with Client(
                    scheduler.address,
                    security=dask_security(intruder["ca"], intruder["cert"], intruder["key"]),
                    asynchronous=True,
                    timeout=3,
                ):
                    pass
            assert "certificate" in str(refused.value).lower()
            # Right CA file but a self-made certificate: refused too.
            mixed = dask_security(client["ca"], intruder["cert"], intruder["key"])
            with pytest.raises(OSError) as refused:
                async with Client(scheduler.address, security=mixed, asynchronous=True, timeout=3):
                    pass
            assert "unknown ca" in str(refused.value).lower()
            # Plain TCP to the TLS port: refused.
            plain = scheduler.address.replace("tls://", "tcp://")
            with pytest.raises(OSError) as refused:
                async with Client(plain, asynchronous=True, timeout=3):
                    pass
            # No refused party got in as client or worker.
            assert set(scheduler.clients) <= {"fire-and-forget"}
            assert set(scheduler.workers) == {worker.address}


def test_dask_security_sets_all_roles(tmp_path: Path) -> None:
    sec = dask_security(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key")
    for role in ("client", "scheduler", "worker"):
        conf = sec.get_tls_config_for_role(role)
        assert conf["ca_file"] == str(tmp_path / "ca.pem")
        assert conf["cert"] == str(tmp_path / "c.pem")
        assert conf["key"] == str(tmp_path / "c.key")


# ------------------------------------------------------------------------------ SSH keys


def test_generate_formats_and_fingerprints(tmp_path: Path) -> None:
    key = SSHKeyPair.generate("cluster-key")
    assert key.public_openssh.startswith("ssh-ed25519 AAAA")
    assert key.public_openssh.endswith(" cluster-key")
    assert key.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "OPENSSH" not in repr(key)
    # Compare with asyncssh's independent implementation.
    imported = asyncssh.import_public_key(key.public_openssh)
    assert key.fingerprint_sha256 == imported.get_fingerprint("sha256")
    assert "MD5:" + key.fingerprint_md5 == imported.get_fingerprint("md5")
    assert len(key.fingerprint_md5.split(":")) == 16
    # And with OpenSSH itself when present.
    if shutil.which("ssh-keygen"):
        pub = tmp_path / "k.pub"
        pub.write_text(key.public_openssh + "\n")
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "md5", "-f", str(pub)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"MD5:{key.fingerprint_md5}" in out


def test_private_key_usable_by_asyncssh_and_round_trips() -> None:
    key = SSHKeyPair.generate("x")
    imported = asyncssh.import_private_key(key.private_openssh)
    assert (
        imported.export_public_key("openssh").decode().split()[:2]
        == (key.public_openssh.split()[:2])
    )
    loaded = SSHKeyPair.from_private_openssh(key.private_openssh, "x")
    assert loaded == key
    assert loaded.public_openssh == key.public_openssh
    assert loaded != SSHKeyPair.generate("x")
    assert hash(loaded) == hash(key)


def test_loading_bad_keys_fails_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        SSHKeyPair.from_private_openssh("-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff\n")
    assert "secretstuff" not in str(info.value)
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    with pytest.raises(ValueError, match="Ed25519"):
        SSHKeyPair.from_private_openssh(rsa.export_private_key("openssh"))
    with pytest.raises(ValueError):
        fingerprint_md5("ssh-ed25519 not-base64!")
    with pytest.raises(ValueError):
        SSHKeyPair.generate("two\nlines")


def test_known_hosts_line() -> None:
    key = SSHKeyPair.generate("host comment")
    type_and_blob = " ".join(key.public_openssh.split()[:2])
    assert known_hosts_line("10.0.0.2", 22, key.public_openssh) == f"10.0.0.2 {type_and_blob}"
    assert known_hosts_line("127.0.0.5", 2222, key.public_openssh) == (
        f"[127.0.0.5]:2222 {type_and_blob}"
    )
    assert known_hosts_line(["1.2.3.4", "10.0.0.2"], 2222, key.public_openssh) == (
        f"[1.2.3.4]:2222,[10.0.0.2]:2222 {type_and_blob}"
    )
    for bad in ("a b", "*", "x,y", "", "|1|hashed"):
        with pytest.raises(ValueError):
            known_hosts_line(bad, 22, key.public_openssh)
    with pytest.raises(ValueError):
        known_hosts_line("h", 0, key.public_openssh)
    assert fingerprint_sha256(known_hosts_line("h", 22, key.public_openssh).split(None, 1)[1]) == (
        key.fingerprint_sha256
    )


def test_known_hosts_text_functions() -> None:
    a, b, c = (SSHKeyPair.generate(n) for n in "abc")
    text = "# comment\n" + known_hosts_line(["1.1.1.1", "10.0.0.1"], 2222, a.public_openssh) + "\n"
    text = set_host_key(text, "2.2.2.2", 2222, b.public_openssh)
    assert host_keys_for(text, "1.1.1.1", 2222) == [" ".join(a.public_openssh.split()[:2])]
    assert host_keys_for(text, "10.0.0.1", 2222) == host_keys_for(text, "1.1.1.1", 2222)
    assert host_keys_for(text, "1.1.1.1", 22) == []
    # A new server reusing an address replaces the old key for that address only.
    text = set_host_key(text, "10.0.0.1", 2222, c.public_openssh)
    assert host_keys_for(text, "10.0.0.1", 2222) == [" ".join(c.public_openssh.split()[:2])]
    assert host_keys_for(text, "1.1.1.1", 2222) == [" ".join(a.public_openssh.split()[:2])]
    text = remove_host(text, ["1.1.1.1"], 2222)
    assert host_keys_for(text, "1.1.1.1", 2222) == []
    assert host_keys_for(text, "2.2.2.2", 2222) != []
    assert text.startswith("# comment\n")
    assert a.public_openssh.split()[1] not in text
