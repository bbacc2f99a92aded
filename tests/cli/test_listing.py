"""``ls`` without ``--prefix``: every cluster of the project, from any machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import CLI, error_lines, killed_on_exit

PREFIXES = ("ls-a", "ls-b", "ls-c")


@pytest.fixture(scope="module")
def three(cli: CLI) -> Iterator[list[str]]:
    """Three clusters (schedulers only), created side by side; nuked afterwards."""
    processes = [cli.popen("create", "--prefix", prefix, "--workers", "0") for prefix in PREFIXES]
    for process in processes:
        with killed_on_exit(process):
            _, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr
    yield list(PREFIXES)
    for prefix in PREFIXES:
        cli.run("nuke", "--prefix", prefix)


def _hourly(cli: CLI, server: dict[str, object]) -> tuple[float, float]:
    body = cli.emulator.request(f"/v1/server_types?name={server['server_type']}")
    (entry,) = body["server_types"]
    (price,) = [p for p in entry["prices"] if p["location"] == server["location"]]
    return float(price["price_hourly"]["net"]), float(price["price_monthly"]["net"])


def test_ls_lists_every_cluster_with_its_price(cli: CLI, three: list[str]) -> None:
    listing = cli.run("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["prefix"]: row for row in json.loads(listing.stdout)["clusters"]}
    assert set(three) <= set(rows)
    for prefix in three:
        row = rows[prefix]
        (server,) = cli.emulator.resources(prefix)["servers"]
        hourly, monthly = _hourly(cli, server)
        assert row["state"] == "running"
        assert row["scheduler_type"] == server["server_type"]
        assert row["workers"] == 0
        assert row["location"] == server["location"]
        assert row["hourly_eur"] == pytest.approx(hourly)
        assert row["monthly_eur"] == pytest.approx(monthly)
        assert row["cost_eur"] == pytest.approx(hourly)  # within the first started hour
        assert row["access"] == "owner"
    table = cli.run("ls")
    assert table.returncode == 0, table.stderr
    for prefix in three:
        line = next(line for line in table.stdout.splitlines() if line.startswith(prefix + " "))
        assert "running" in line and "yes (owner)" in line
        assert f"{rows[prefix]['hourly_eur']:.4f}" in line
    assert cli.emulator.token not in table.stdout + table.stderr + listing.stdout


def test_another_machine_sees_them_but_cannot_operate_them(
    cli: CLI, three: list[str], tmp_path: Path
) -> None:
    other = cli.machine(tmp_path)
    listing = other.run("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["prefix"]: row for row in json.loads(listing.stdout)["clusters"]}
    assert set(three) <= set(rows)
    assert all(rows[prefix]["access"] is None for prefix in three)
    table = other.run("ls")
    line = next(line for line in table.stdout.splitlines() if line.startswith("ls-a "))
    assert line.rstrip().endswith(" no")
    assert not other.state_dir.exists()  # looking changes nothing here
    # One cluster's view still needs its keys, and says so in one line.
    details = other.run("ls", "--prefix", "ls-a")
    assert details.returncode == 1
    (error,) = error_lines(details.stderr)
    assert "no local state" in error
