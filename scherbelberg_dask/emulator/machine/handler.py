"""Dispatch the sessions of an executing machine: exec, shell (with or without pty), SFTP."""

from __future__ import annotations

import asyncio
import logging

import asyncssh
from asyncssh.channel import SSHChannel

from .environment import MachineView, merge_client_env
from .exec import run_pipes
from .pty import run_pty
from .session import NodeProcess, fail
from .sftp import HomeSFTPServer

logger = logging.getLogger(__name__)

_INTERACTIVE_SHELL = ["/bin/bash", "--noprofile", "--norc", "-i"]
_PLAIN_SHELL = ["/bin/bash", "--noprofile", "--norc"]


class SessionHandler:
    """Runs the sessions of one machine and remembers them so that halt can end them.

    Parameters
    ----------
    node
        The machine (its hostname is shown in the prompt).
    """

    def __init__(self, node: MachineView) -> None:
        self._node = node
        self._tasks: set[asyncio.Task[None]] = set()

    def new_session(self) -> NodeProcess:
        """Create the session object for a newly opened session channel."""
        return NodeProcess(self._run, self.sftp_server, 3, False)

    def sftp_server(self, chan: SSHChannel[bytes]) -> asyncssh.SFTPServer:
        """Create the SFTP server of a session (rooted at the user's HOME)."""
        assert isinstance(chan, asyncssh.SSHServerChannel)
        user = chan.get_extra_info("username")
        return HomeSFTPServer(chan, self._node.paths.home(user))

    def _environment(self, process: NodeProcess, user: str) -> dict[str, str]:
        env = self._node.environment(user)
        merge_client_env(env, process.env)
        conn = process.channel.get_connection()
        peer = conn.get_extra_info("peername")
        local = conn.get_extra_info("sockname")
        if peer and local:
            env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {local[0]} {local[1]}"
            env["SSH_CLIENT"] = f"{peer[0]} {peer[1]} {local[1]}"
        if process.term_type:
            env["TERM"] = process.term_type
        return env

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        assert isinstance(process, NodeProcess)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._dispatch(process)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("session failed on %s", self._node.name)
            fail(process, "scherbelberg-emulator: internal error running the session", 255)
        finally:
            self._tasks.discard(task)

    async def _dispatch(self, process: NodeProcess) -> None:
        if process.subsystem:
            fail(process, f"subsystem request failed: {process.subsystem!r} is not supported", 1)
            return
        user = process.get_extra_info("username")
        env = self._environment(process, user)
        home = self._node.paths.home(user)
        if not home.is_dir():  # removed from inside the machine: start over empty
            home.mkdir(parents=True, mode=0o700)
        command = process.command
        if process.term_type:
            if command is None:
                prompt_char = "#" if user == "root" else "$"
                prompt = f"{user}@{self._node.name}:\\w{prompt_char} "
                await run_pty(process, _INTERACTIVE_SHELL, env, home, prompt)
            else:
                await run_pty(process, ["/bin/bash", "-c", command], env, home)
        else:
            argv = _PLAIN_SHELL if command is None else ["/bin/bash", "-c", command]
            await run_pipes(process, argv, env, home)

    async def cancel_all(self) -> None:
        """End every running session handler (their processes are killed separately)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
