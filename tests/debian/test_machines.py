"""Debian servers behave like machines: power, reboots, snapshots, and nothing outlives."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scherbelberg_dask.bootstrap.cloudinit import render_cloud_config
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.pytest_plugin import free_port
from scherbelberg_dask.security.known_hosts import set_host_key
from scherbelberg_dask.security.sshkeys import SSHKeyPair
from scherbelberg_dask.ssh import SSHTarget, wait_for_ssh

from .conftest import containers, mounts_below, until


class Servers:
    """Debian servers created through the API, reached with pinned host keys."""

    def __init__(self, emulator: Emulator, tmp: Path) -> None:
        import hcloud

        self.emulator = emulator
        self.api = hcloud.Client(
            token=emulator.token, api_endpoint=emulator.endpoint, poll_interval=0.2
        )
        self.tmp = tmp
        self.key = SSHKeyPair.generate("test")
        self.key_path = tmp / "id"
        self.key_path.write_text(self.key.private_openssh)
        self.key_path.chmod(0o600)
        self.api_key = self.api.ssh_keys.create(name="test", public_key=self.key.public_openssh)

    async def create(self, name: str, image: Any = "debian-12") -> tuple[Any, SSHTarget]:
        from hcloud.images import Image
        from hcloud.server_types import ServerType

        host_key = SSHKeyPair.generate(name)
        user_data = render_cloud_config(host_key=host_key, hostname=name)
        chosen = Image(name=image) if isinstance(image, str) else image

        def create() -> Any:
            answer = self.api.servers.create(
                name=name,
                server_type=ServerType(name="cx23"),
                image=chosen,
                ssh_keys=[self.api_key],
                user_data=user_data,
            )
            answer.action.wait_until_finished()
            return self.api.servers.get_by_id(answer.server.id)

        server = await asyncio.to_thread(create)
        known = self.tmp / f"known_hosts_{name}"
        ip = server.public_net.ipv4.ip
        known.write_text(set_host_key("", [ip], self.emulator.ssh_port, host_key.public_openssh))
        return server, SSHTarget(ip, self.emulator.ssh_port, "root", self.key_path, known, name)

    async def act(self, call: Any) -> None:
        await asyncio.to_thread(lambda: call().wait_until_finished())

    async def status(self, server: Any) -> str:
        return str((await asyncio.to_thread(self.api.servers.get_by_id, server.id)).status)


async def _run(target: SSHTarget, command: str) -> str:
    conn = await wait_for_ssh(target, timeout=120)
    try:
        return (await conn.run(command, timeout=60)).stdout
    finally:
        await conn.close()


async def test_power_reboots_and_snapshots(debian_cloud: Emulator, tmp_path: Path) -> None:
    servers = Servers(debian_cloud, tmp_path)
    server, target = await servers.create("m1")
    assert (await _run(target, "hostname; echo kept > /root/marker")).strip() == "m1"
    first = containers(debian_cloud.id)[server.id]

    async def is_off() -> bool:
        return await servers.status(server) == "off"

    async def container_gone() -> bool:
        return server.id not in containers(debian_cloud.id)

    # Hard power off: the container is gone at once; power on keeps the disk.
    await servers.act(server.power_off)
    assert await is_off() and await container_gone()
    await servers.act(server.power_on)
    assert (await _run(target, "cat /root/marker")).strip() == "kept"

    # ACPI shutdown: systemd powers off cleanly, then the server is off.
    await servers.act(server.shutdown)
    await until(is_off)
    assert await container_gone()
    await servers.act(server.power_on)
    await _run(target, "true")

    # Reboot and reset boot a new container on the same disk.
    for call in (server.reboot, server.reset):
        before = containers(debian_cloud.id)[server.id]
        await servers.act(call)
        assert (await _run(target, "cat /root/marker")).strip() == "kept"
        assert containers(debian_cloud.id)[server.id] not in (before, first)

    # The guest's own reboot comes back; its own poweroff leaves the server off.
    before = containers(debian_cloud.id)[server.id]
    await _run(target, "systemd-run --on-active=1 systemctl reboot")

    async def rebooted() -> bool:
        now = containers(debian_cloud.id).get(server.id)
        return now is not None and now != before

    await until(rebooted)
    assert (await _run(target, "cat /root/marker")).strip() == "kept"
    await _run(target, "systemd-run --on-active=1 systemctl poweroff")
    await until(is_off)
    assert await container_gone()
    await servers.act(server.power_on)
    await _run(target, "true")

    # A snapshot carries the disk to a new server, which gets its own identity.
    def snapshot() -> Any:
        answer = server.create_image(description="m1-snap", type="snapshot")
        answer.action.wait_until_finished()
        return servers.api.images.get_by_id(answer.image.id)

    image = await asyncio.to_thread(snapshot)
    assert image.status == "available" and image.image_size > 0
    clone, clone_target = await servers.create("m2", image=image)
    out = await _run(
        clone_target,
        "hostname; cat /root/marker; cloud-init status --wait >/dev/null; cloud-init status",
    )
    assert out.split() == ["m2", "kept", "status:", "done"]

    for each in (server, clone):
        await servers.act(each.delete)
    assert containers(debian_cloud.id) == {}
    assert debian_cloud.directory is not None
    assert mounts_below(debian_cloud.directory) == []


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_nothing_outlives_kill_9_of_the_emulator(debian_image: Any, tmp_path: Path) -> None:
    import hcloud
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HCLOUD_", "DASK_"))}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scherbelberg_dask", "emulator", "--ssh-port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        exports = {}
        for line in process.stdout:
            if not line.strip():
                break
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = shlex.split(value)[0]
        api = hcloud.Client(
            token=exports["HCLOUD_TOKEN"],
            api_endpoint=exports["HCLOUD_ENDPOINT"],
            poll_interval=0.2,
        )
        answer = api.servers.create(
            name="k1", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
        )
        answer.action.wait_until_finished()
        deadline = time.monotonic() + 120
        nspawn: list[int] = []
        while time.monotonic() < deadline and not nspawn:
            nspawn = [
                pid
                for pid in _children(process.pid)
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"systemd-nspawn")
            ]
            time.sleep(0.1)
        assert nspawn, "no container started"
        cmdline = Path(f"/proc/{nspawn[0]}/cmdline").read_bytes().split(b"\0")
        directory = next(a for a in cmdline if a.startswith(b"--directory=")).split(b"=", 1)[1]
        machine_dir = Path(directory.decode()).parent
        while time.monotonic() < deadline and not _children(nspawn[0]):
            time.sleep(0.1)
        leader = _children(nspawn[0])
        assert leader, "the container has no init"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_alive(nspawn[0]) or _alive(leader[0])):
        time.sleep(0.1)
    assert not _alive(nspawn[0]), "nspawn outlived the emulator"
    assert not _alive(leader[0]), "the container's init outlived the emulator"
    assert mounts_below(machine_dir) == []
    # The dead emulator's files go when the next emulator starts.
    with Emulator(ssh_port=free_port()):
        assert not machine_dir.exists()
