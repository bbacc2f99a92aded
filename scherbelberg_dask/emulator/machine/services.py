"""The service supervisor of an emulated machine (the emulator image's "systemd").

A service runs as its user with cwd = HOME and the node environment plus its own
variables; its stdout and stderr are appended, line by line with UTC timestamps, to
``var/log/services/NAME.log``.  Depending on its restart policy it is started again after
it exits, with a backoff of 0.5 s doubling up to 5 s (reset after 10 s of running).  Every
process of a service carries ``SCHERBELBERG_EMULATOR_SERVICE=NAME``, so stopping a service
also ends the daemons it forked, like a cgroup would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shlex
import signal
import time
from pathlib import Path
from typing import IO

from .environment import MachineView
from .processes import (
    SERVICE_VAR,
    kill_matching_async,
    node_match,
    open_pipe,
    signal_group,
    signal_matching,
    spawn,
)
from .servicedef import DefinitionStore, ServiceDefinition

logger = logging.getLogger(__name__)

_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0
_BACKOFF_RESET_AFTER = 10.0
#: Bound on waiting for a started service's first spawn attempt.
_SPAWN_WAIT = 10.0
_MAX_LINE = 65536


def _timestamp() -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3].encode() + b"Z"


def describe_exit(returncode: int) -> str:
    """``status N`` or ``signal NAME`` for a process's return code."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


