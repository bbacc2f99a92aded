"""Emulated machines driven by the real OpenSSH client (ssh, scp, sftp)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pexpect
import pytest
from machine_helpers import Key, MachineFactory, TestMachine, openssh_base

pytestmark = [
    pytest.mark.openssh,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client"),
]


async def _run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _ssh(node: TestMachine, key: Key, known: Path, *extra: str) -> list[str]:
    return ["ssh", *openssh_base(node, key, known, "-p", str(node.port)), *extra]


async def _node(machines: MachineFactory, tmp_path: Path) -> tuple[TestMachine, Key, Path]:
    node, key = await machines.create_with_key()
    known = node.write_known_hosts(tmp_path / "known_hosts")
    return node, key, known


SCRIPT = "read x; echo got-$x; echo e >&2; exit 4"


async def test_ssh_command_status_and_streams(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, known = await _node(machines, tmp_path)
    rc, out, err = await _run(
        *_ssh(
            node, key, known, f"root@{node.public_ip}", "read x; echo got-$x; echo e >&2; exit 4"
        ),
        stdin=b"line\n",
    )
    assert (rc, out) == (4, "got-line\n")
    assert "e\n" in err
    # No command and no terminal: a plain shell reads its commands from stdin.
    rc, out, _ = await _run(
        *_ssh(node, key, known, "-T", f"root@{node.public_ip}"), stdin=b"echo via-shell; exit 6\n"
    )
    assert (rc, out) == (6, "via-shell\n")


async def test_ssh_with_forced_tty(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, known = await _node(machines, tmp_path)
    rc, out, _ = await _run(
        *_ssh(node, key, known, "-tt", f"root@{node.public_ip}", "tty; echo term=$TERM; exit 5")
    )
    assert rc == 5
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1].startswith("term=") and lines[1] != "term="


async def test_swapped_host_key_is_refused(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, _ = await _node(machines, tmp_path)
    impostor = machines.key("impostor")
    known = tmp_path / "known_other"
    known.write_text(f"[{node.public_ip}]:{node.port} {impostor.public_line}\n")
    rc, out, err = await _run(*_ssh(node, key, known, f"root@{node.public_ip}", "echo ran"))
    assert rc == 255
    assert "ran" not in out
    assert "host key" in err.lower() or "identification has changed" in err.lower()


def _interactive(argv: list[str], prompt: str, node: TestMachine) -> int:
    """Drive an interactive ssh session (blocking: runs in a thread)."""
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=20, dimensions=(30, 100))
    try:
        child.expect_exact(prompt)
        child.sendline("echo sum=$((40+2))")
        child.expect_exact("sum=42")
        child.expect_exact(prompt)
        child.sendline("stty size")
        child.expect_exact("30 100")
        child.expect_exact(prompt)
        child.setwinsize(40, 120)
        child.sendline("stty size")
        child.expect_exact("40 120")
        child.expect_exact(prompt)

        child.sendline("echo go-$((1+1)); sleep 100")
        child.expect_exact("go-2")
        deadline = time.monotonic() + 10
        while not _sleeping(node):
            assert time.monotonic() < deadline, "sleep 100 never started"
            time.sleep(0.02)
        started = time.monotonic()
        child.sendintr()
        child.expect_exact(prompt, timeout=10)
        assert time.monotonic() - started < 10
        assert not _sleeping(node)
        child.sendline("echo status=$?")
        child.expect_exact("status=130")
        child.expect_exact(prompt)
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus is not None
    return child.exitstatus


def _sleeping(node: TestMachine) -> bool:
    for pid in node.tagged_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] == [b"sleep", b"100"]:
            return True
    return False


async def test_interactive_shell(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, known = await _node(machines, tmp_path)
    argv = _ssh(node, key, known, f"root@{node.public_ip}")
    prompt = f"root@{node.spec.name}:~# "
    status = await asyncio.to_thread(_interactive, argv, prompt, node)
    assert status == 3


async def test_scp_upload_download_confined(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, known = await _node(machines, tmp_path)
    scp = ["scp", *openssh_base(node, key, known, "-P", str(node.port))]
    source = tmp_path / "source.bin"
    payload = bytes(range(256)) * 400
    source.write_bytes(payload)
    rc, _, err = await _run(*scp, str(source), f"root@{node.public_ip}:uploaded.bin")
    assert rc == 0, err
    assert (node.root / "root" / "uploaded.bin").read_bytes() == payload

    back = tmp_path / "back.bin"
    rc, _, err = await _run(*scp, f"root@{node.public_ip}:/uploaded.bin", str(back))
    assert rc == 0, err
    assert back.read_bytes() == payload

    secret = node.root / "outside.txt"
    secret.write_text("not for sftp")
    for remote in ("../outside.txt", "/../outside.txt", str(secret)):
        target = tmp_path / "stolen.txt"
        rc, _, _ = await _run(*scp, f"root@{node.public_ip}:{remote}", str(target))
        assert rc != 0
        assert not target.exists()


async def test_sftp_batch(machines: MachineFactory, tmp_path: Path) -> None:
    node, key, known = await _node(machines, tmp_path)
    batch = tmp_path / "batch"
    batch.write_text("mkdir data\ncd data\npwd\nls /\n")
    sftp = ["sftp", *openssh_base(node, key, known, "-P", str(node.port)), "-b", str(batch)]
    rc, out, err = await _run(*sftp, f"root@{node.public_ip}")
    assert rc == 0, err
    assert "Remote working directory: /data" in out
    assert (node.root / "root" / "data").is_dir()
