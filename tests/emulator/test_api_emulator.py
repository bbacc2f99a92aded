"""The Emulator object, cloud-init on real SSH logins, cleanup, the CLI and the fixtures."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import dask.config
import hcloud
import pytest
import requests
import yaml
from conftest import EmulatorFactory, OpenAPIChecker, make_client, server_state, wait_until
from hcloud.images import Image
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator
from scherbelberg_dask.emulator.machine.processes import find_pids, prefix_match
from scherbelberg_dask.emulator.pytest_plugin import free_port

DAEMON = "setsid sh -c 'sleep 1000 </dev/null >/dev/null 2>&1 &'"


def test_environment_bundle(emulator: Emulator) -> None:
    env = emulator.env()
    assert env == {
        "HCLOUD_ENDPOINT": emulator.endpoint,
        "HCLOUD_TOKEN": emulator.token,
        "DASK_SCHERBELBERG__IMAGE": EMULATOR_IMAGE_NAME,
        "DASK_SCHERBELBERG__SSH_PORT": str(emulator.ssh_port),
        "DASK_SCHERBELBERG__NETWORK__IP_RANGE": emulator.network_range,
    }
    # Each emulator gets its own /16 of 127.128.0.0/9, so emulators never share addresses.
    network = ipaddress.IPv4Network(emulator.network_range)
    assert network.prefixlen == 16
    assert network.subnet_of(ipaddress.IPv4Network("127.128.0.0/9"))
    assert emulator.endpoint == f"http://127.0.0.1:{emulator.port}/v1"
    # Dask reads the variables into the same values as dask_config().
    from_env = dask.config.collect_env({k: v for k, v in env.items() if k.startswith("DASK_")})
    with dask.config.set(emulator.dask_config()):
        for key in ("image", "ssh-port", "network.ip-range"):
            assert dask.config.get(f"scherbelberg.{key}") == dask.config.get(
                f"scherbelberg.{key}", config=from_env
            )
        assert dask.config.get("scherbelberg.api.endpoint") == emulator.endpoint
    assert Emulator().token != emulator.token


def test_invalid_options() -> None:
    with pytest.raises(ValueError):
        Emulator(profile="sluggish")
    with pytest.raises(ValueError):
        Emulator(public_pool="127.0.0.0/12")
    with pytest.raises(ValueError):
        Emulator(public_pool="10.0.0.0/8")
    with pytest.raises(RuntimeError):
        _ = Emulator().endpoint


def test_async_context_manager(openapi: OpenAPIChecker) -> None:
    violations: list[str] = []

    async def main() -> Path:
        emulator = Emulator(ssh_port=free_port())
        emulator.add_observer(lambda record: violations.extend(openapi.problems(record)))
        async with emulator:
            directory = emulator.directory
            assert directory is not None and directory.is_dir()
            headers = {"Authorization": f"Bearer {emulator.token}"}
            async with (
                aiohttp.ClientSession(headers=headers) as session,
                session.get(emulator.endpoint + "/locations") as answer,
            ):
                assert answer.status == 200
                assert len((await answer.json())["locations"]) == 6
            assert emulator.snapshot()["servers"] == []
        return directory

    directory = asyncio.run(main())
    assert not directory.exists()
    assert violations == []


def test_two_emulators_do_not_share_addresses(emulator_factory: EmulatorFactory) -> None:
    # Same seed, same SSH port: both start at the same pool address; the second one
    # skips the address the first one's machine listens on.
    port = free_port()
    first = emulator_factory(seed=5, ssh_port=port)
    second = emulator_factory(seed=5, ssh_port=port)
    ips = []
    for emulator in (first, second):
        client = make_client(emulator)
        response = client.servers.create(
            name="s", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
        )
        state = wait_until(
            lambda e=emulator, r=response: (s := server_state(e, r.server.id)) and s["ssh_up"] and s
        )
        ips.append(state["public_ipv4"])
    assert ips[0] != ips[1]


class Keys:
    """A client key pair and a host key pair, as OpenSSH text."""

    def __init__(self) -> None:
        self.client = asyncssh.generate_private_key("ssh-ed25519")
        self.user = asyncssh.generate_private_key("ssh-ed25519")
        self.host = asyncssh.generate_private_key("ssh-ed25519")

    @staticmethod
    def public(key: asyncssh.SSHKey) -> str:
        return key.export_public_key().decode().strip()

    def user_data(self, disable_root: bool = False) -> str:
        config = {
            "ssh_keys": {
                "ed25519_private": self.host.export_private_key().decode(),
                "ed25519_public": self.public(self.host),
            },
            "users": ["default", {"name": "dask", "ssh_authorized_keys": [self.public(self.user)]}],
            "disable_root": disable_root,
            "runcmd": ["echo ignored"],
        }
        return "#cloud-config\n" + yaml.safe_dump(config)


async def _ssh(
    ip: str, port: int, host: asyncssh.SSHKey, user: str, key: asyncssh.SSHKey, command: str
) -> str:
    known = asyncssh.import_known_hosts(f"[{ip}]:{port} {Keys.public(host)}\n")
    async with asyncssh.connect(
        ip, port, username=user, client_keys=[key], known_hosts=known, agent_path=None
    ) as conn:
        result = await conn.run(command, check=True, timeout=30)
        return str(result.stdout)


def _ssh_server(emulator: Emulator, client: hcloud.Client, keys: Keys, **kwargs: Any) -> str:
    ssh_key = client.ssh_keys.create(name=f"k{id(kwargs)}", public_key=keys.public(keys.client))
    response = client.servers.create(
        name=f"node{id(kwargs)}",
        server_type=ServerType(name="cx23"),
        image=Image(name=EMULATOR_IMAGE_NAME),
        ssh_keys=[ssh_key],
        user_data=keys.user_data(**kwargs),
    )
    state = wait_until(
        lambda: (s := server_state(emulator, response.server.id)) and s["ssh_up"] and s
    )
    return str(state["public_ipv4"])


def test_cloud_init_host_key_and_users(emulator: Emulator, client: hcloud.Client) -> None:
    keys = Keys()
    ip = _ssh_server(emulator, client, keys)
    port = emulator.ssh_port
    # The pinned host key from user_data is the one the server presents.
    assert (
        asyncio.run(_ssh(ip, port, keys.host, "root", keys.client, "echo root-ok")) == "root-ok\n"
    )
    assert asyncio.run(_ssh(ip, port, keys.host, "dask", keys.user, "echo user-ok")) == "user-ok\n"
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_ssh(ip, port, keys.host, "root", keys.user, "true"))


def test_cloud_init_disable_root(emulator: Emulator, client: hcloud.Client) -> None:
    keys = Keys()
    ip = _ssh_server(emulator, client, keys, disable_root=True)
    port = emulator.ssh_port
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_ssh(ip, port, keys.host, "root", keys.client, "true"))
    assert asyncio.run(_ssh(ip, port, keys.host, "dask", keys.user, "echo ok")) == "ok\n"


def test_stop_ends_every_process(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    client = make_client(emulator)
    keys = Keys()
    ip = _ssh_server(emulator, client, keys)
    asyncio.run(_ssh(ip, emulator.ssh_port, keys.host, "root", keys.client, DAEMON))
    match = prefix_match(f"{emulator.id}/")
    wait_until(lambda: find_pids(match), what="daemon running")
    directory = emulator.directory
    assert directory is not None
    emulator.stop_sync()
    assert find_pids(match) == []
    assert not directory.exists()


def _read_exports(process: subprocess.Popen[str], timeout: float = 60.0) -> list[str]:
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line == "\n":
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no blank line after the exports; got {lines}"
    return lines


def test_cli_prints_exports_and_stops_on_sigterm(tmp_path: Path) -> None:
    stderr = (tmp_path / "stderr.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "scherbelberg_dask", "emulator", "--ssh-port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        lines = _read_exports(process)
        assert lines[-1] == ""
        exports = lines[:-1]
        assert all(line.startswith("export ") for line in exports)
        env = dict(shlex.split(line[len("export ") :])[0].split("=", 1) for line in exports)
        assert set(env) == {
            "HCLOUD_ENDPOINT",
            "HCLOUD_TOKEN",
            "DASK_SCHERBELBERG__IMAGE",
            "DASK_SCHERBELBERG__SSH_PORT",
            "DASK_SCHERBELBERG__NETWORK__IP_RANGE",
        }
        client = hcloud.Client(
            env["HCLOUD_TOKEN"], api_endpoint=env["HCLOUD_ENDPOINT"], poll_interval=0.01
        )
        keys = Keys()
        key = client.ssh_keys.create(name="k", public_key=keys.public(keys.client))
        response = client.servers.create(
            name="cli",
            server_type=ServerType(name="cx23"),
            image=Image(name=env["DASK_SCHERBELBERG__IMAGE"]),
            ssh_keys=[key],
            user_data=keys.user_data(),
        )
        for action in [response.action, *response.next_actions]:
            action.wait_until_finished()
        ip = client.servers.get_by_id(response.server.id).public_net.ipv4.ip
        port = int(env["DASK_SCHERBELBERG__SSH_PORT"])
        wait_until(lambda: _try_ssh(ip, port, keys, DAEMON), what="daemon started over SSH")
        state = requests.get(
            env["HCLOUD_ENDPOINT"].removesuffix("/v1") + "/_emulator/state",
            headers={"Authorization": f"Bearer {env['HCLOUD_TOKEN']}"},
            timeout=30,
        ).json()
        match = prefix_match(f"{state['emulator_id']}/")
        wait_until(lambda: find_pids(match), what="daemon running")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert find_pids(match) == []
        assert not Path(state["directory"]).exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()


def _try_ssh(ip: str, port: int, keys: Keys, command: str) -> bool:
    try:
        asyncio.run(_ssh(ip, port, keys.host, "root", keys.client, command))
    except (OSError, asyncssh.Error):
        return False
    return True


def test_pytest_fixtures(
    hetzner_emulator: Emulator, hetzner_emulator_env: Emulator, openapi: OpenAPIChecker
) -> None:
    assert hetzner_emulator is hetzner_emulator_env
    violations: list[str] = []
    hetzner_emulator.add_observer(lambda record: violations.extend(openapi.problems(record)))
    assert hetzner_emulator.running
    for name, value in hetzner_emulator.env().items():
        assert os.environ[name] == value
    assert dask.config.get("scherbelberg.image") == EMULATOR_IMAGE_NAME
    assert dask.config.get("scherbelberg.ssh-port") == hetzner_emulator.ssh_port
    client = make_client(hetzner_emulator)
    assert client.locations.get_by_name("fsn1") is not None
    assert violations == []
