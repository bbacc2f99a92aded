"""Every verb end to end, each in its own process, against an emulator in its own process.

One cluster (``cli``) is created once and shared by the verbs that look at or use it;
``destroy`` runs last.  Clusters that a test takes apart get their own prefix.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from scherbelberg_dask.security import SSHKeyPair
from scherbelberg_dask.state import StateDir
from tests.cli.conftest import (
    CLI,
    LOG_LINE,
    LineReader,
    compute_from_existing,
    error_lines,
    killed_on_exit,
)

pytestmark = pytest.mark.openssh

PREFIX = "cli"


@pytest.fixture(scope="module")
def created(cli: CLI) -> Iterator[Any]:
    """``create`` run once; the cluster is nuked when the module is done."""
    result = cli.run("create", "--prefix", PREFIX, "--workers", "1", timeout=240)
    yield result
    if any(cli.emulator.resources(PREFIX).values()):  # a test failed before destroy
        cli.run("nuke", "--prefix", PREFIX)


def _hourly_net(cli: CLI, server_type: str, location: str) -> float:
    body = cli.emulator.request(f"/v1/server_types?name={server_type}")
    (entry,) = body["server_types"]
    (price,) = [p for p in entry["prices"] if p["location"] == location]
    return float(price["price_hourly"]["net"])


def _user_known_hosts() -> str:
    path = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "known_hosts"
    return path.read_text() if path.exists() else ""


def test_create_exits_and_leaves_the_cluster_running(cli: CLI, created: Any) -> None:
    assert created.returncode == 0, created.stderr
    servers = cli.emulator.resources(PREFIX)["servers"]
    names = sorted(s["name"] for s in servers)
    assert names == [f"{PREFIX}-node-scheduler", f"{PREFIX}-node-worker000"]
    assert {s["status"] for s in servers} == {"running"}
    # Seed-style log lines on stderr, no progress bar (stderr is not a terminal).
    logs = [line for line in created.stderr.splitlines() if LOG_LINE.match(line)]
    assert any(
        line.startswith(f"{PREFIX} INFO ") and "Successfully created" in line for line in logs
    )
    assert error_lines(created.stderr) == []
    assert "nodes up" not in created.stderr
    assert f"ls --prefix {PREFIX}" in created.stdout
    assert cli.emulator.token not in created.stdout + created.stderr
    # Dask keeps running after the create process exited.
    status = cli.run("ssh", "--prefix", PREFIX, "scheduler", "servicectl is-active dask-scheduler")
    assert status.returncode == 0, status.stderr


def test_cluster_is_usable_from_another_python_process(cli: CLI, created: Any) -> None:
    result = compute_from_existing(cli, PREFIX)
    assert result.returncode == 0, result.stderr
    assert "result 42" in result.stdout
    assert len(cli.emulator.resources(PREFIX)["servers"]) == 2


def test_ls_table_and_json_match_the_cloud(cli: CLI, created: Any) -> None:
    script = Path(sys.executable).with_name("scherbelberg-dask")
    assert script.exists(), "the console script is not installed"
    table = cli.run_argv([str(script), "ls", "--prefix", PREFIX])
    assert table.returncode == 0, table.stderr
    listing = cli.run("ls", "--prefix", PREFIX, "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    servers = {s["name"]: s for s in cli.emulator.resources(PREFIX)["servers"]}
    assert sorted(n["server"] for n in data["nodes"]) == sorted(servers)
    for node in data["nodes"]:
        server = servers[node["server"]]
        assert node["public_ip"] == server["public_ipv4"]
        assert node["private_ip"] == server["private_net"][0]["ip"]
        assert node["status"] == server["status"]
        assert node["server_type"] == server["server_type"]
        hourly = _hourly_net(cli, server["server_type"], server["location"])
        assert node["hourly_eur"] == pytest.approx(hourly)
        assert node["cost_eur"] == pytest.approx(hourly)  # within the first started hour
        row = next(line for line in table.stdout.splitlines() if line.startswith(node["name"]))
        assert node["public_ip"] in row and node["private_ip"] in row and node["role"] in row
    assert {n["role"] for n in data["nodes"]} == {"scheduler", "worker"}
    assert f"dashboard --prefix {PREFIX}" in table.stdout
    assert cli.emulator.token not in table.stdout + table.stderr + listing.stdout


def test_dask_hetzner_is_the_same_cli(cli: CLI, created: Any) -> None:
    dask = str(Path(sys.executable).with_name("dask"))
    listed = cli.run_argv([dask, "--help"])
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s+hetzner\s+Dask clusters on Hetzner Cloud", listed.stdout, re.M)
    usage = cli.run_argv([dask, "hetzner", "--help"])
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: dask hetzner ")
    verbs = re.compile(r"^    (\w+) ", re.M)
    own = cli.run("--help")
    assert verbs.findall(usage.stdout) == verbs.findall(own.stdout)
    assert {"create", "ls", "ssh", "scale", "destroy", "nuke"} <= set(verbs.findall(own.stdout))
    ls = cli.run_argv([dask, "hetzner", "ls", "--prefix", PREFIX, "--json"])
    assert ls.returncode == 0, ls.stderr
    nodes = {node["server"] for node in json.loads(ls.stdout)["nodes"]}
    assert nodes == {server["name"] for server in cli.emulator.resources(PREFIX)["servers"]}
    wrong = cli.run_argv([dask, "hetzner", "ls", "--no-such-option"])
    assert wrong.returncode == 2 and "dask hetzner: error:" in wrong.stderr


def test_ssh_runs_a_command_and_returns_its_status(cli: CLI, created: Any) -> None:
    before = _user_known_hosts()
    result = cli.run(
        "ssh", "--prefix", PREFIX, "worker000", "echo out-$((6*7)); echo err-1 >&2; exit 7"
    )
    assert result.returncode == 7, result.stderr
    assert "out-42" in result.stdout
    assert "err-1" in result.stderr
    # The user's own known_hosts is never touched.
    assert _user_known_hosts() == before


def test_ssh_refuses_a_swapped_host_key(cli: CLI, created: Any) -> None:
    """A server that shows another host key than the pinned one gets no command."""
    known_hosts = StateDir(PREFIX, base=cli.state_dir).known_hosts_path
    pinned = known_hosts.read_text()
    impostor = SSHKeyPair.generate("impostor").public_openssh.split()[:2]
    swapped = [line.split()[:1] + impostor for line in pinned.splitlines() if line.strip()]
    known_hosts.write_text("".join(" ".join(fields) + "\n" for fields in swapped))
    try:
        result = cli.run("ssh", "--prefix", PREFIX, "worker000", "echo ran-$((6*7))")
        assert result.returncode == 255
        assert "ran-42" not in result.stdout
        assert "Host key verification failed" in result.stderr, result.stderr
        # Nothing was re-pinned or added behind the user's back.
        assert known_hosts.read_text().split() == [f for row in swapped for f in row]
    finally:
        known_hosts.write_text(pinned)
    assert cli.run("ssh", "--prefix", PREFIX, "worker000", "true").returncode == 0


def test_ssh_interactive_session_through_openssh(cli: CLI, created: Any) -> None:
    argv = cli.argv("ssh", "--prefix", PREFIX, "scheduler")
    child = pexpect.spawn(
        argv[0], argv[1:], env=cli.env, encoding="utf-8", timeout=30, dimensions=(30, 100)
    )
    try:
        prompt = rf"dask@{PREFIX}-node-scheduler:\S*\$ "
        child.expect(prompt)
        child.sendline("echo sum=$((40+2))")
        child.expect_exact("sum=42")
        child.expect(prompt)
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


def test_scp_to_and_from_a_node(cli: CLI, created: Any, tmp_path: Path) -> None:
    payload = secrets.token_hex(16)
    local = tmp_path / "up.txt"
    local.write_text(payload)
    up = cli.run("scp", "--prefix", PREFIX, str(local), "worker000:copied.txt")
    assert up.returncode == 0, up.stderr
    remote = cli.run("ssh", "--prefix", PREFIX, "worker000", "cat copied.txt")
    assert remote.stdout == payload
    back = tmp_path / "back.txt"
    down = cli.run("scp", "--prefix", PREFIX, "worker000:copied.txt", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_text() == payload


def test_logs_show_the_dask_service(cli: CLI, created: Any) -> None:
    result = cli.run("logs", "--prefix", PREFIX, "worker000", "--lines", "60")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert 0 < len(lines) <= 60
    (scheduler,) = [
        s for s in cli.emulator.resources(PREFIX)["servers"] if s["name"].endswith("scheduler")
    ]
    # The worker's service log shows it registering with the scheduler's private address.
    assert f"tls://{scheduler['private_net'][0]['ip']}:" in result.stdout


def test_dashboard_tunnel_until_interrupted(cli: CLI, created: Any) -> None:
    with killed_on_exit(cli.popen("dashboard", "--prefix", PREFIX)) as process:
        link = LineReader(process.stdout).wait_for("http://", timeout=60).strip()
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
        health = link.removesuffix("/status") + "/health"
        with urllib.request.urlopen(health, timeout=30) as answer:
            assert answer.read().decode().strip() == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert len(cli.emulator.resources(PREFIX)["servers"]) == 2  # still running


def test_scale_up_and_down(cli: CLI, created: Any) -> None:
    def workers() -> list[str]:
        servers = cli.emulator.resources(PREFIX)["servers"]
        return sorted(s["name"] for s in servers if s["labels"]["scherbelberg/role"] == "worker")

    up = cli.run("scale", "--prefix", PREFIX, "2", timeout=180)
    assert up.returncode == 0, up.stderr
    assert len(workers()) == 2
    assert len(json.loads(cli.run("ls", "--prefix", PREFIX, "--json").stdout)["nodes"]) == 3
    down = cli.run("scale", "--prefix", PREFIX, "1", timeout=180)
    assert down.returncode == 0, down.stderr
    assert len(workers()) == 1


def test_catalog_lists_types_prices_and_locations(cli: CLI) -> None:
    result = cli.run("catalog", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    api_types = {t["name"]: t for t in cli.emulator.request_all("/v1/server_types", "server_types")}
    listed = {t["name"]: t for t in data["server_types"]}
    assert listed and set(listed) <= set(api_types)
    for name, entry in listed.items():
        api = api_types[name]
        assert (entry["cores"], entry["disk_gb"]) == (api["cores"], api["disk"])
        assert entry["memory_gb"] == pytest.approx(api["memory"])
        assert entry["architecture"] == api["architecture"]
        for price in api["prices"]:
            got = entry["prices"][price["location"]]
            assert got["hourly_net"] == pytest.approx(float(price["price_hourly"]["net"]))
    locations = {loc["name"] for loc in cli.emulator.request_all("/v1/locations", "locations")}
    assert {loc["name"] for loc in data["locations"]} == locations

    table = cli.run("catalog", "--location", "ash")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0] for line in table.stdout.splitlines() if line.strip()}
    for name, api in api_types.items():
        offered = any(p["location"] == "ash" for p in api["prices"])
        if not offered:
            assert name not in rows


def test_destroy_from_another_process(cli: CLI, created: Any) -> None:
    result = cli.run("destroy", "--prefix", PREFIX)
    assert result.returncode == 0, result.stderr
    assert all(not items for items in cli.emulator.resources(PREFIX).values())
    assert not (cli.state_dir / PREFIX).exists()
    again = cli.run("ls", "--prefix", PREFIX)
    assert again.returncode == 1
    assert len(error_lines(again.stderr)) == 1


def test_create_on_a_terminal_shows_progress_and_nuke_removes_remains(cli: CLI) -> None:
    prefix = "cli-nuke"
    argv = cli.argv("create", "--prefix", prefix, "--workers", "1")
    child = pexpect.spawn(argv[0], argv[1:], env=cli.env, encoding="utf-8", timeout=120)
    try:
        child.expect_exact("nodes up")  # the progress bar
        child.expect_exact("Successfully created")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert len(cli.emulator.resources(prefix)["servers"]) == 2
    shutil.rmtree(cli.state_dir / prefix)  # the local state is lost: destroy cannot help
    destroy = cli.run("destroy", "--prefix", prefix)
    assert destroy.returncode == 1
    assert len(error_lines(destroy.stderr)) == 1
    nuke = cli.run("nuke", "--prefix", prefix)
    assert nuke.returncode == 0, nuke.stderr
    assert "2 servers" in nuke.stdout
    assert all(not items for items in cli.emulator.resources(prefix).values())


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_create_leaves_nothing(cli: CLI, signum: int, status: int) -> None:
    prefix = f"cli-stop{signum}"
    with killed_on_exit(cli.popen("create", "--prefix", prefix, "--workers", "1")) as process:
        stderr = LineReader(process.stderr)
        # Interrupt while the servers boot.  (Not earlier: a server whose create request
        # is still in flight when cleanup lists the cluster's servers survives it; see
        # the CLI report.)
        for node in ("scheduler", "worker000"):
            stderr.wait_for(f"[{node}] Waiting for server to start", timeout=60)
        process.send_signal(signum)
        assert process.wait(timeout=120) == status, stderr.rest()
    assert all(not items for items in cli.emulator.resources(prefix).values())
    assert not (cli.state_dir / prefix).exists()


def test_demo_runs_a_cluster_on_its_own_emulator(cli: CLI) -> None:
    result = cli.run("demo", "--workers", "1", "--scale-to", "2", "--size", "200", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "result:" in result.stdout and "dashboard: http://127.0.0.1:" in result.stdout
    left = re.search(r"cloud resources left after close: \{(.*)\}", result.stdout)
    assert left, result.stdout
    assert {count.split(":")[1].strip() for count in left.group(1).split(",")} == {"0"}
