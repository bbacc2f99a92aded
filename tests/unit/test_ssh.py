"""Tests of scherbelberg_dask.ssh against an asyncssh server started inside the test.

The server runs on 127.0.0.1 with a generated host key and one authorized client key.
Exec requests run harmless shell commands (echo, cat, exit, sleep) in a temporary home;
SFTP is chrooted to that home; direct TCP forwarding is allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from scherbelberg_dask.security import SSHKeyPair
from scherbelberg_dask.ssh import (
    HostKeyMismatchError,
    HostKeyNotPinnedError,
    SSHAuthError,
    SSHCommandError,
    SSHConnectionLostError,
    SSHError,
    SSHFileNotFoundError,
    SSHTarget,
    SSHTimeoutError,
    connect,
    openssh_args,
    scp_args,
    scp_remote,
    wait_for_ssh,
)
from scherbelberg_dask.state import StateDir

WAIT = 10.0  # bound for every wait on a condition in these tests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _SFTPServer(asyncssh.SFTPServer):
    """SFTP server that reports exit status 0 at the end, like OpenSSH's sftp-server."""

    def exit(self) -> None:
        self.channel.exit(0)


@dataclasses.dataclass
class SSHTestServer:
    """An asyncssh server for one test; see module docstring."""

    host_key: SSHKeyPair
    authorized: str
    home: Path
    port: int = 0
    connections: list[asyncssh.SSHServerConnection] = dataclasses.field(default_factory=list)
    commands: list[str] = dataclasses.field(default_factory=list)
    command_started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    children: list[asyncio.subprocess.Process] = dataclasses.field(default_factory=list)
    acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> SSHTestServer:
        server = self

        class Handler(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                server.connections.append(conn)

            def connection_requested(
                self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
            ) -> bool:
                return True

        self.acceptor = await asyncssh.create_server(
            Handler,
            "127.0.0.1",
            self.port,
            server_host_keys=[asyncssh.import_private_key(self.host_key.private_openssh)],
            authorized_client_keys=asyncssh.import_authorized_keys(self.authorized),
            process_factory=self._run,
            sftp_factory=lambda chan: _SFTPServer(chan, chroot=os.fsencode(self.home)),
            encoding=None,
            allow_scp=False,
            line_editor=False,
        )
        self.port = self.acceptor.get_port()
        return self

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        self.commands.append(command)
        stdin = await process.stdin.read()  # our clients always send EOF
        child = await asyncio.create_subprocess_shell(
            command,
            cwd=self.home,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.children.append(child)
        self.command_started.set()
        out, err = await child.communicate(stdin)
        process.stdout.write(out)
        process.stderr.write(err)
        status = child.returncode
        assert status is not None
        if status < 0:
            process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
        else:
            process.exit(status)

    async def stop(self) -> None:
        for child in self.children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.wait()
        if self.acceptor is not None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
        for conn in self.connections:
            conn.abort()


@dataclasses.dataclass
class Setup:
    state: StateDir
    client_key: SSHKeyPair
    host_key: SSHKeyPair
    home: Path

    def target(self, port: int, *, name: str = "worker000") -> SSHTarget:
        return SSHTarget(
            host="127.0.0.1",
            port=port,
            username=os.environ.get("USER", "root") or "root",
            client_key_path=self.state.ssh_key_path,
            known_hosts_path=self.state.known_hosts_path,
            name=name,
        )

    def server(self, port: int = 0, host_key: SSHKeyPair | None = None) -> SSHTestServer:
        return SSHTestServer(
            host_key=host_key or self.host_key,
            authorized=self.client_key.public_openssh + "\n",
            home=self.home,
            port=port,
        )

    def pin(self, port: int, key: SSHKeyPair | None = None) -> None:
        self.state.set_known_host("127.0.0.1", port, (key or self.host_key).public_openssh)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    # A space in the path exercises quoting for the OpenSSH client.
    state = StateDir("cluster", base=tmp_path / "state dir")
    client_key = SSHKeyPair.generate("cluster-key")
    state.save_ssh_key(client_key)
    home = tmp_path / "home"
    home.mkdir()
    return Setup(state, client_key, SSHKeyPair.generate("host"), home)


@pytest.fixture
async def server(setup: Setup) -> AsyncIterator[SSHTestServer]:
    srv = await setup.server().start()
    setup.pin(srv.port)
    yield srv
    await srv.stop()


# ------------------------------------------------------------------------------ basics


async def test_run(setup: Setup, server: SSHTestServer) -> None:
    async with await connect(setup.target(server.port), timeout=WAIT) as conn:
        result = await conn.run("echo out; echo err >&2")
        assert (result.exit_status, result.stdout, result.stderr) == (0, "out\n", "err\n")
        assert result.ok
        assert (await conn.run("cat", input="fed via stdin")).stdout == "fed via stdin"
        assert (await conn.run("cat")).stdout == ""  # stdin is closed, cat does not hang
        failed = await conn.run("echo partial; echo broken >&2; exit 3", check=False)
        assert failed.exit_status == 3 and not failed.ok
        with pytest.raises(SSHCommandError) as info:
            await conn.run("echo partial; echo broken >&2; exit 3")
        assert info.value.exit_status == 3
        assert info.value.stdout == "partial\n"
        assert "[worker000]" in str(info.value) and "broken" in str(info.value)
        killed = await conn.run("kill -KILL $$", check=False)
        assert killed.exit_status == -signal.SIGKILL
        assert not conn.closed
    assert conn.closed


async def test_run_timeout(setup: Setup, server: SSHTestServer) -> None:
    async with await connect(setup.target(server.port), timeout=WAIT) as conn:
        started = time.monotonic()
        with pytest.raises(SSHTimeoutError, match=r"did not finish within 0\.5 s"):
            await conn.run("sleep 30", timeout=0.5)
        assert time.monotonic() - started < WAIT
        # The connection stays usable.
        assert (await conn.run("echo still")).stdout == "still\n"


async def test_connection_lost_during_run(setup: Setup, server: SSHTestServer) -> None:
    conn = await connect(setup.target(server.port), timeout=WAIT)
    task = asyncio.create_task(conn.run("sleep 30"))
    await asyncio.wait_for(server.command_started.wait(), WAIT)
    for server_conn in server.connections:
        server_conn.abort()
    with pytest.raises(SSHConnectionLostError, match=r"\[worker000\]"):
        await asyncio.wait_for(task, WAIT)
    await conn.close()


async def test_upload_and_download(setup: Setup, server: SSHTestServer) -> None:
    async with await connect(setup.target(server.port), timeout=WAIT) as conn:
        await conn.upload({"tls/ca.pem": b"CA", "deep/er/node.key": "secret text"})
        await conn.upload({"bin/run.sh": b"#!/bin/sh\necho hi\n"}, mode=0o755)
        assert (setup.home / "tls" / "ca.pem").read_bytes() == b"CA"
        key_file = setup.home / "deep" / "er" / "node.key"
        assert key_file.read_text() == "secret text"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((setup.home / "bin" / "run.sh").stat().st_mode) == 0o755
        assert stat.S_IMODE((setup.home / "deep" / "er").stat().st_mode) == 0o700
        # Overwrite replaces content; no temporary files stay behind.
        await conn.upload({"tls/ca.pem": b"CA2"})
        assert sorted(p.name for p in (setup.home / "tls").iterdir()) == ["ca.pem"]
        assert await conn.download("tls/ca.pem") == b"CA2"
        assert await conn.download("bin/run.sh") == b"#!/bin/sh\necho hi\n"
        with pytest.raises(SSHFileNotFoundError, match="nothing/here"):
            await conn.download("nothing/here")
        with pytest.raises(FileNotFoundError):  # also a plain FileNotFoundError
            await conn.download("nope")


async def test_forward_local(setup: Setup, server: SSHTestServer) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.readline())
        await writer.drain()
        writer.close()

    echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = echo_server.sockets[0].getsockname()[1]
    try:
        async with await connect(setup.target(server.port), timeout=WAIT) as conn:
            forward = await conn.forward_local("127.0.0.1", echo_port)
            assert forward.local_port not in (0, echo_port)
            reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
            writer.write(b"ping\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), WAIT) == b"echo:ping\n"
            writer.close()
            await forward.close()
            await forward.close()  # idempotent
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", forward.local_port)
    finally:
        echo_server.close()
        await echo_server.wait_closed()


# ------------------------------------------------------------------------------ host keys, auth


async def test_host_key_mismatch_is_not_retried(setup: Setup) -> None:
    impostor_key = SSHKeyPair.generate("impostor")
    srv = await setup.server(host_key=impostor_key).start()
    setup.pin(srv.port)  # pins setup.host_key, server presents impostor_key
    messages: list[str] = []
    try:
        started = time.monotonic()
        with pytest.raises(HostKeyMismatchError) as info:
            await wait_for_ssh(setup.target(srv.port), timeout=30, on_progress=messages.append)
        assert time.monotonic() - started < 5
        assert len(srv.connections) == 1  # exactly one attempt
        error = info.value
        assert not isinstance(error, HostKeyNotPinnedError)
        assert error.expected == [setup.host_key.fingerprint_sha256]
        assert error.got == impostor_key.fingerprint_sha256
        text = str(error)
        assert setup.host_key.fingerprint_sha256 in text
        assert impostor_key.fingerprint_sha256 in text
        assert "127.0.0.1" in text and "[worker000]" in text
        assert "PRIVATE" not in text
        assert messages == [
            "[worker000] [" + setup.target(srv.port).username + "] Waiting for SSH ..."
        ]
    finally:
        await srv.stop()


async def test_unpinned_host_is_refused(setup: Setup, server: SSHTestServer) -> None:
    setup.state.remove_known_host("127.0.0.1", server.port)
    with pytest.raises(HostKeyNotPinnedError) as info:
        await connect(setup.target(server.port), timeout=WAIT)
    assert info.value.got == setup.host_key.fingerprint_sha256
    setup.state.delete(StateDir.KNOWN_HOSTS)
    with pytest.raises(HostKeyNotPinnedError, match="does not exist"):
        await connect(setup.target(server.port), timeout=WAIT)


async def test_auth_failure_is_immediate(setup: Setup, server: SSHTestServer) -> None:
    stranger = SSHKeyPair.generate("stranger")
    setup.state.save_ssh_key(stranger)
    started = time.monotonic()
    with pytest.raises(SSHAuthError, match=r"\[worker000\]") as info:
        await wait_for_ssh(setup.target(server.port), timeout=30)
    assert time.monotonic() - started < 5
    assert len(server.connections) == 1
    assert "PRIVATE" not in str(info.value)


# ------------------------------------------------------------------------------ waiting


async def test_wait_for_ssh_until_server_comes_up(setup: Setup) -> None:
    port = _free_port()
    setup.pin(port)
    srv = setup.server(port=port)
    loop = asyncio.get_running_loop()
    start_task: list[asyncio.Task[SSHTestServer]] = []

    def on_progress(message: str) -> None:
        messages.append(message)
        if not start_task:  # first message: the server boots "a moment later"
            loop.call_later(0.5, lambda: start_task.append(loop.create_task(srv.start())))

    messages: list[str] = []
    try:
        async with await wait_for_ssh(
            setup.target(port), timeout=WAIT, on_progress=on_progress
        ) as conn:
            assert (await conn.run("echo up")).stdout == "up\n"
        assert start_task and start_task[0].done()
        user = setup.target(port).username
        assert messages[0] == f"[worker000] [{user}] Waiting for SSH ..."
        assert messages[-1] == f"[worker000] [{user}] SSH up."
    finally:
        if start_task:
            await start_task[0]
        await srv.stop()


async def test_wait_for_ssh_times_out_naming_target(setup: Setup) -> None:
    port = _free_port()  # nothing listens here
    setup.pin(port)
    messages: list[str] = []
    started = time.monotonic()
    with pytest.raises(SSHTimeoutError) as info:
        await wait_for_ssh(
            setup.target(port, name="scheduler"), timeout=1.0, on_progress=messages.append
        )
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.0
    text = str(info.value)
    assert text.startswith("[scheduler]")
    assert f"127.0.0.1:{port}" in text and "waiting for SSH" in text
    assert "attempts" in text
    assert isinstance(info.value, TimeoutError)
    assert len(messages) == 1  # progress is throttled, not one line per attempt


async def test_wait_for_ssh_retries_connections_closed_during_handshake(setup: Setup) -> None:
    # Like sshd while a machine boots: TCP is accepted, then closed without SSH banner.
    accepted: list[int] = []

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    tcp = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    setup.pin(port)
    try:
        with pytest.raises(SSHTimeoutError, match="last error"):
            await wait_for_ssh(setup.target(port), timeout=1.0, on_progress=lambda _: None)
        assert len(accepted) >= 2  # it kept trying
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_missing_client_key_is_not_retried(setup: Setup, server: SSHTestServer) -> None:
    setup.state.delete(StateDir.SSH_KEY)
    with pytest.raises(SSHError, match="cannot read SSH client key") as info:
        await wait_for_ssh(setup.target(server.port), timeout=30)
    assert not isinstance(info.value, SSHTimeoutError)
    assert server.connections == []


# ------------------------------------------------------------------------------ OpenSSH


def test_openssh_args_shape(setup: Setup) -> None:
    target = setup.target(2222)
    args = openssh_args(target)
    assert args[0] == "ssh" and args[-1] == f"{target.username}@127.0.0.1"
    assert args[1:3] == ["-F", "/dev/null"]
    joined = " ".join(args)
    for option in (
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        "GlobalKnownHostsFile=/dev/null",
        "PasswordAuthentication=no",
    ):
        assert f"-o {option}" in joined
    assert f'UserKnownHostsFile="{setup.state.known_hosts_path}"' in args
    assert args[args.index("-i") + 1] == str(setup.state.ssh_key_path)
    assert args[args.index("-p") + 1] == "2222"
    scp = scp_args(target)
    assert scp[0] == "scp" and scp[scp.index("-P") + 1] == "2222"
    assert scp_remote(target, "x") == f"{target.username}@127.0.0.1:x"
    v6 = dataclasses.replace(target, host="2001:db8::1")
    assert scp_remote(v6, "x") == f"{target.username}@[2001:db8::1]:x"


async def _exec(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.openssh
@pytest.mark.skipif(not shutil.which("ssh") or not shutil.which("scp"), reason="needs OpenSSH")
async def test_real_openssh_client(setup: Setup, server: SSHTestServer, tmp_path: Path) -> None:
    fake_home = tmp_path / "fake-user-home"  # proves nothing from ~/.ssh is needed or written
    fake_home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(fake_home)}
    known_hosts_before = setup.state.read_text(StateDir.KNOWN_HOSTS)
    target = setup.target(server.port)

    rc, out, err = await _exec([*openssh_args(target), "echo hello from ssh"], env)
    assert (rc, out) == (0, "hello from ssh\n"), err

    local = tmp_path / "payload.txt"
    local.write_text("scp payload")
    rc, _, err = await _exec([*scp_args(target), str(local), scp_remote(target, "copied.txt")], env)
    assert rc == 0, err
    assert (setup.home / "copied.txt").read_text() == "scp payload"

    assert setup.state.read_text(StateDir.KNOWN_HOSTS) == known_hosts_before
    assert list(fake_home.iterdir()) == []

    # A different pinned key: OpenSSH refuses too.
    setup.pin(server.port, SSHKeyPair.generate("other"))
    rc, _, err = await _exec([*openssh_args(target), "echo should not run"], env)
    assert rc == 255
    assert "host key" in err.lower()
    assert server.commands.count("echo should not run") == 0
