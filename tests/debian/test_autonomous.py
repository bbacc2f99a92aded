"""An autonomous cluster on real Debian servers (docs/autonomous.md).

The controller runs as its own system user under systemd with the API token as a
``LoadCredential=``; this test proves what that guards (the Dask user cannot read the
token, it is in no file the Dask user can read, in no Dask process's environment and on
no worker), that the controller and the cluster survive a reboot of the scheduler node,
and that the idle timeout deletes the whole cluster.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
from dask.distributed import Client

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.bootstrap.controller_unit import (
    CONTROLLER_HOME,
    CONTROLLER_USER,
    SERVICE,
    TOKEN_PATH,
)
from scherbelberg_dask.cluster.nuke import nuke_async
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.ssh import SSHTarget, connect
from tests.cluster.conftest import assert_nothing_left, count_left, resources

from .conftest import containers, until

#: What a full look at a node's files leaves out: kernel views, not files.
_TOP_LEVEL = "/etc /home /opt /root /run /srv /tmp /usr /var"


async def _run(target: SSHTarget, command: str, *, stdin: str | None = None) -> Any:
    async with await connect(target, timeout=60) as conn:
        return await conn.run(command, check=False, timeout=300, input=stdin)


def _disk(emulator: Emulator, server_id: int) -> Path:
    """A server's own disk layer on the host (what it wrote on top of its image)."""
    assert emulator.directory is not None
    return emulator.directory / f"m{server_id}" / "disk"


def _files_with(root: Path, secret: bytes) -> list[str]:
    """Files below ``root`` (any content, binary too) that contain ``secret``."""
    found = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            if secret in path.read_bytes():
                found.append(str(path.relative_to(root)))
        except OSError:
            continue
    return sorted(found)


