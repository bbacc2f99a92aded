"""The seed's command line with retired types: ``create --worker ccx52 --scheduler ccx12``.

The emulator's catalog retires both types as Hetzner did; the cluster gets their
successors, and each process says so once per type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.cli.conftest import CLI, LOG_LINE, error_lines

PREFIX = "seed"


def _warnings(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if LOG_LINE.match(line) and " WARNING " in line and "using its successor" in line
    ]


def _types(cli: CLI) -> dict[str, str]:
    servers = cli.emulator.resources(PREFIX)["servers"]
    return {s["name"].removeprefix(f"{PREFIX}-node-"): s["server_type"] for s in servers}


@pytest.fixture
def seed_cluster(cli: CLI) -> Iterator[None]:
    yield
    if any(cli.emulator.resources(PREFIX).values()):
        cli.run("nuke", "--prefix", PREFIX)


def test_the_seed_command_line_gets_the_successors(cli: CLI, seed_cluster: None) -> None:
    created = cli.run(
        "create", "--prefix", PREFIX, "--workers", "1", "--worker", "ccx52", "--scheduler", "ccx12"
    )
    assert created.returncode == 0, created.stderr
    assert error_lines(created.stderr) == []
    assert _types(cli) == {"scheduler": "ccx13", "worker000": "ccx53"}
    lines = _warnings(created.stderr)
    assert len(lines) == 2, created.stderr
    assert re.search(
        r"scheduler_type ccx12 \(2 cores, 8 GB\) is retired .* ccx13 \(2 cores", lines[0]
    )
    assert re.search(r"worker_type ccx52 \(32 cores, 128 GB\) is retired .* ccx53 \(32", lines[1])
    assert all("EUR/month" in line for line in lines)

    # Growing later uses the successor again, with one warning (for the worker type).
    up = cli.run("scale", "--prefix", PREFIX, "2", timeout=180)
    assert up.returncode == 0, up.stderr
    assert _types(cli)["worker001"] == "ccx53"
    (line,) = _warnings(up.stderr)
    assert "worker_type ccx52" in line and "successor ccx53" in line

    # Refusing retired types, scale fails before a server is made.
    strict = cli.run("scale", "--prefix", PREFIX, "3", "--retired-types", "error", timeout=180)
    assert strict.returncode == 1
    (error,) = error_lines(strict.stderr)
    assert re.search(r"^error: worker_type: .*'ccx52' is retired.*successor is ccx53", error)
    assert len(_types(cli)) == 3
    assert cli.emulator.token not in created.stderr + up.stderr + strict.stderr

    destroyed = cli.run("destroy", "--prefix", PREFIX)
    assert destroyed.returncode == 0, destroyed.stderr
    assert not any(cli.emulator.resources(PREFIX).values())