class ServiceLog:
    """Appends timestamped lines to one service's log file.

    Parameters
    ----------
    path
        The log file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def event(self, message: str) -> None:
        """Record a supervisor event (start, exit, restart)."""
        with self.path.open("ab") as handle:
            handle.write(_timestamp() + b" [supervisor] " + message.encode() + b"\n")

    @staticmethod
    def _write_lines(handle: IO[bytes], lines: list[bytes]) -> None:
        for line in lines:
            handle.write(_timestamp() + b" " + line + b"\n")
        handle.flush()

    async def pump(self, reader: asyncio.StreamReader) -> None:
        """Copy the service's output until EOF, one timestamped line per output line."""
        pending = b""
        with self.path.open("ab") as handle:
            while True:
                chunk = await reader.read(_MAX_LINE)
                if not chunk:
                    break
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                if len(pending) >= _MAX_LINE:
                    lines.append(pending)
                    pending = b""
                self._write_lines(handle, lines)
            if pending:
                self._write_lines(handle, [pending])

    def tail(self, lines: int) -> str:
        """Return the last ``lines`` lines (all if ``lines`` <= 0)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return ""
        with self.path.open("rb") as handle:
            if lines <= 0:
                data = handle.read()
            else:
                block = 65536
                data = b""
                position = size
                while position > 0 and data.count(b"\n") <= lines:
                    step = min(block, position)
                    position -= step
                    handle.seek(position)
                    data = handle.read(step) + data
        text = data.decode(errors="replace")
        if lines > 0:
            text = "".join(text.splitlines(keepends=True)[-lines:])
        return text


class Service:
    """Runtime state of one service.

    Parameters
    ----------
    definition
        What to run.
    supervisor
        The owning supervisor (and through it the machine).
    """

    def __init__(self, definition: ServiceDefinition, supervisor: Supervisor) -> None:
        self.definition = definition
        self.state = "inactive"
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.since: float | None = None
        self._supervisor = supervisor
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._attempted = asyncio.Event()
        self._pumps: set[asyncio.Task[None]] = set()
        self.log = ServiceLog(supervisor.node.paths.service_logs / f"{definition.name}.log")

    @property
    def name(self) -> str:
        """The service's name."""
        return self.definition.name

    @property
    def running(self) -> bool:
        """Whether the service's run loop is alive (active or waiting to restart)."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start unless already running; return after the first spawn attempt."""
        if self.running:
            return
        self._stop = asyncio.Event()
        self._attempted = asyncio.Event()
        self.restarts = 0
        self._task = asyncio.ensure_future(self._run())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), _SPAWN_WAIT)

    def _environment(self) -> dict[str, str]:
        env = self._supervisor.node.environment(self.definition.user)
        env.update(self.definition.env)
        env[SERVICE_VAR] = self.name
        return env

    async def _spawn(self) -> asyncio.subprocess.Process:
        home = self._supervisor.node.paths.home(self.definition.user)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_fd, reader, transport = await open_pipe()
        try:
            proc = await spawn(
                self.definition.argv,
                env=self._environment(),
                cwd=home,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
            )
        except BaseException:
            transport.close()
            raise
        finally:
            os.close(write_fd)
        pump = asyncio.ensure_future(self._pump(reader, transport))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        return proc

    async def _pump(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        try:
            await self.log.pump(reader)
        except OSError as exc:
            logger.warning("service %s: cannot write its log: %s", self.name, exc)
        finally:
            transport.close()

    async def _run_once(self) -> int:
        """Run the service once; return its return code (127 if it cannot start)."""
        try:
            proc = await self._spawn()
        except OSError as exc:
            self.log.event(f"cannot start {self.definition.argv[0]!r}: {exc.strerror or exc}")
            self._attempted.set()
            return 127
        self._proc = proc
        self.pid = proc.pid
        self.state = "active"
        self.since = time.time()
        self.log.event(f"started pid {proc.pid}: {shlex.join(self.definition.argv)}")
        self._attempted.set()
        try:
            return await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled (halt): the machine sweeps the rest
                signal_group(proc.pid, signal.SIGKILL)
            self._proc = None
            self.pid = None

    async def _run(self) -> None:
        backoff = _BACKOFF_START
        while not self._stop.is_set():
            if self.state != "active":
                self.state = "activating"
            started = time.monotonic()
            returncode = await self._run_once()
            self.last_exit = describe_exit(returncode)
            if self._stop.is_set():
                self.log.event(f"stopped ({self.last_exit})")
                break
            failed = returncode != 0
            policy = self.definition.restart
            if not (policy == "always" or (policy == "on-failure" and failed)):
                self.state = "failed" if failed else "inactive"
                self.log.event(f"exited with {self.last_exit}; not restarting ({policy})")
                return
            if time.monotonic() - started >= _BACKOFF_RESET_AFTER:
                backoff = _BACKOFF_START
            self.state = "activating"
            self.log.event(f"exited with {self.last_exit}; restarting in {backoff:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
            if not self._stop.is_set():
                self.restarts += 1
        self.state = "inactive"

    async def stop(self, grace: float) -> None:
        """Stop: SIGTERM to every process of the service, SIGKILL after ``grace``."""
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        match = node_match(self._supervisor.node.tag, self.name)
        await asyncio.to_thread(signal_matching, match, signal.SIGTERM)
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            self.log.event(f"did not stop within {grace:g} s; killing")
            await kill_matching_async(match)
            await asyncio.wait({task}, timeout=grace)
        # Stragglers (daemons of the service that ignored SIGTERM) end too.
        await kill_matching_async(match)
        self.state = "inactive"

    async def abandon(self) -> None:
        """Halt: end the run loop without grace (the machine kills the processes)."""
        self._stop.set()
        tasks = [t for t in (self._task, *self._pumps) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.state = "inactive"


class Supervisor:
    """Runs the services of one machine during one boot.

    Parameters
    ----------
    node
        The machine.
    stop_grace
        Seconds a stopping service gets between SIGTERM and SIGKILL.
    """

    def __init__(self, node: MachineView, stop_grace: float = 5.0) -> None:
        self.node = node
        self.stop_grace = stop_grace
        self.store = DefinitionStore(node.paths.services)
        self.services: dict[str, Service] = {}

    async def start_enabled(self) -> None:
        """Load the persisted definitions and start the enabled services."""
        definitions = await asyncio.to_thread(self.store.load_all)
        for definition in definitions:
            self.services[definition.name] = Service(definition, self)
        await asyncio.gather(
            *(service.start() for service in self.services.values() if service.definition.enabled)
        )

    def define(self, definition: ServiceDefinition) -> Service:
        """Create or replace a service definition (persisted); return its service."""
        definition.validate()
        self.store.save(definition)
        service = self.services.get(definition.name)
        if service is None:
            service = Service(definition, self)
            self.services[definition.name] = service
        else:
            service.definition = definition
        return service

    def set_enabled(self, service: Service, enabled: bool) -> None:
        """Persist whether ``service`` starts at boot."""
        service.definition.enabled = enabled
        self.store.save(service.definition)

    async def remove(self, service: Service) -> None:
        """Stop ``service`` and forget its definition (its log stays)."""
        await service.stop(self.stop_grace)
        self.store.remove(service.name)
        self.services.pop(service.name, None)

    async def stop_all(self, grace: float) -> None:
        """Stop every running service gracefully (ACPI shutdown)."""
        await asyncio.gather(
            *(service.stop(grace) for service in self.services.values() if service.running)
        )

    async def close(self) -> None:
        """Halt: abandon every service (no restarts; processes are killed by the machine)."""
        await asyncio.gather(*(service.abandon() for service in self.services.values()))
