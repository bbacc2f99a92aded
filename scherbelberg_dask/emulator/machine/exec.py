"""Run a command for an SSH session without a terminal: separate stdout/stderr pipes.

Like sshd, the session ends once the process has exited *and* its stdout and stderr
reached EOF (a background process that keeps them open keeps the session open).  When
the client goes away, stdin is closed and the output pipes are closed, so the process
sees EOF and EPIPE/SIGPIPE as under a real sshd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncssh

from .processes import open_pipe, signal_group, spawn
from .session import NodeProcess, report_exit, signal_number

logger = logging.getLogger(__name__)

_CHUNK = 65536


async def _feed_stdin(process: NodeProcess, writer: asyncio.StreamWriter) -> None:
    """Copy the channel's stdin to the process, closing it on EOF."""
    try:
        while True:
            data = await process.stdin.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncssh.Error):
        # The process closed its stdin or the client went away; either ends the copy.
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def _copy_output(
    reader: asyncio.StreamReader,
    out: asyncssh.SSHWriter[bytes],
    transport: asyncio.BaseTransport,
) -> None:
    """Copy one output pipe to the channel until EOF; close the pipe if the client left."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return
            out.write(data)
            await out.drain()
    except (OSError, asyncssh.Error):
        transport.close()


async def run_pipes(
    process: NodeProcess, argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> None:
    """Run ``argv`` for ``process`` with pipes and report its exit status.

    Parameters
    ----------
    process
        The SSH session.
    argv
        Command to run (``/bin/bash -c CMD`` or a non-interactive shell).
    env, cwd
        Environment (carrying the machine tag) and working directory.
    """
    out_fd, out_reader, out_transport = await open_pipe()
    try:
        err_fd, err_reader, err_transport = await open_pipe()
    except BaseException:
        os.close(out_fd)
        out_transport.close()
        raise
    try:
        proc = await spawn(
            argv, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=out_fd, stderr=err_fd
        )
    except BaseException:
        out_transport.close()
        err_transport.close()
        raise
    finally:
        os.close(out_fd)
        os.close(err_fd)

    def deliver(name: str) -> None:
        sig = signal_number(name)
        if sig is not None and proc.returncode is None:
            signal_group(proc.pid, sig)

    def lost() -> None:
        out_transport.close()
        err_transport.close()

    process.on_signal = deliver
    process.on_lost = lost
    assert proc.stdin is not None
    tasks = [
        asyncio.ensure_future(_feed_stdin(process, proc.stdin)),
        asyncio.ensure_future(_copy_output(out_reader, process.stdout, out_transport)),
        asyncio.ensure_future(_copy_output(err_reader, process.stderr, err_transport)),
    ]
    try:
        returncode = await proc.wait()
        await asyncio.gather(*tasks[1:])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out_transport.close()
        err_transport.close()
        process.on_signal = None
        process.on_lost = None
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, asyncssh.Error):
        await process.stdout.drain()
    report_exit(process, returncode)
