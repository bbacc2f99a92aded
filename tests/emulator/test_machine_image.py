"""A machine from another image authenticates but never runs anything on this host."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncssh
import pytest
from machine_helpers import MachineFactory, openssh_base

IMAGE = "ubuntu-24.04"
MESSAGE = (
    f"scherbelberg-emulator: this server runs image '{IMAGE}'; the local emulator only "
    "executes commands on image 'scherbelberg-emulator' and on Debian images "
    "(debian-12, debian-13)"
)


async def test_exec_shell_and_sftp_are_refused(machines: MachineFactory, tmp_path: Path) -> None:
    node, key = await machines.create_with_key(executes=False, image_name=IMAGE)
    marker = tmp_path / "must-not-exist"
    async with await node.connect(key) as conn:
        result = await conn.run(f"touch {marker}")
        assert result.exit_status == 126
        assert result.stderr.strip() == MESSAGE
        assert result.stdout == ""

        result = await conn.run(f"touch {marker}", term_type="xterm")
        assert result.exit_status == 126
        assert MESSAGE in result.stderr

        process = await conn.create_process(term_type="xterm")  # interactive shell
        result = await asyncio.wait_for(process.wait(), 10)
        assert result.exit_status == 126
        assert MESSAGE in result.stderr

        result = await conn.run(subsystem="sftp")
        assert result.exit_status == 126
        assert MESSAGE in result.stderr
        with pytest.raises((asyncssh.Error, OSError)):
            async with conn.start_sftp_client():
                pass

        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await conn.open_connection(node.public_ip, node.port)
        assert IMAGE in info.value.reason
    assert not marker.exists()
    assert node.tagged_pids() == []


@pytest.mark.openssh
@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
async def test_openssh_sees_the_reason(machines: MachineFactory, tmp_path: Path) -> None:
    node, key = await machines.create_with_key(executes=False, image_name=IMAGE)
    known = node.write_known_hosts(tmp_path / "known_hosts")
    base = openssh_base(node, key, known)
    proc = await asyncio.create_subprocess_exec(
        "ssh",
        *base,
        "-p",
        str(node.port),
        f"root@{node.public_ip}",
        "echo ran",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 126
    assert out == b""
    assert MESSAGE in err.decode()

    batch = tmp_path / "batch"
    batch.write_text("ls\n")
    proc = await asyncio.create_subprocess_exec(
        "sftp",
        *base,
        "-P",
        str(node.port),
        "-b",
        str(batch),
        f"root@{node.public_ip}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode != 0
    assert MESSAGE in err.decode()
