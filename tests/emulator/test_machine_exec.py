"""Emulated machines: authentication and command execution through an asyncssh client."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncssh
import pytest
from machine_helpers import MachineFactory, fresh_ip, wait_for

from scherbelberg_dask.emulator.machine import LoginUser


async def test_exec_status_streams_stdin_and_environment(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        result = await conn.run("echo out-$((6*7)); echo err-text >&2; exit 7")
        assert result.exit_status == 7
        assert result.stdout == "out-42\n"
        assert result.stderr == "err-text\n"

        result = await conn.run("tr a-z A-Z; echo done", input="hello\nworld\n")
        assert result.stdout == "HELLO\nWORLD\ndone\n"

        result = await conn.run(
            'printf "%s|" "$HOME" "$PWD" "$USER" "$LOGNAME" "$SHELL" "$LANG" '
            '"$SCHERBELBERG_EMULATOR_NODE" "$SCHERBELBERG_NODE_NAME" "${PATH%%:*}"'
        )
        home = node.root / "root"
        assert result.stdout.split("|")[:-1] == [
            str(home),
            str(home),
            "root",
            "root",
            "/bin/bash",
            "C.UTF-8",
            node.spec.tag,
            node.spec.name,
            str(node.root / "bin"),
        ]


async def test_bulk_data_both_ways(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    payload = os.urandom(3 * 2**20)
    async with await node.connect(key) as conn:
        result = await conn.run("cat", input=payload, encoding=None)
        assert result.exit_status == 0
        assert result.stdout == payload
        result = await conn.run(
            "head -c 2000000 /dev/zero; head -c 1000000 /dev/zero >&2", encoding=None
        )
        assert (len(result.stdout), len(result.stderr)) == (2000000, 1000000)


async def test_python_wrapper_is_the_emulator_interpreter(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    code = "import sys; print(sys.prefix); print(sys.base_prefix)"
    for name in ("python3", "python"):
        result = await node.run(key, f"{name} -c '{code}'", check=True)
        assert result.stdout.splitlines() == [sys.prefix, sys.base_prefix]
    assert not (node.root / "bin" / "python3").is_symlink()


async def test_client_signal_reaches_the_command(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        process = await conn.create_process("echo ready; exec sleep 100")
        assert await asyncio.wait_for(process.stdout.readline(), 10) == "ready\n"
        process.send_signal("TERM")
        result = await asyncio.wait_for(process.wait(), 10)
        assert result.exit_signal is not None
        assert result.exit_signal[0] == "TERM"


async def test_signal_after_stdin_eof(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        process = await conn.create_process("trap 'echo got-int; exit 5' INT; echo ready; cat")
        assert await asyncio.wait_for(process.stdout.readline(), 10) == "ready\n"
        process.stdin.write_eof()
        process.send_signal("INT")
        result = await asyncio.wait_for(process.wait(), 10)
        assert result.exit_status == 5
        assert "got-int" in result.stdout


async def test_client_env_only_lang_and_lc(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        result = await conn.run(
            'echo "$LANG|$LC_TIME|${EVIL-unset}"',
            env={"LANG": "de_DE.UTF-8", "LC_TIME": "C", "EVIL": "x"},
        )
        assert result.stdout == "de_DE.UTF-8|C|unset\n"


async def test_wrong_key_and_passwords_are_refused(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    other = machines.key("other")
    with pytest.raises(asyncssh.PermissionDenied):
        await node.connect(other)
    with pytest.raises(asyncssh.PermissionDenied):
        await node.connect(key, user="root", client_keys=None, password="secret")


async def test_non_root_user_and_root_absent(machines: MachineFactory) -> None:
    key = machines.key("client")
    node = await machines.create([LoginUser("alice", [key.public_line])])
    result = await node.run(key, 'echo "$USER $HOME"; pwd', user="alice")
    home = node.root / "home" / "alice"
    assert result.stdout == f"alice {home}\n{home}\n"
    assert home.is_dir()
    with pytest.raises(asyncssh.PermissionDenied):
        await node.connect(key, user="root")
    with pytest.raises(asyncssh.PermissionDenied):
        await node.connect(key, user="bob")


async def test_private_addresses_and_address_changes(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key(private_ips=1)
    private = node.private_ips[0]
    async with await node.connect(key, ip=private) as conn:
        assert (await conn.run("echo via-private")).stdout == "via-private\n"

    extra = fresh_ip()
    await node.machine.add_address(extra)
    async with await node.connect(key, ip=extra) as conn:
        assert (await conn.run("echo via-extra")).stdout == "via-extra\n"
        result = await conn.run("hostname; hostname -I; hostname -i")
        public, *others = [node.public_ip, private, extra]
        assert result.stdout.splitlines() == [
            node.spec.name,
            " ".join([public, *sorted(others)]),
            public,
        ]
        await node.machine.remove_address(extra)
        await wait_for(lambda: conn.is_closed(), what="connection to removed address dropped")
    with pytest.raises(OSError):
        await node.connect(key, ip=extra)


async def test_boot_fails_when_an_address_is_taken(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key(boot=False)
    ip = fresh_ip()
    server = await asyncio.start_server(lambda r, w: None, ip, node.port)
    try:
        with pytest.raises(OSError):
            await node.machine.boot(node.public_ip, [ip])
        assert not node.machine.running
    finally:
        server.close()
        await server.wait_closed()
    await node.machine.boot(node.public_ip, [ip])
    assert node.machine.running
    assert (await node.run(key, "echo up")).stdout == "up\n"


async def test_refuse_ssh_drops_new_connections_only(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        node.machine.refuse_ssh(1.0)
        with pytest.raises((OSError, asyncssh.Error)):
            await node.connect(key)
        assert (await conn.run("echo still-here")).stdout == "still-here\n"

    async def accepts() -> bool:
        try:
            async with await node.connect(key) as fresh:
                return (await fresh.run("true")).exit_status == 0
        except (OSError, asyncssh.Error):
            return False

    await wait_for(accepts, timeout=10, what="SSH accepting again after refuse_ssh")
