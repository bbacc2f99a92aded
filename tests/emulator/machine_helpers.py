"""Shared helpers for the emulated-machine tests (plain functions and classes, no fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

from scherbelberg_dask.emulator.machine import (
    EMULATOR_IMAGE_NAME,
    LoginUser,
    Machine,
    MachineSpec,
)
from scherbelberg_dask.emulator.machine.processes import NODE_TAG_VAR, find_pids, node_match

_ADDRESSES = itertools.count(random.randrange(250 * 254))


def bindable(ip: str, port: int = 0) -> bool:
    """Whether ``ip:port`` can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def fresh_ip() -> str:
    """A loopback address no other test of this process uses (127.77.x.y)."""
    while True:
        subnet, host = divmod(next(_ADDRESSES) % (250 * 254), 254)
        ip = f"127.77.{subnet + 1}.{host + 1}"
        if bindable(ip):
            return ip


def free_port(ip: str) -> int:
    """A TCP port currently free on ``ip``."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


class Key:
    """An ed25519 key pair, also written as an OpenSSH private key file (mode 0600)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.private = asyncssh.generate_private_key("ssh-ed25519")
        self.public_line = self.private.export_public_key().decode().strip()
        self.private_text = self.private.export_private_key("openssh").decode()
        self.path = directory / name
        self.path.write_text(self.private_text)
        self.path.chmod(0o600)


class TestMachine:
    """A booted :class:`Machine` plus what a client needs to reach it."""

    __test__ = False

    def __init__(
        self, machine: Machine, host_key: Key | None, public_ip: str, private_ips: list[str]
    ):
        self.machine = machine
        self.host_key = host_key
        self.public_ip = public_ip
        self.private_ips = private_ips

    @property
    def port(self) -> int:
        return self.machine.spec.ssh_port

    @property
    def spec(self) -> MachineSpec:
        return self.machine.spec

    @property
    def root(self) -> Path:
        return Path(self.machine.spec.root_dir)

    def host_public_line(self) -> str:
        """The machine's host public key (given or generated)."""
        if self.host_key is not None:
            return self.host_key.public_line
        key = asyncssh.read_private_key(str(self.root / "etc" / "ssh" / "ssh_host_ed25519_key"))
        return key.export_public_key().decode().strip()

    def known_hosts_line(self, ip: str | None = None) -> str:
        return f"[{ip or self.public_ip}]:{self.port} {self.host_public_line()}"

    def write_known_hosts(self, path: Path, ip: str | None = None) -> Path:
        path.write_text(self.known_hosts_line(ip) + "\n")
        return path

    async def connect(
        self, key: Key, user: str = "root", ip: str | None = None, **kwargs: Any
    ) -> asyncssh.SSHClientConnection:
        """asyncssh client connection with the host key pinned."""
        known = asyncssh.import_known_hosts(self.known_hosts_line(ip) + "\n")
        options: dict[str, Any] = {
            "username": user,
            "client_keys": [key.private],
            "known_hosts": known,
            "agent_path": None,
            "config": None,
            "connect_timeout": 10,
        }
        options.update(kwargs)
        return await asyncssh.connect(ip or self.public_ip, self.port, **options)

    async def run(self, key: Key, command: str, user: str = "root", **kwargs: Any) -> Any:
        """Run one command over a fresh connection; return asyncssh's result."""
        async with await self.connect(key, user) as conn:
            return await asyncio.wait_for(conn.run(command, **kwargs), 60)

    def tagged_pids(self) -> list[int]:
        """Live processes carrying this machine's tag."""
        return find_pids(node_match(self.spec.tag))


class MachineFactory:
    """Creates machines in a temporary directory and destroys them at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.emulator_id = uuid.uuid4().hex[:12]
        self._machines: list[Machine] = []
        self._ids = itertools.count(1)
        self.keys_dir = tmp_path / "keys"
        self.keys_dir.mkdir(exist_ok=True)
        self.events: list[tuple[int, str]] = []

    def key(self, name: str) -> Key:
        return Key(self.keys_dir, name)

    async def create_with_key(self, *users: str, **options: Any) -> tuple[TestMachine, Key]:
        """A machine whose ``users`` (default: root) log in with one new key.

        ``options`` are those of :meth:`create`.
        """
        key = self.key("client")
        logins = [LoginUser(user, [key.public_line]) for user in users or ("root",)]
        return await self.create(logins, **options), key

    async def create(
        self,
        users: list[LoginUser],
        *,
        executes: bool = True,
        image_name: str = EMULATOR_IMAGE_NAME,
        pinned_host_key: bool = True,
        private_ips: int = 0,
        boot: bool = True,
    ) -> TestMachine:
        server_id = next(self._ids)
        host_key = self.key(f"host{server_id}") if pinned_host_key else None
        public_ip = fresh_ip()
        privates = [fresh_ip() for _ in range(private_ips)]
        spec = MachineSpec(
            server_id=server_id,
            name=f"node{server_id}",
            image_name=image_name,
            executes=executes,
            root_dir=self.tmp_path / f"m{server_id}",
            ssh_port=free_port(public_ip),
            host_keys=[host_key.private_text] if host_key else [],
            users=users,
            tag=f"{self.emulator_id}/{server_id}",
        )
        machine = Machine(spec, on_event=lambda event: self.events.append((server_id, event)))
        self._machines.append(machine)
        if boot:
            await machine.boot(public_ip, privates)
        return TestMachine(machine, host_key, public_ip, privates)

    async def close(self) -> None:
        for machine in self._machines:
            with contextlib.suppress(Exception):
                await machine.destroy()
        leftover = find_pids(lambda env: env.get(NODE_TAG_VAR, "").startswith(self.emulator_id))
        assert not leftover, f"tagged processes survived: {leftover}"


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def openssh_base(machine: TestMachine, key: Key, known_hosts: Path, *extra: str) -> list[str]:
    """argv prefix of the real OpenSSH client, pinned and isolated from user config."""
    return [
        "-F",
        "/dev/null",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-i",
        str(key.path),
        *extra,
    ]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
