"""A Debian server as a container: real systemd, sshd and cloud-init, booted by nspawn.

The container shares the host's network namespace (every server has its own loopback
addresses, as on the emulator's own image) and sees its image through an overlay whose
upper layer is the server's disk: a reboot keeps what the server wrote, a snapshot copies
that layer, and deleting the server removes it.  Power states map onto the container:

- boot: write the NoCloud seed and sshd's listen drop-in, start ``systemd-nspawn --boot``,
  return once sshd accepts connections on the public address;
- halt (power off, reset, crash, delete): nspawn ends the container's PID namespace at
  once (SIGKILL to its init);
- shutdown (ACPI): the container's systemd powers off cleanly (SIGRTMIN+4), with a bound;
- a guest that runs ``reboot`` boots again; one that runs ``poweroff`` is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ..machine.interface import MachineEvent, MachineInterface, MachineSpec
from .images import PreparedImage
from .nspawn import BootCommand
from .seed import SSHD_DROP_IN, sshd_listen_config, write_boot_files

logger = logging.getLogger(__name__)

__all__ = ["ContainerMachine"]

#: Bound on a boot until sshd answers on the public address.
BOOT_TIMEOUT = 120.0
#: Bound on a clean shutdown before the container is killed.
SHUTDOWN_TIMEOUT = 30.0
#: Bound on nspawn's exit once its container was killed.
HALT_TIMEOUT = 20.0
#: nspawn's exit status when the container rebooted itself.
_REBOOT_STATUS = 133
_MACHINE_NAME_RE = re.compile(r"[^a-zA-Z0-9-]")


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


async def _port_open(host: str, port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ContainerMachine(MachineInterface):
    """A server of a Debian image, booted as a container.

    Parameters
    ----------
    spec
        Everything fixed at server creation (``layers`` are snapshot layers on top of
        the image, lowest first).
    image
        The prepared root file system of the server's Debian release.
    on_event
        Called with :class:`~..machine.interface.MachineEvent` values.
    binds
        Host directories shared into every container (a package cache).
    """

    def __init__(
        self,
        spec: MachineSpec,
        image: PreparedImage,
        on_event: Callable[[str], None] | None = None,
        binds: tuple[tuple[Path, str], ...] = (),
    ) -> None:
        self.spec = spec
        self.on_event = on_event
        self.image = image
        self._binds = binds
        root = Path(spec.root_dir)
        self.disk = root / "disk"
        self._work = root / "work"
        self._mountpoint = root / "mnt"
        self.console_log = root / "console.log"
        machine = _MACHINE_NAME_RE.sub("-", f"sb-{spec.tag}")[:64]
        self._command = BootCommand(
            machine=machine,
            hostname=spec.name,
            layers=(image.rootfs, *spec.layers),
            upper=self.disk,
            work=self._work,
            mountpoint=self._mountpoint,
            binds=binds,
        )
        self._lock = asyncio.Lock()
        self._process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._expected_exit = False
        self._addresses: list[str] = []
        self._refuse_seconds = 0.0
        self._background: set[asyncio.Task[None]] = set()

    # -- state ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the container is up (its nspawn process runs)."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """PID of the container's nspawn process while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    def leader(self) -> int | None:
        """PID (on the host) of the container's init, while it runs."""
        pid = self.pid
        if pid is None:
            return None
        children = _children(pid)
        return children[0] if children else None

    # -- power ---------------------------------------------------------------------------

    async def boot(self, public_ip: str, private_ips: list[str]) -> None:
        """Boot the container; return once sshd accepts connections (bounded)."""
        async with self._lock:
            addresses = list(dict.fromkeys(ip for ip in [public_ip, *private_ips] if ip))
            if self.running:
                if addresses != self._addresses:
                    self._addresses = addresses
                    await self._apply_addresses()
                return
            self._addresses = addresses
            await self._start()
        if self._refuse_seconds:
            seconds, self._refuse_seconds = self._refuse_seconds, 0.0
            self.refuse_ssh(seconds)
        await self._wait_for_ssh(public_ip or addresses[0] if addresses else "")

    async def _start(self) -> None:
        await asyncio.to_thread(self._write_disk)
        # Opening a local log file does not wait on anything; it is handed to the process.
        console = open(self.console_log, "ab")  # noqa: SIM115, ASYNC230
        try:
            # Started from the event loop's thread: the parent-death signal follows that
            # thread, which lives as long as the emulator.
            self._process = await asyncio.create_subprocess_exec(
                *self._command.argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            console.close()
        self._expected_exit = False
        self._watcher = asyncio.ensure_future(self._watch(self._process))
        logger.info(
            "%s: booting %s container (pid %d) on %s",
            self.spec.name,
            self.image.name,
            self._process.pid,
            ", ".join(self._addresses),
        )

    def _write_disk(self) -> None:
        for path in (self.disk, self._work, self._mountpoint):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.disk, 0o755)
        write_boot_files(
            upper=self.disk,
            image=self.image.rootfs,
            instance_id=_MACHINE_NAME_RE.sub("-", f"i-{self.spec.tag}"),
            hostname=self.spec.name,
            root_keys=self.spec.root_keys,
            user_data=self.spec.user_data,
            addresses=self._addresses,
            ssh_port=self.spec.ssh_port,
        )

    async def _wait_for_ssh(self, address: str) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while self.running and time.monotonic() < deadline:
            if address and await _port_open(address, self.spec.ssh_port):
                logger.info("%s: sshd is up on %s:%d", self.spec.name, address, self.spec.ssh_port)
                return
            await asyncio.sleep(0.2)
        if self.running:
            logger.warning(
                "%s: sshd did not answer on %s:%d within %.0f s (console: %s)",
                self.spec.name,
                address,
                self.spec.ssh_port,
                BOOT_TIMEOUT,
                self.console_log,
            )

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        if self._expected_exit or process is not self._process:
            return
        if status == _REBOOT_STATUS:
            logger.info("%s: the guest rebooted", self.spec.name)
            task = asyncio.ensure_future(self._guest_reboot())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        logger.info("%s: the guest powered off (nspawn exit %s)", self.spec.name, status)
        self._notify(MachineEvent.SHUTDOWN_COMPLETE)

    async def _guest_reboot(self) -> None:
        async with self._lock:
            if not self.running:
                await self._start()

    def _notify(self, event: str) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("%s: on_event callback failed", self.spec.name)

    async def halt(self) -> None:
        """Power off hard: the container's PID namespace dies at once."""
        async with self._lock:
            await self._halt()

    async def _halt(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._expected_exit = True
        leader = self.leader()
        with contextlib.suppress(ProcessLookupError):
            if leader is not None:
                os.kill(leader, signal.SIGKILL)
            else:
                process.send_signal(signal.SIGTERM)  # nspawn then kills the container
        try:
            await asyncio.wait_for(process.wait(), HALT_TIMEOUT)
        except asyncio.TimeoutError:
            logger.error("%s: nspawn did not exit; killing it", self.spec.name)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        logger.info("%s: halted", self.spec.name)

    async def shutdown(self) -> None:
        """ACPI shutdown: systemd stops its services and powers off; then report off."""
        async with self._lock:
            process, leader = self._process, self.leader()
            if process is None or process.returncode is not None:
                return
            self._expected_exit = True
            if leader is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader, signal.SIGRTMIN + 4)  # systemd: poweroff.target
            try:
                await asyncio.wait_for(process.wait(), SHUTDOWN_TIMEOUT)
            except asyncio.TimeoutError:
                logger.warning(
                    "%s: no clean shutdown within %.0f s; powering off hard",
                    self.spec.name,
                    SHUTDOWN_TIMEOUT,
                )
                await self._halt()
        self._notify(MachineEvent.SHUTDOWN_COMPLETE)

    async def destroy(self) -> None:
        """Halt and remove the server's disk."""
        async with self._lock:
            await self._halt()
            for task in list(self._background):
                task.cancel()
            await asyncio.to_thread(shutil.rmtree, self.spec.root_dir, True)

    # -- inside the running container -----------------------------------------------------

    async def run_inside(self, argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
        """Run ``argv`` inside the running container (as its root); (status, output)."""
        leader = self.leader()
        if leader is None:
            return 255, "the container is not running"
        process = await asyncio.create_subprocess_exec(
            "nsenter",
            f"--target={leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--pid",
            "--",
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(stdin), 60)
        return process.returncode or 0, output.decode(errors="replace")

    async def _apply_addresses(self) -> None:
        text = sshd_listen_config(self._addresses, self.spec.ssh_port)
        status, output = await self.run_inside(
            ["/bin/sh", "-c", f"cat > /{SSHD_DROP_IN} && systemctl reload ssh"], text.encode()
        )
        if status != 0:
            raise OSError(f"{self.spec.name}: could not change sshd's addresses: {output.strip()}")

    async def add_address(self, ip: str) -> None:
        """Let sshd listen on a newly attached private address too."""
        async with self._lock:
            if self.running and ip not in self._addresses:
                self._addresses.append(ip)
                await self._apply_addresses()

    async def remove_address(self, ip: str) -> None:
        """Stop sshd listening on a detached address."""
        async with self._lock:
            if self.running and ip in self._addresses:
                self._addresses.remove(ip)
                await self._apply_addresses()

    def refuse_ssh(self, seconds: float) -> None:
        """Stop sshd for ``seconds`` (from the next boot if the server is off)."""
        if not self.running:
            self._refuse_seconds = seconds
            return
        task = asyncio.ensure_future(self._pause_sshd(seconds))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _pause_sshd(self, seconds: float) -> None:
        await self.run_inside(["systemctl", "stop", "ssh"])
        await asyncio.sleep(seconds)
        if self.running:
            await self.run_inside(["systemctl", "start", "ssh"])

    # -- disk -----------------------------------------------------------------------------

    async def snapshot(self, target: Path) -> tuple[Path, ...]:
        """Copy the server's disk layer to ``target``; return the snapshot's layers."""
        target.parent.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            "cp",
            "-a",
            "--reflink=auto",
            str(self.disk),
            str(target),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise OSError(f"copying the disk of {self.spec.name} failed: {output.decode().strip()}")
        return (*self.spec.layers, target)