def _container_init(nspawn_pid: int) -> int:
    """The host PID of a container's systemd (the nspawn process's child)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == nspawn_pid and comm == "systemd":
            return int(entry.name)
    raise AssertionError(f"no container init below nspawn {nspawn_pid}")


def _grep_as_root_in(init_pid: int, secret: str) -> subprocess.CompletedProcess[str]:
    """``grep`` as root inside a container's file system, binary files included."""
    return subprocess.run(
        [
            "nsenter",
            f"--target={init_pid}",
            "--mount",
            "--",
            "sh",
            "-c",
            f"grep -rlsF -f /dev/stdin {_TOP_LEVEL}",
        ],
        input=secret,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _dask_environments() -> str:
    """Shell: the environment of every process of the Dask user, one block per process."""
    return (
        'for p in $(pgrep -u dask); do echo "== $p $(cat /proc/$p/comm)"; '
        "tr '\\0' '\\n' < /proc/$p/environ; done"
    )


async def _status(cluster: Any, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The controller's first published status that satisfies ``predicate``."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        status = await cluster.autonomy()
        if status is not None and predicate(status):
            found.update(status)
            return True
        return False

    await until(check, timeout=120)
    return found


async def _controller_log(target: SSHTarget) -> str:
    """The controller's journal (the Dask user reads the journal; nothing secret is in it)."""
    done = await _run(target, f"journalctl -u {SERVICE} --no-pager -n 80")
    return str(done.stdout)


async def test_autonomous_cluster_on_debian_servers(  # type: ignore[no-untyped-def]
    debian_cloud: Emulator, no_containers_left
) -> None:
    import hcloud

    prefix = "debctl"
    token = debian_cloud.token
    with dask.config.set({"scherbelberg.controller.interval": 0.5}):
        # Snapshots have their own tests (test_snapshots.py): every node is set up in full.
        cluster = await HetznerCluster(
            workers=1,
            prefix=prefix,
            image="debian-12",
            snapshot=False,
            autonomous=True,
            idle_timeout="off",
            asynchronous=True,
        )
    scheduler = cluster.scheduler_node
    assert scheduler is not None and scheduler.ssh.username == "dask"
    try:
        servers = {
            s["labels"]["scherbelberg/node"]: s for s in resources(debian_cloud, prefix)["servers"]
        }
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(1, timeout=120)
            assert await client.submit(lambda v: v + 1, 1) == 2
        # The worker's node as another process on this machine finds it.
        provisioner = await HetznerCluster.attach_context(prefix)
        worker = provisioner.nodes["worker000"]
        await provisioner.close()

        # -- the token: only the controller's user reads it ---------------------------
        ctl = await _run(
            scheduler.ssh,
            f"ps -o user:32= -p $(systemctl show -p MainPID --value {SERVICE}); "
            f"systemctl show -p Environment {SERVICE}",
        )
        assert ctl.stdout.split()[0] == CONTROLLER_USER, ctl
        assert token not in ctl.stdout
        for path in (TOKEN_PATH, f"{CONTROLLER_HOME}/controller.json"):
            denied = await _run(scheduler.ssh, f"cat {path}")
            assert denied.exit_status != 0 and "Permission denied" in denied.stderr, denied
        # In no file the Dask user can read (patterns from stdin: not on a command line).
        grep = f"timeout 240 grep -rIlsF -f /dev/stdin {_TOP_LEVEL}"
        readable = await _run(scheduler.ssh, grep, stdin=token)
        assert readable.exit_status in (1, 2) and readable.stdout == "", readable
        control = await _run(scheduler.ssh, grep.replace(_TOP_LEVEL, "/home/dask"), stdin=prefix)
        assert "/home/dask/.ssh/authorized_keys" in control.stdout, control  # it looks
        journal = await _run(
            scheduler.ssh, "journalctl --no-pager -o cat | grep -cF -f /dev/stdin", stdin=token
        )
        assert journal.stdout.strip() == "0", journal
        # In the environment of no Dask process, on the scheduler and on the worker.
        for node in (scheduler, worker):
            environments = (await _run(node.ssh, _dask_environments())).stdout
            assert "HOME=/home/dask" in environments, environments
            assert token not in environments
        # Root's view: on the scheduler, only the root-owned credential file holds it; on
        # the worker, nothing at all (its disk, and a grep as root inside it).
        on_disk = await asyncio.to_thread(
            _files_with, _disk(debian_cloud, servers["scheduler"]["id"]), token.encode()
        )
        assert on_disk == [TOKEN_PATH.lstrip("/")]
        worker_id = servers["worker000"]["id"]
        assert (
            await asyncio.to_thread(_files_with, _disk(debian_cloud, worker_id), token.encode())
            == []
        )
        init = _container_init(containers(debian_cloud.id)[worker_id])
        as_root = await asyncio.to_thread(_grep_as_root_in, init, token)
        assert as_root.stdout == "" and as_root.returncode in (1, 2), as_root

        # -- a reboot of the scheduler node ---------------------------------------------
        # Idle (no client, no work) since some time T; the reboot must not move T.
        before = await _status(cluster, lambda s: s["clients"] == 0 and s["idle_since"] is not None)
        state_file = (
            _disk(debian_cloud, servers["scheduler"]["id"])
            / CONTROLLER_HOME.lstrip("/")
            / "state.json"
        )
        saved = state_file.read_bytes()
        await cluster.detach()  # the laptop goes away

        api = hcloud.Client(token=token, api_endpoint=debian_cloud.endpoint, poll_interval=0.2)
        node_before = containers(debian_cloud.id)[servers["scheduler"]["id"]]
        server = api.servers.get_by_id(servers["scheduler"]["id"])
        await asyncio.to_thread(lambda: server.reboot().wait_until_finished())
        await until(lambda: containers(debian_cloud.id).get(server.id) not in (None, node_before))

        attached = await HetznerCluster.from_existing(prefix, asynchronous=True)
        after = await _status(attached, lambda s: s["started"] > before["started"])
        for key in (
            "generation",
            "driver",
            "adapt",
            "idle_timeout",
            "max_lifetime",
            "idle_since",
            "created",
        ):
            assert after[key] == before[key], key
        assert state_file.read_bytes() == saved
        # The worker's service restarts after its scheduler went away and rejoins as itself.
        async with Client(attached, asynchronous=True) as client:
            await client.wait_for_workers(1, timeout=120)
            info = await client.scheduler.identity()
            assert [w["name"] for w in info["workers"].values()] == ["worker000"]
            assert await client.submit(lambda v: v * 2, 21) == 42

        # -- the idle timeout deletes everything ------------------------------------------
        acknowledged = await attached.set_timeouts(idle_timeout="1s")
        assert acknowledged["idle_timeout"] == 1.0
        await attached.detach()
        await until(lambda: count_left(debian_cloud, prefix) == 0, timeout=180)
    except BaseException:
        if count_left(debian_cloud, prefix):
            print(await _controller_log(scheduler.ssh))
            await nuke_async(prefix)
        raise
    assert_nothing_left(debian_cloud)
    await until(lambda: containers(debian_cloud.id) == {}, timeout=60)
