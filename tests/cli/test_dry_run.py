"""``create --dry-run``: a create's checks and its price, and nothing made."""

from __future__ import annotations

import pytest

from tests.cli.conftest import CLI, error_lines

BAD = {
    "type": ["--worker", "cx99"],
    "retired-error": ["--worker", "ccx52", "--retired-types", "error"],
    "location": ["--location", "atlantis"],
    "image": ["--image", "ubuntu-20.04"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_exactly_as_a_real_create(cli: CLI, case: str) -> None:
    prefix = f"dry-{case}"
    args = ["create", "--prefix", prefix, "--workers", "0", *BAD[case]]
    dry = cli.run(*args, "--dry-run")
    real = cli.run(*args)
    assert dry.returncode == real.returncode == 1
    (line,) = error_lines(dry.stderr)
    assert [line] == error_lines(real.stderr)
    assert line.startswith("error: ")
    assert "Dry run" not in dry.stdout
    assert not any(cli.emulator.resources(prefix).values())
    assert not (cli.state_dir / prefix).exists()


def test_good_input_prints_the_plan_and_its_price(cli: CLI) -> None:
    prefix = "dry-good"
    before = cli.emulator.counts()
    dry = cli.run("create", "--prefix", prefix, "--workers", "2", "--worker", "ccx52", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not any(cli.emulator.resources(prefix).values())
    assert cli.emulator.counts() == before
    assert not (cli.state_dir / prefix).exists()
    out = dry.stdout
    assert "nothing was created" in out
    # The retired type is shown resolved to what would really be made, with its price.
    (ccx53,) = cli.emulator.request("/v1/server_types?name=ccx53")["server_types"]
    (price,) = [p for p in ccx53["prices"] if p["location"] == "fsn1"]
    hourly, monthly = float(price["price_hourly"]["net"]), float(price["price_monthly"]["net"])
    workers = [line for line in out.splitlines() if f"{prefix}-node-worker" in line]
    assert len(workers) == 2
    assert all("ccx53 (asked for ccx52, retired)" in line for line in workers)
    assert all(
        f"{hourly:.4f} EUR/h" in line and f"{monthly:.2f} EUR/month" in line for line in workers
    )
    assert f"{prefix}-node-scheduler" in out
    assert "Price: " in out and "EUR/month" in out
    assert "using its successor ccx53" in dry.stderr  # the same warning a create logs


def test_a_taken_prefix_fails_as_a_create_would(cli: CLI) -> None:
    prefix = "dry-taken"
    made = cli.run("create", "--prefix", prefix, "--workers", "0")
    assert made.returncode == 0, made.stderr
    try:
        before = cli.emulator.resources(prefix)
        dry = cli.run("create", "--prefix", prefix, "--dry-run")
        assert dry.returncode == 1
        (line,) = error_lines(dry.stderr)
        assert "already exists" in line
        assert cli.emulator.resources(prefix) == before
    finally:
        cli.run("destroy", "--prefix", prefix)
