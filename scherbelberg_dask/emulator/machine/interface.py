"""The contract between the emulator's API layer and its emulated machines.

The API layer (``scherbelberg_dask.emulator.api``) owns the *cloud* view of a server
(status, actions, IPs, labels).  An emulated :class:`Machine` owns the *host* view: the
SSH server on the server's addresses, the processes it runs, its file tree and its
services.  The API layer drives a machine only through the methods below; a machine never
calls back into the API layer except through the ``on_event`` callback.

This module is the fixed interface.  ``machine.py`` implements it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

#: Name of the only image whose servers execute commands on this host.
EMULATOR_IMAGE_NAME = "scherbelberg-emulator"


@dataclasses.dataclass
class LoginUser:
    """A login user from cloud-init ``users`` (or ``root``)."""

    name: str
    authorized_keys: list[str]  # OpenSSH public key lines


@dataclasses.dataclass
class MachineSpec:
    """Everything a machine needs to know, fixed at server creation.

    Attributes
    ----------
    server_id, name
        The API server's id and name (``name`` is the machine's hostname).
    image_name
        The server's image name (or description for snapshots).
    executes
        True only for the emulator's own image (and snapshots made from it).  A machine
        with ``executes=False`` accepts SSH authentication but refuses every exec, shell,
        subsystem (SFTP) and forwarding request with a message naming ``image_name``.
    root_dir
        Private directory of this machine on the host; the machine owns everything below.
    ssh_port
        TCP port of the SSH server on every address of the machine.
    host_keys
        OpenSSH private host keys (PEM/OpenSSH text).  Empty: the machine generates one.
    users
        Login users.  ``root`` is present unless cloud-init said ``disable_root``; its
        authorized keys come from the create request's ``ssh_keys``.
    tag
        Environment tag (``<emulator-id>/<server-id>``) put into every process the
        machine starts, so that every such process can be found and ended.
    os_image
        The system image the server's disk descends from (``debian-12``, or the
        emulator's image); snapshots name their source's.
    user_data
        The create request's ``user_data``, unchanged (real cloud-init reads it).
    root_keys
        Public keys of the create request's ``ssh_keys``.
    layers
        Disk layers of the snapshot the server was made from, lowest first.
    """

    server_id: int
    name: str
    image_name: str
    executes: bool
    root_dir: Path
    ssh_port: int
    host_keys: list[str]
    users: list[LoginUser]
    tag: str
    os_image: str = ""
    user_data: str | None = None
    root_keys: list[str] = dataclasses.field(default_factory=list)
    layers: tuple[Path, ...] = ()


class MachineEvent:
    """Events a machine reports to the API layer (through ``on_event``)."""

    SHUTDOWN_COMPLETE = "shutdown_complete"  # guest powered itself off (ACPI shutdown)


class MachineInterface:
    """The methods the API layer calls.  All are coroutines and idempotent."""

    spec: MachineSpec
    on_event: Callable[[str], None] | None

    async def boot(self, public_ip: str, private_ips: list[str]) -> None:
        """Power on: start listening for SSH on every address, then start enabled services.

        Returns once SSH accepts connections on all addresses.  Raises ``OSError`` if an
        address cannot be bound.
        """
        raise NotImplementedError

    async def halt(self) -> None:
        """Power off (hard): every process dies, SSH closes.  Files stay."""
        raise NotImplementedError

    async def shutdown(self) -> None:
        """ACPI shutdown: services get SIGTERM with a short grace, then as ``halt``.

        Reports ``MachineEvent.SHUTDOWN_COMPLETE`` when off.
        """
        raise NotImplementedError

    async def add_address(self, ip: str) -> None:
        """A private IP was attached while running: listen on it too."""
        raise NotImplementedError

    async def remove_address(self, ip: str) -> None:
        """A private IP was detached: stop listening on it."""
        raise NotImplementedError

    def refuse_ssh(self, seconds: float) -> None:
        """Fault injection: refuse new SSH connections for ``seconds`` (time-scaled by caller)."""
        raise NotImplementedError

    async def destroy(self) -> None:
        """Server deleted: ``halt`` and remove ``root_dir``."""
        raise NotImplementedError

    async def snapshot(self, target: Path) -> tuple[Path, ...]:
        """Copy the machine's disk below ``target``; return the new image's layers.

        Servers created from the image get these layers as ``MachineSpec.layers``.
        An empty tuple: the machine has nothing to keep (it runs nothing).
        """
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError
