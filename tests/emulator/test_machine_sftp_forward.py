"""Emulated machines: SFTP confinement and local port forwarding."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest
from machine_helpers import MachineFactory, free_port

from scherbelberg_dask.emulator.machine import LoginUser


async def test_sftp_is_confined_to_home(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    home = node.root / "root"
    (node.root / "secret.txt").write_text("outside")
    async with await node.connect(key) as conn:
        # A symlink made over exec that points out of HOME.
        await conn.run(f"ln -s {node.root} escape; ln -s /etc etc-link", check=True)
        async with conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == "/"
            assert await sftp.getcwd() == "/"
            async with sftp.open("inside.txt", "w") as handle:
                await handle.write("hello")
            assert (home / "inside.txt").read_text() == "hello"
            async with sftp.open("/inside.txt") as handle:
                assert await handle.read() == "hello"
            assert "inside.txt" in await sftp.listdir("/")
            assert await sftp.listdir("..") == await sftp.listdir("/")

            for path in ("../secret.txt", "/../secret.txt", "../../secret.txt"):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.open(path)
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open(str(node.root / "secret.txt"))
            for path in ("escape/secret.txt", "etc-link/hostname"):
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.open(path)
            with pytest.raises(asyncssh.SFTPError):
                await sftp.listdir("escape")
            # Writing through '..' lands inside HOME, never next to it.
            async with sftp.open("../../written.txt", "w") as handle:
                await handle.write("x")
            assert (home / "written.txt").exists()
            assert not (node.root / "written.txt").exists()


async def test_sftp_of_a_non_root_user(machines: MachineFactory) -> None:
    key = machines.key("client")
    node = await machines.create([LoginUser("alice", [key.public_line])])
    async with await node.connect(key, user="alice") as conn, conn.start_sftp_client() as sftp:
        await sftp.mkdir("work")
    assert (node.root / "home" / "alice" / "work").is_dir()


async def _echo_server(ip: str) -> tuple[asyncio.AbstractServer, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    port = free_port(ip)
    server = await asyncio.start_server(echo, ip, port)
    return server, port


async def test_forwarding_only_to_own_addresses(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key(private_ips=1)
    other = await machines.create([LoginUser("root", [key.public_line])])
    targets = [node.public_ip, node.private_ips[0]]
    servers = [await _echo_server(ip) for ip in [*targets, "127.0.0.1", other.public_ip]]
    try:
        async with await node.connect(key) as conn:
            for ip, (_, port) in zip(targets, servers[:2], strict=True):
                reader, writer = await conn.open_connection(ip, port)
                writer.write(b"ping\n")
                assert await asyncio.wait_for(reader.readline(), 10) == b"echo:ping\n"
                writer.close()
            for ip, port in [
                ("127.0.0.1", servers[2][1]),
                ("localhost", servers[2][1]),
                (other.public_ip, servers[3][1]),
            ]:
                with pytest.raises(asyncssh.ChannelOpenError) as info:
                    await conn.open_connection(ip, port)
                assert "own addresses" in info.value.reason
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port(node.public_ip, 0, "127.0.0.1", 1)
    finally:
        for server, _ in servers:
            server.close()
            await server.wait_closed()
