"""Sharing a cluster between two "machines" (two state directories and homes).

Machine A creates the cluster and shares it; machine B first only sees it, then gets
Dask-only access, then operator access, and finally destroys it.  Both use the same
emulator (the same Hetzner project) with the same token, as teammates would.
"""

from __future__ import annotations

import json
import signal
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import (
    CLI,
    LineReader,
    compute_from_existing,
    error_lines,
    killed_on_exit,
)

pytestmark = pytest.mark.openssh

PREFIX = "shr"
PASSPHRASE = "correct horse battery"


def _with_passphrase(machine: CLI, passphrase: str = PASSPHRASE) -> dict[str, str]:
    return {**machine.env, "SCHERBELBERG_SHARE_PASSPHRASE": passphrase}


@pytest.fixture(scope="module")
def machines(cli: CLI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CLI]]:
    """A (with a running cluster of one worker) and B (without local state)."""
    made = cli.run("create", "--prefix", PREFIX, "--workers", "1", timeout=240)
    assert made.returncode == 0, made.stderr
    yield {
        "A": cli,
        "B": cli.machine(tmp_path_factory.mktemp("machine-b")),
    }
    # Removes A's local state too (and the cluster, if a test failed before destroy).
    cli.run("nuke", "--prefix", PREFIX)


