"""Run a command or an interactive shell for an SSH session on a real pseudo-terminal.

The child becomes a session leader and acquires the pty slave as its controlling
terminal (a session leader without one that opens a tty gets it), so job control, Ctrl-C
through the line discipline and SIGWINCH work as on a real machine.  Closing the master
when the client leaves hangs the terminal up (SIGHUP to its session).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncssh

from .processes import signal_group, spawn
from .session import NodeProcess, report_exit, signal_number
from .termmodes import apply_modes, set_window_size

logger = logging.getLogger(__name__)

_CHUNK = 65536
#: How long output still written by background jobs is forwarded after the command ended.
_DRAIN_TIMEOUT = 0.5
#: Re-opening the slave by name as a session leader makes it the controlling terminal.
#: The prompt is passed as an argument: a non-interactive bash drops PS1 from its
#: environment, so it cannot simply be inherited.
_CTTY_WRAPPER = (
    'exec 0<>"$1" 1>&0 2>&0 || exit 126; [ -z "$2" ] || export PS1="$2"; shift 2; exec "$@"'
)


class _Master:
    """Non-blocking asyncio access to a pty master file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self._waiting: set[asyncio.Future[None]] = set()

    async def _wait(self, writable: bool) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting.add(future)

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        if writable:
            self._loop.add_writer(self.fd, ready)
        else:
            self._loop.add_reader(self.fd, ready)
        try:
            await future
        finally:
            self._waiting.discard(future)
            if not self.closed:
                if writable:
                    self._loop.remove_writer(self.fd)
                else:
                    self._loop.remove_reader(self.fd)

    async def read(self) -> bytes:
        """Read output; ``b""`` once every slave descriptor is closed (EIO)."""
        while not self.closed:
            try:
                return os.read(self.fd, _CHUNK)
            except BlockingIOError:
                await self._wait(writable=False)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` (waiting while the terminal's input queue is full)."""
        view = memoryview(data)
        while view and not self.closed:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await self._wait(writable=True)
                continue
            view = view[written:]

    def close(self) -> None:
        """Close the master (hangs the terminal up)."""
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self.fd)
            self._loop.remove_writer(self.fd)
            os.close(self.fd)
            for future in self._waiting:
                if not future.done():
                    future.set_result(None)


async def _copy_input(process: NodeProcess, master: _Master) -> None:
    """Copy the client's keystrokes to the terminal; EOF becomes the EOF character."""
    try:
        while True:
            data = await process.stdin.read(_CHUNK)
            if not data:
                await master.write(b"\x04")
                return
            await master.write(data)
    except (OSError, asyncssh.Error):
        return


async def _copy_output(process: NodeProcess, master: _Master) -> None:
    """Copy terminal output to the client until the terminal is gone."""
    try:
        while True:
            data = await master.read()
            if not data:
                return
            process.stdout.write(data)
            await process.stdout.drain()
    except (OSError, asyncssh.Error):
        return


async def run_pty(
    process: NodeProcess,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    prompt: str = "",
) -> None:
    """Run ``argv`` on a new pty for ``process`` and report its exit status.

    Parameters
    ----------
    process
        The SSH session; it requested a pty (its type is in ``env['TERM']``).
    argv
        Command to run (an interactive shell or ``/bin/bash -c CMD``).
    env, cwd
        Environment (carrying the machine tag) and working directory.
    prompt
        PS1 for an interactive shell (empty: none).
    """
    master_fd, slave_fd = os.openpty()
    try:
        width, height, pixwidth, pixheight = process.term_size
        set_window_size(slave_fd, width, height, pixwidth, pixheight)
        apply_modes(slave_fd, process.term_modes)
        slave_name = os.ttyname(slave_fd)
        proc = await spawn(
            ["/bin/bash", "-c", _CTTY_WRAPPER, "ctty", slave_name, prompt, *argv],
            env=env,
            cwd=cwd,
            stdin=slave_fd,
            stdout=slave_fd,
            stderr=slave_fd,
        )
    except BaseException:
        os.close(master_fd)
        raise
    finally:
        os.close(slave_fd)
    master = _Master(master_fd)

    def deliver(name: str) -> None:
        sig = signal_number(name)
        if sig is None or proc.returncode is not None:
            return
        target = proc.pid
        if not master.closed:
            with contextlib.suppress(OSError):
                target = os.tcgetpgrp(master.fd)
        signal_group(target, sig)

    def resize(width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if not master.closed:
            set_window_size(master.fd, width, height, pixwidth, pixheight)

    process.on_signal = deliver
    process.on_resize = resize
    process.on_lost = master.close
    reader = asyncio.ensure_future(_copy_output(process, master))
    writer = asyncio.ensure_future(_copy_input(process, master))
    try:
        returncode = await proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), _DRAIN_TIMEOUT)
    finally:
        process.on_signal = None
        process.on_resize = None
        process.on_lost = None
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
        master.close()
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, asyncssh.Error):
        await process.stdout.drain()
    report_exit(process, returncode)
