"""Starting, finding and ending the processes of emulated machines.

Every process a machine starts carries ``SCHERBELBERG_EMULATOR_NODE=<tag>`` in its
environment and runs in a session of its own.  Processes are found again by reading
``/proc/<pid>/environ``; this also finds daemons that double-forked and left their
session and process group (they inherit the environment).  A process can only escape by
exec'ing with a scrubbed environment (``env -i``), which this emulation accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: Environment variable carrying the machine's tag (``<emulator-id>/<server-id>``).
NODE_TAG_VAR = "SCHERBELBERG_EMULATOR_NODE"
#: Environment variable carrying the name of the service a process belongs to.
SERVICE_VAR = "SCHERBELBERG_EMULATOR_SERVICE"

_PROC = Path("/proc")
#: Bound on how long :func:`kill_matching` keeps sweeping.
_KILL_TIMEOUT = 5.0
_KILL_PAUSE = 0.005

EnvMatch = Callable[[Mapping[str, str]], bool]


def _read_environ(pid: int) -> dict[str, str] | None:
    """Return the environment of ``pid``; None if it is gone or not ours."""
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def find_pids(match: EnvMatch) -> list[int]:
    """Return the pids of all live processes whose environment satisfies ``match``.

    Zombies have no readable environment and are never returned; the calling process
    itself is never returned.
    """
    own = os.getpid()
    pids = []
    try:
        entries = os.listdir(_PROC)
    except OSError:  # pragma: no cover - /proc always exists on Linux
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == own:
            continue
        env = _read_environ(pid)
        if env and match(env):
            pids.append(pid)
    return pids


def node_match(tag: str, service: str | None = None) -> EnvMatch:
    """Match processes of the machine ``tag`` (and of one of its services)."""

    def match(env: Mapping[str, str]) -> bool:
        if env.get(NODE_TAG_VAR) != tag:
            return False
        return service is None or env.get(SERVICE_VAR) == service

    return match


def prefix_match(prefix: str) -> EnvMatch:
    """Match processes whose machine tag starts with ``prefix``."""

    def match(env: Mapping[str, str]) -> bool:
        value = env.get(NODE_TAG_VAR)
        return value is not None and value.startswith(prefix)

    return match


def signal_matching(match: EnvMatch, sig: int) -> int:
    """Send ``sig`` once to every process satisfying ``match``; return how many."""
    count = 0
    for pid in find_pids(match):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue
        count += 1
    return count


def kill_matching(match: EnvMatch) -> int:
    """SIGKILL every process satisfying ``match``, repeating until none is left.

    Repeats because a process may fork between the scan and the kill, and waits until the
    killed processes are really gone (or zombies); bounded by a few seconds.  Blocking:
    call it in a worker thread from async code.  Returns the number of processes killed.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + _KILL_TIMEOUT
    while True:
        pids = find_pids(match)
        if not pids:
            return len(seen)
        if time.monotonic() > deadline:
            logger.warning("processes survived %.0f s of SIGKILL: %s", _KILL_TIMEOUT, pids)
            return len(seen)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            seen.add(pid)
        time.sleep(_KILL_PAUSE)


def kill_tagged(prefix: str) -> int:
    """SIGKILL every process whose machine tag starts with ``prefix``.

    The emulator calls this with ``"<emulator-id>/"`` when it stops, as a last sweep.

    Parameters
    ----------
    prefix
        Tag prefix; an empty prefix is refused (it would match every emulator's nodes).

    Returns
    -------
    int
        Number of processes killed.

    Notes
    -----
    Blocking (reads /proc, waits until the processes are gone): call it in a worker
    thread from async code.
    """
    if not prefix:
        raise ValueError("kill_tagged needs a non-empty tag prefix")
    return kill_matching(prefix_match(prefix))


async def kill_matching_async(match: EnvMatch) -> int:
    """:func:`kill_matching` in a worker thread (it reads /proc)."""
    return await asyncio.to_thread(kill_matching, match)


async def wait_gone(match: EnvMatch, timeout: float, interval: float = 0.05) -> bool:
    """Poll until no process satisfies ``match``; return False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pids = await asyncio.to_thread(find_pids, match)
        if not pids:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)


def tagged_env(base: Mapping[str, str], tag: str) -> dict[str, str]:
    """Return a copy of ``base`` carrying the machine tag."""
    env = dict(base)
    env[NODE_TAG_VAR] = tag
    return env


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: int | None,
    stdout: int | None,
    stderr: int | None,
) -> asyncio.subprocess.Process:
    """Start a tracked process in a session of its own.

    ``env`` must already carry the machine tag (see :func:`tagged_env`); this is
    checked because an untagged process could outlive its machine.
    """
    if NODE_TAG_VAR not in env:
        raise ValueError(f"refusing to start an untagged process (no {NODE_TAG_VAR})")
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=str(cwd),
        env=dict(env),
        start_new_session=True,
        close_fds=True,
    )


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (falling back to the process)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def open_pipe() -> tuple[int, asyncio.StreamReader, asyncio.BaseTransport]:
    """Create a pipe whose read end is an asyncio stream.

    Returns the write end's file descriptor (to hand to a child and then close), the
    reader and its transport (close it to make the writer see EPIPE).
    """
    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
    except BaseException:
        os.close(write_fd)
        raise
    return write_fd, reader, transport