@pytest.fixture(scope="module")
def bundles(machines: dict[str, CLI], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Dask-only and an operator bundle, written by machine A."""
    a = machines["A"]
    out = tmp_path_factory.mktemp("bundles")
    paths = {}
    for kind in ("dask", "operator"):
        path = out / f"{kind}.bundle"
        result = a.run(
            "share", "--prefix", PREFIX, "--to", str(path), "--kind", kind,
            env=_with_passphrase(a),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "attach" in result.stdout
        paths[kind] = path
    return paths


def _compute(machine: CLI) -> Any:
    return compute_from_existing(machine, PREFIX)


def _one_error(result: Any) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: ")
    return line


def test_another_machine_sees_the_cluster_but_cannot_operate_it(machines: dict[str, CLI]) -> None:
    listing = machines["B"].run("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = [r for r in json.loads(listing.stdout)["clusters"] if r["prefix"] == PREFIX]
    assert row["access"] is None and row["workers"] == 1 and row["hourly_eur"] > 0
    assert "no local state" in _one_error(machines["B"].run("ssh", "--prefix", PREFIX, "scheduler"))


def test_bundles_are_private_encrypted_and_hold_no_token(
    machines: dict[str, CLI], bundles: dict[str, Path]
) -> None:
    token = machines["A"].emulator.token
    for path in bundles.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert "PRIVATE KEY" not in text and "CERTIFICATE" not in text
        assert token not in text and PASSPHRASE not in text
        assert json.loads(text)["kdf"]["name"] == "scrypt"
    # The file is never overwritten.
    again = machines["A"].run(
        "share", "--prefix", PREFIX, "--to", str(bundles["dask"]),
        env=_with_passphrase(machines["A"]),
    )  # fmt: skip
    assert "exists already" in _one_error(again)


def test_a_wrong_passphrase_or_a_damaged_bundle_changes_nothing(
    machines: dict[str, CLI], bundles: dict[str, Path], tmp_path: Path
) -> None:
    b = machines["B"]
    wrong = b.run("attach", str(bundles["dask"]), env=_with_passphrase(b, "not the passphrase"))
    assert "wrong passphrase" in _one_error(wrong)
    document = json.loads(bundles["dask"].read_text())
    ciphertext = document["ciphertext"]
    flipped = ciphertext[:40] + ("A" if ciphertext[40] != "A" else "B") + ciphertext[41:]
    damaged = tmp_path / "damaged.bundle"
    damaged.write_text(json.dumps({**document, "ciphertext": flipped}))
    assert "damaged" in _one_error(b.run("attach", str(damaged), env=_with_passphrase(b)))
    truncated = tmp_path / "truncated.bundle"
    truncated.write_text(bundles["dask"].read_text()[:100])
    line = _one_error(b.run("attach", str(truncated), env=_with_passphrase(b)))
    assert "not a scherbelberg-dask access bundle" in line
    for result in (wrong,):
        assert PASSPHRASE not in result.stdout + result.stderr
    assert not (b.state_dir / PREFIX).exists()
    assert not b.state_dir.exists() or not [p for p in b.state_dir.iterdir()]


def test_dask_only_access_computes_but_cannot_ssh_scale_or_destroy(
    machines: dict[str, CLI], bundles: dict[str, Path]
) -> None:
    b, emulator = machines["B"], machines["A"].emulator
    attached = b.run("attach", str(bundles["dask"]), env=_with_passphrase(b))
    assert attached.returncode == 0, attached.stderr
    assert "Dask-only" in attached.stdout
    assert not (b.state_dir / PREFIX / "ssh").exists()
    assert not (b.state_dir / PREFIX / "tls" / "ca.key").exists()
    listing = b.run("ls", "--json")
    (row,) = [r for r in json.loads(listing.stdout)["clusters"] if r["prefix"] == PREFIX]
    assert row["access"] == "dask"
    details = b.run("ls", "--prefix", PREFIX, "--json")
    assert details.returncode == 0, details.stderr
    computed = _compute(b)
    assert computed.returncode == 0, computed.stderr
    assert "result 42" in computed.stdout
    before = emulator.resources(PREFIX)
    for verb in (
        ["ssh", "--prefix", PREFIX, "scheduler", "true"],
        ["logs", "--prefix", PREFIX, "scheduler"],
        ["dashboard", "--prefix", PREFIX],
        ["scale", "--prefix", PREFIX, "2"],
        ["destroy", "--prefix", PREFIX],
        ["nuke", "--prefix", PREFIX],
    ):
        line = _one_error(b.run(*verb))
        assert "Dask-only access" in line, (verb, line)
    assert emulator.resources(PREFIX) == before
    assert (b.state_dir / PREFIX).is_dir()  # its access stays


def test_operator_access_can_ssh_scale_and_destroy(
    machines: dict[str, CLI], bundles: dict[str, Path]
) -> None:
    b, emulator = machines["B"], machines["A"].emulator
    # B already has Dask-only access: trading it for operator access is explicit.
    kept = b.run("attach", str(bundles["operator"]), env=_with_passphrase(b))
    assert "--replace" in _one_error(kept)
    attached = b.run("attach", str(bundles["operator"]), "--replace", env=_with_passphrase(b))
    assert attached.returncode == 0, attached.stderr
    assert not (b.state_dir / PREFIX / "tls" / "ca.key").exists()  # not asked for
    listing = b.run("ls", "--json")
    (row,) = [r for r in json.loads(listing.stdout)["clusters"] if r["prefix"] == PREFIX]
    assert row["access"] == "operator"
    ssh = b.run("ssh", "--prefix", PREFIX, "scheduler", "echo", "hello from B")
    assert ssh.returncode == 0, ssh.stderr
    assert "hello from B" in ssh.stdout
    with killed_on_exit(b.popen("dashboard", "--prefix", PREFIX)) as process:
        link = LineReader(process.stdout).wait_for("http://", timeout=60).strip()
        with urllib.request.urlopen(link.removesuffix("/status") + "/health", timeout=30) as r:
            assert r.read().decode().strip() == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    scaled = b.run("scale", "--prefix", PREFIX, "2", timeout=240)
    assert scaled.returncode == 0, scaled.stderr
    assert len(emulator.resources(PREFIX)["servers"]) == 3
    # The worker B started (with the bundle's node certificate) serves Dask, for A too.
    computed = _compute(machines["A"])
    assert computed.returncode == 0, computed.stderr
    assert "result 42" in computed.stdout
    logs = b.run("logs", "--prefix", PREFIX, "worker001")
    assert logs.returncode == 0, logs.stderr
    down = b.run("scale", "--prefix", PREFIX, "1", timeout=240)
    assert down.returncode == 0, down.stderr
    assert len(emulator.resources(PREFIX)["servers"]) == 2
    # Sharing on needs the CA key, which B was not given.
    relayed = b.run(
        "share", "--prefix", PREFIX, "--to", str(b.state_dir.parent / "relay.bundle"),
        env=_with_passphrase(b),
    )  # fmt: skip
    assert "CA key" in _one_error(relayed)
    destroyed = b.run("destroy", "--prefix", PREFIX)
    assert destroyed.returncode == 0, destroyed.stderr
    assert not any(emulator.resources(PREFIX).values())
    assert not (b.state_dir / PREFIX).exists()
    # A still holds its state; ls says the cluster is gone from the project.
    gone = machines["A"].run("ls", "--json")
    assert PREFIX in json.loads(gone.stdout)["stale_local_state"]
