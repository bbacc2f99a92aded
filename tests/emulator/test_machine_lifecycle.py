"""Emulated machines: halt, boot, shutdown, destroy and the process sweep."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from machine_helpers import MachineFactory, TestMachine, pid_alive, wait_for

from scherbelberg_dask.emulator.machine import MachineEvent, kill_tagged


def _pids_running(node: TestMachine, *argv: str) -> list[int]:
    wanted = [arg.encode() for arg in argv]
    found = []
    for pid in node.tagged_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if cmdline == wanted:
            found.append(pid)
    return found


def _port_open(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((ip, port)) == 0


async def test_halt_kills_double_forked_daemon_and_boot_restores(
    machines: MachineFactory,
) -> None:
    node, key = await machines.create_with_key(private_ips=1)
    await node.run(
        key,
        "echo kept > file.txt; setsid sh -c 'sleep 1000 </dev/null >/dev/null 2>&1 &'",
        check=True,
    )
    await wait_for(lambda: bool(_pids_running(node, "sleep", "1000")), what="daemon started")
    (daemon,) = _pids_running(node, "sleep", "1000")
    assert pid_alive(daemon)
    assert _port_open(node.public_ip, node.port)

    async with await node.connect(key) as conn:
        process = await conn.create_process("sleep 500")
        await wait_for(lambda: bool(_pids_running(node, "sleep", "500")), what="session command")
        await node.machine.halt()
        assert not node.machine.running
        await wait_for(lambda: conn.is_closed(), what="client connection dropped")
        result = await asyncio.wait_for(process.wait(), 10)
        assert result.exit_status is None  # no exit status: the connection just dropped

    assert node.tagged_pids() == []
    assert not pid_alive(daemon)
    for ip in (node.public_ip, *node.private_ips):
        assert not _port_open(ip, node.port)
    await node.machine.halt()  # idempotent

    await node.machine.boot(node.public_ip, node.private_ips)
    assert node.machine.running
    result = await node.run(key, "cat file.txt")
    assert result.stdout == "kept\n"


async def test_generated_host_key_survives_reboot(machines: MachineFactory, tmp_path: Path) -> None:
    node, key = await machines.create_with_key(pinned_host_key=False)
    before = node.host_public_line()
    assert (await node.run(key, "echo one")).stdout == "one\n"
    await node.machine.halt()
    await node.machine.boot(node.public_ip, [])
    assert node.host_public_line() == before
    assert (await node.run(key, "echo two")).stdout == "two\n"


async def test_shutdown_terminates_gracefully_and_reports(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    await node.run(
        key,
        "servicectl enable --now graceful -- sh -c "
        "'trap \"echo got-term > term.txt; exit 0\" TERM; while :; do sleep 0.05; done'",
        check=True,
    )
    await wait_for(lambda: bool(node.tagged_pids()), what="service running")
    await node.machine.shutdown()
    assert not node.machine.running
    assert (node.root / "root" / "term.txt").read_text() == "got-term\n"
    assert machines.events == [(node.spec.server_id, MachineEvent.SHUTDOWN_COMPLETE)]
    assert node.tagged_pids() == []
    await node.machine.shutdown()  # already off: nothing happens, nothing reported
    assert len(machines.events) == 1


async def test_destroy_removes_everything(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    await node.run(key, "nohup sleep 999 >/dev/null 2>&1 & chmod 000 .", check=True)
    assert node.root.exists()
    await node.machine.destroy()
    assert not node.machine.running
    assert not node.root.exists()
    assert node.tagged_pids() == []
    assert not _port_open(node.public_ip, node.port)
    await node.machine.destroy()  # idempotent


async def test_kill_tagged_sweeps_every_machine_of_an_emulator(machines: MachineFactory) -> None:
    nodes = [await machines.create_with_key() for _ in range(2)]
    for node, key in nodes:
        await node.run(key, "setsid sleep 777 </dev/null >/dev/null 2>&1 &", check=True)
    for node, _ in nodes:
        await wait_for(lambda node=node: bool(_pids_running(node, "sleep", "777")), what="sleep")
    with pytest.raises(ValueError):
        kill_tagged("")
    assert kill_tagged("no-such-emulator/") == 0
    assert await asyncio.to_thread(kill_tagged, f"{machines.emulator_id}/") >= 2
    for node, _ in nodes:
        assert node.tagged_pids() == []


async def test_hangup_and_halt_end_terminal_sessions(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    # The client vanishing hangs the terminal up: the shell and its job end.
    conn = await node.connect(key)
    shell = await conn.create_process(term_type="xterm", term_size=(80, 24))
    shell.stdin.write("sleep 321\n")
    await wait_for(lambda: bool(_pids_running(node, "sleep", "321")), what="job in the shell")
    conn.abort()
    await wait_for(lambda: node.tagged_pids() == [], what="shell and job gone after hangup")

    # Halt with a terminal session and an SFTP session open.
    async with await node.connect(key) as conn:
        shell = await conn.create_process(term_type="xterm")
        shell.stdin.write("sleep 654\n")
        await wait_for(lambda: bool(_pids_running(node, "sleep", "654")), what="job")
        async with conn.start_sftp_client() as sftp:
            assert await sftp.getcwd() == "/"
            await node.machine.halt()
            await wait_for(lambda: conn.is_closed(), what="connection dropped by halt")
    assert node.tagged_pids() == []
