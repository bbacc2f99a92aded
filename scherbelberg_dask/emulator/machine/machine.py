"""An emulated machine: SSH server, processes, services and files of one API server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from .control import CommandHandler, ControlServer
from .environment import MachineView, write_wrapper_scripts
from .handler import SessionHandler
from .hostkeys import load_host_keys
from .interface import MachineEvent, MachineInterface, MachineSpec
from .paths import MachinePaths, valid_user_name
from .processes import kill_matching_async, node_match, signal_matching, wait_gone
from .services import Supervisor
from .sshserver import SSHService

logger = logging.getLogger(__name__)

#: Seconds services (and other processes) get between SIGTERM and SIGKILL on shutdown.
SHUTDOWN_GRACE = 3.0
#: Delay between ``servicectl poweroff`` and the start of the shutdown.
POWEROFF_DELAY = 0.3


def _rmtree(path: Path) -> None:
    """Remove ``path`` completely, also below directories a process made unwritable."""

    def retry(func: Callable[..., object], target: str, _exc: object) -> None:
        parent = os.path.dirname(target)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            os.chmod(target, stat.S_IRWXU)
        func(target)

    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def copy_tree(source: Path, target: Path) -> None:
    """Copy regular files, directories and symlinks (sockets, FIFOs are skipped)."""
    if not source.is_dir():
        return

    def special(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or path.is_dir() or path.is_file():
                continue
            skipped.add(name)
        return skipped

    with contextlib.suppress(FileExistsError):
        shutil.copytree(source, target, symlinks=True, ignore=special, dirs_exist_ok=True)


def disk_usage_gb(path: Path) -> float:
    """Bytes below ``path`` (files as stored, hard links once), in GB."""
    total, seen = 0, set()
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total / 1e9


class Machine(MachineInterface):
    """An emulated server on this host.

    Parameters
    ----------
    spec
        Everything fixed at server creation.
    on_event
        Called with a :class:`~.interface.MachineEvent` value when the machine changes
        state by itself (e.g. ``SHUTDOWN_COMPLETE``).
    """

    def __init__(self, spec: MachineSpec, on_event: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.on_event = on_event
        self.paths = MachinePaths(Path(spec.root_dir))
        self._node = MachineView(self.paths, spec.tag, spec.name)
        self._users = [user for user in spec.users if valid_user_name(user.name)]
        for user in spec.users:
            if not valid_user_name(user.name):
                logger.warning("%s: ignoring user with invalid name %r", spec.name, user.name)
        self._lock = asyncio.Lock()
        self._ssh: SSHService | None = None
        self._sessions: SessionHandler | None = None
        self._supervisor: Supervisor | None = None
        self._control: ControlServer | None = None
        self._generation = 0
        self._background: set[asyncio.Task[None]] = set()
        self._refuse_seconds = 0.0
        self._public_ip = ""

    # -- state ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the machine is powered on."""
        return self._ssh is not None

    @property
    def addresses(self) -> frozenset[str]:
        """The addresses the machine currently listens on (empty when off)."""
        return self._ssh.addresses if self._ssh is not None else frozenset()

    # -- power ---------------------------------------------------------------------------

    async def boot(self, public_ip: str, private_ips: list[str]) -> None:
        """Power on: listen for SSH on every address, then start the enabled services."""
        async with self._lock:
            if self._ssh is not None:
                for address in [public_ip, *private_ips]:
                    if address:
                        await self._ssh.listen(address)
                await self._write_addresses()
                return
            await asyncio.to_thread(self._prepare_files)
            host_keys = await asyncio.to_thread(load_host_keys, self.spec.host_keys, self.paths)
            sessions = SessionHandler(self._node) if self.spec.executes else None
            ssh = SSHService(
                self.spec.name,
                self.spec.image_name,
                self.spec.ssh_port,
                host_keys,
                self._users,
                sessions,
            )
            try:
                for address in dict.fromkeys([public_ip, *private_ips]):
                    if address:
                        await ssh.listen(address)
            except BaseException:
                await ssh.close()
                raise
            self._ssh = ssh
            self._sessions = sessions
            self._generation += 1
            self._public_ip = public_ip
            await self._write_addresses()
            if self._refuse_seconds:
                ssh.refuse(self._refuse_seconds)
                self._refuse_seconds = 0.0
            if self.spec.executes:
                try:
                    await self._start_services()
                except BaseException:
                    await self._halt()
                    raise
            logger.info("%s: booted on %s", self.spec.name, ", ".join(sorted(ssh.addresses)))

    async def _write_addresses(self) -> None:
        addresses = sorted(self.addresses, key=lambda ip: (ip != self._public_ip, ip))
        target = self.paths.addresses
        await asyncio.to_thread(target.write_text, " ".join(addresses) + "\n")

    def _prepare_files(self) -> None:
        self.paths.create([user.name for user in self._users])
        write_wrapper_scripts(self.paths, self.spec.name)

    async def _start_services(self) -> None:
        supervisor = Supervisor(self._node)
        handler = CommandHandler(supervisor, self._request_poweroff)
        control = ControlServer(self.paths.control_socket, handler.handle)
        await control.start()
        self._supervisor = supervisor
        self._control = control
        await supervisor.start_enabled()

    def _request_poweroff(self) -> None:
        task = asyncio.ensure_future(self._poweroff_soon())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _poweroff_soon(self) -> None:
        # Give the calling session a moment to report its exit status before it dies.
        await asyncio.sleep(POWEROFF_DELAY)
        await self.shutdown()

    async def halt(self) -> None:
        """Power off hard: every process of the machine dies, SSH goes away."""
        async with self._lock:
            await self._halt()

    async def _halt(self) -> None:
        ssh, self._ssh = self._ssh, None
        if ssh is None:
            return
        control, self._control = self._control, None
        supervisor, self._supervisor = self._supervisor, None
        sessions, self._sessions = self._sessions, None
        match = node_match(self.spec.tag)
        # Every step runs even if an earlier one failed: nothing may outlive a halt.
        steps: list[Callable[[], Awaitable[object]]] = [ssh.close]
        if control is not None:
            steps.append(control.close)
        if supervisor is not None:
            steps.append(supervisor.close)
        steps.append(lambda: kill_matching_async(match))
        if sessions is not None:
            steps.append(sessions.cancel_all)
        # A process forked while the handlers were ending is caught by a second sweep.
        steps.append(lambda: kill_matching_async(match))
        for step in steps:
            try:
                await step()
            except Exception:
                logger.exception("%s: error while halting", self.spec.name)
        logger.info("%s: halted", self.spec.name)

    async def shutdown(self) -> None:
        """ACPI shutdown: SIGTERM with a short grace, then halt; report when off."""
        if self._ssh is None:
            return
        generation = self._generation
        match = node_match(self.spec.tag)
        supervisor = self._supervisor
        if supervisor is not None:
            await supervisor.stop_all(SHUTDOWN_GRACE)
        await asyncio.to_thread(signal_matching, match, signal.SIGTERM)
        await wait_gone(match, SHUTDOWN_GRACE)
        async with self._lock:
            if self._ssh is None or self._generation != generation:
                return  # powered off (or rebooted) by someone else meanwhile
            await self._halt()
        if self.on_event is not None:
            try:
                self.on_event(MachineEvent.SHUTDOWN_COMPLETE)
            except Exception:
                logger.exception("%s: on_event callback failed", self.spec.name)

    async def destroy(self) -> None:
        """Halt and remove the machine's files."""
        async with self._lock:
            await self._halt()
            await asyncio.to_thread(_rmtree, self.paths.root)

    async def snapshot(self, target: Path) -> tuple[Path, ...]:
        """Copy the machine's files to ``target`` (nothing for a machine that runs nothing)."""
        if not self.spec.executes:
            return ()
        await asyncio.to_thread(copy_tree, self.paths.root, target)
        return (target,)

    # -- addresses and faults ------------------------------------------------------------

    async def add_address(self, ip: str) -> None:
        """Listen on a newly attached private IP too."""
        async with self._lock:
            if self._ssh is not None:
                await self._ssh.listen(ip)
                await self._write_addresses()

    async def remove_address(self, ip: str) -> None:
        """Stop listening on a detached private IP (its connections drop)."""
        async with self._lock:
            if self._ssh is not None:
                await self._ssh.unlisten(ip)
                await self._write_addresses()

    def refuse_ssh(self, seconds: float) -> None:
        """Drop new SSH connections right after accept for ``seconds``.

        When the machine is off, the refusal starts with its next boot.
        """
        if self._ssh is not None:
            self._ssh.refuse(seconds)
        else:
            self._refuse_seconds = seconds
