"""Hosting the Hetzner Cloud emulator for a benchmark, and accounting for its CPU use.

By default the emulator runs in a child process (:class:`ChildEmulator`), so that its
work (API, SSH servers, emulated machines) does not compete for the benchmark's GIL;
:class:`ThreadEmulator` runs it in a thread of the calling process instead.  Both answer
the same calls as :class:`scherbelberg_dask.emulator.Emulator` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

__all__ = [
    "ChildEmulator",
    "EmulatorHandle",
    "ThreadEmulator",
    "client_cpu",
    "emulated_processes",
    "emulator_cpu",
    "machine_busy",
]


class EmulatorHandle(Protocol):
    """What the benchmark needs of an emulator, wherever it runs."""

    emulator_id: str
    host_pid: int

    def env(self) -> dict[str, str]: ...
    def dask_config(self) -> dict[str, Any]: ...
    def counters(self) -> dict[str, dict[str, int]]: ...
    def reset_counters(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _emulator_child(
    conn: multiprocessing.connection.Connection, options: dict[str, Any], nice: int
) -> None:
    """Child process: run an emulator and answer commands from the parent.

    ``nice`` lowers the CPU priority of the emulator and of everything its machines run
    (they inherit it), as if the nodes ran on other computers than the client.
    """
    if nice:
        os.nice(nice)
    logging.basicConfig(
        level=logging.WARNING, format="emulator %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.ERROR)
    asyncio.run(_emulator_serve(conn, options))


async def _emulator_serve(
    conn: multiprocessing.connection.Connection, options: dict[str, Any]
) -> None:
    from scherbelberg_dask.emulator import Emulator

    loop = asyncio.get_running_loop()
    async with Emulator(**options) as emulator:
        conn.send({"env": emulator.env(), "dask_config": emulator.dask_config(), "id": emulator.id})
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                break
            try:
                if command == "counters":
                    reply: Any = emulator.counters()
                elif command == "reset_counters":
                    emulator.reset_counters()
                    reply = None
                elif command == "snapshot":
                    reply = emulator.snapshot()
                else:
                    reply = ValueError(f"unknown command {command!r}")
            except Exception as exc:  # report to the parent rather than die
                reply = exc
            conn.send(reply)
    conn.send("stopped")


class ChildEmulator:
    """An :class:`~scherbelberg_dask.emulator.Emulator` in a child process."""

    def __init__(self, options: dict[str, Any], nice: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(
            target=_emulator_child, args=(child_conn, options, nice), name="emulator", daemon=True
        )
        self._process.start()
        if not self._conn.poll(120):
            self._process.kill()
            raise RuntimeError("the emulator child process did not start within 120 s")
        hello = self._conn.recv()
        self._env: dict[str, str] = hello["env"]
        self._dask_config: dict[str, Any] = hello["dask_config"]
        self.emulator_id: str = hello["id"]
        assert self._process.pid is not None
        self.host_pid = self._process.pid
        self._lock = threading.Lock()

    def _call(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            if not self._conn.poll(120):
                raise RuntimeError(f"the emulator did not answer {command!r} within 120 s")
            reply = self._conn.recv()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def dask_config(self) -> dict[str, Any]:
        return dict(self._dask_config)

    def counters(self) -> dict[str, dict[str, int]]:
        return self._call("counters")

    def reset_counters(self) -> None:
        self._call("reset_counters")

    def snapshot(self) -> dict[str, Any]:
        return self._call("snapshot")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call("stop")
        self._process.join(60)
        if self._process.is_alive():
            self._process.kill()


class ThreadEmulator:
    """An emulator on its own event loop in a thread of this process (``--emulator thread``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        from scherbelberg_dask.emulator import Emulator

        self._emulator = Emulator(**options)
        self._emulator.start_sync()
        self.emulator_id = self._emulator.id
        self.host_pid = os.getpid()

    def env(self) -> dict[str, str]:
        return self._emulator.env()

    def dask_config(self) -> dict[str, Any]:
        return self._emulator.dask_config()

    def counters(self) -> dict[str, dict[str, int]]:
        return self._emulator.counters()

    def reset_counters(self) -> None:
        self._emulator.reset_counters()

    def snapshot(self) -> dict[str, Any]:
        return self._emulator.snapshot()

    def close(self) -> None:
        self._emulator.stop_sync()


def emulated_processes(emulator: EmulatorHandle) -> list[int]:
    """PIDs of processes still running on the emulator's machines."""
    from scherbelberg_dask.emulator.machine.processes import find_pids, prefix_match

    return find_pids(prefix_match(f"{emulator.emulator_id}/"))


# -- CPU accounting ------------------------------------------------------------------


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _proc_cpu(pid: int, children: bool) -> float:
    """CPU seconds of ``pid`` (plus its reaped children if ``children``); 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    # fields[11:15] are utime, stime, cutime, cstime (stat fields 14-17)
    ticks = sum(int(f) for f in fields[11 : 15 if children else 13])
    return ticks / _clock_ticks()


def emulator_cpu(emulator: EmulatorHandle) -> float:
    """CPU seconds used so far by the emulator and everything its machines run."""
    total = 0.0 if emulator.host_pid == os.getpid() else _proc_cpu(emulator.host_pid, True)
    for pid in emulated_processes(emulator):
        total += _proc_cpu(pid, True)
    return total


def client_cpu() -> float:
    """CPU seconds of this (the client's) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from ``/proc/stat``."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _clock_ticks(), total / _clock_ticks()
