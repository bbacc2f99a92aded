"""The emulated project's resources (one project per emulator) and its actions.

Plain records; the API modules validate requests and change them, and
``api/render.py`` turns them into JSON.  Everything here lives on the emulator's event
loop thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .machine.interface import MachineInterface
from .offerings import Location, ServerType, SystemImage

logger = logging.getLogger(__name__)

__all__ = [
    "Action",
    "Firewall",
    "FirewallTarget",
    "Image",
    "Network",
    "PlacementGroup",
    "PrivateNet",
    "Route",
    "SSHKey",
    "Server",
    "Store",
    "Subnet",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time in UTC, second precision (as the API reports it)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 text of a timestamp (``None`` stays ``None``)."""
    return None if moment is None else moment.isoformat()


@dataclasses.dataclass
class Action:
    """An asynchronous operation with progress.

    ``expected`` is the planned duration in seconds: while running, ``progress`` is
    derived from the elapsed time (capped at 99).
    """

    id: int
    command: str
    resources: list[tuple[int, str]]
    expected: float = 0.0
    status: str = "running"
    started: datetime = dataclasses.field(default_factory=utcnow)
    finished: datetime | None = None
    error: tuple[str, str] | None = None
    _t0: float = dataclasses.field(default_factory=time.monotonic)
    _final_progress: int = 0

    @property
    def progress(self) -> int:
        """Progress in percent."""
        if self.status != "running":
            return self._final_progress
        if self.expected <= 0:
            return 0
        return min(99, int(100 * (time.monotonic() - self._t0) / self.expected))

    @property
    def running(self) -> bool:
        """True while the action has not finished."""
        return self.status == "running"

    def succeed(self) -> None:
        """Finish successfully (no-op if already finished)."""
        if self.running:
            self._final_progress = 100
            self.status = "success"
            self.finished = utcnow()

    def fail(self, code: str, message: str) -> None:
        """Finish with an error (no-op if already finished)."""
        if self.running:
            self._final_progress = self.progress
            self.status = "error"
            self.error = (code, message)
            self.finished = utcnow()

    def concerns(self, kind: str, resource_id: int | None = None) -> bool:
        """True if the action names a resource of ``kind`` (and ``resource_id``)."""
        return any(
            rtype == kind and (resource_id is None or rid == resource_id)
            for rid, rtype in self.resources
        )


@dataclasses.dataclass
class PrivateNet:
    """A server's attachment to a network."""

    network_id: int
    ip: str
    alias_ips: list[str]
    mac_address: str


@dataclasses.dataclass
class Server:
    """A server: the cloud's view plus the emulated machine behind it."""

    id: int
    name: str
    created: datetime
    server_type: ServerType
    location: Location
    image: Image | None
    labels: dict[str, str]
    status: str
    public_ipv4: str | None
    ipv4_id: int | None
    public_ipv6: str | None
    ipv6_id: int | None
    placement_group_id: int | None = None
    private_net: list[PrivateNet] = dataclasses.field(default_factory=list)
    protection_delete: bool = False
    protection_rebuild: bool = False
    machine: MachineInterface | None = None
    #: The exclusive action running on the server (423 ``locked`` for others).
    busy: Action | None = None
    #: The task carrying out ``busy``.
    task: asyncio.Task[Any] | None = None
    #: Background tasks: SSH coming up, guest shutdown, scheduled crashes.
    boot_task: asyncio.Task[Any] | None = None
    guest_task: asyncio.Task[Any] | None = None
    crash_tasks: set[asyncio.Task[Any]] = dataclasses.field(default_factory=set)
    #: Addresses the machine currently listens on (None: machine down).
    machine_ips: set[str] | None = None
    #: Last machine failure (bind errors etc.), for introspection.
    machine_error: str | None = None
    #: True after an injected boot failure: the server never comes up.
    broken: bool = False

    def private_ips(self) -> list[str]:
        """Every private address (primary and alias) of every attachment."""
        return [ip for net in self.private_net for ip in (net.ip, *net.alias_ips)]


@dataclasses.dataclass
class Subnet:
    """A subnet of a network."""

    type: str
    ip_range: ipaddress.IPv4Network
    network_zone: str
    vswitch_id: int | None = None


@dataclasses.dataclass
class Route:
    """A static route of a network."""

    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


@dataclasses.dataclass
class Network:
    """A private network."""

    id: int
    name: str
    ip_range: ipaddress.IPv4Network
    labels: dict[str, str]
    created: datetime
    subnets: list[Subnet] = dataclasses.field(default_factory=list)
    routes: list[Route] = dataclasses.field(default_factory=list)
    expose_routes_to_vswitch: bool = False
    protection_delete: bool = False
    #: The last change (subnets, routes, range); while it runs, others get ``conflict``.
    change: Action | None = None

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The network's private gateway: the first address of its range."""
        return self.ip_range.network_address + 1


@dataclasses.dataclass(frozen=True)
class FirewallTarget:
    """What a firewall applies to: one server, or every server matching a selector."""

    type: str  # "server" or "label_selector"
    server_id: int | None = None
    selector: str | None = None


@dataclasses.dataclass
class Firewall:
    """A firewall (rules are kept in their canonical JSON form)."""

    id: int
    name: str
    labels: dict[str, str]
    created: datetime
    rules: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    applied_to: list[FirewallTarget] = dataclasses.field(default_factory=list)
    #: Servers whose application is still ``pending`` (an action is running).
    pending: set[int] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class SSHKey:
    """An SSH public key of the project."""

    id: int
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str]
    created: datetime


@dataclasses.dataclass
class PlacementGroup:
    """A spread placement group."""

    id: int
    name: str
    type: str
    labels: dict[str, str]
    created: datetime


@dataclasses.dataclass
class Image:
    """An image: a system image of the catalog or a snapshot/backup of a server."""

    id: int
    type: str
    status: str
    name: str | None
    description: str
    architecture: str
    created: str
    os_flavor: str
    os_version: str | None
    disk_size: float
    image_size: float | None = None
    created_from: tuple[int, str] | None = None
    bound_to: int | None = None
    rapid_deploy: bool = False
    protection_delete: bool = False
    deprecated: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Servers made from this image run commands (emulator image and its snapshots).
    executes: bool = False
    #: Name of the image family for machines (snapshots: the source's image name).
    origin_name: str = ""
    #: Disk layers of a snapshot, lowest first (copies of the source machine's disk).
    layers: tuple[Path, ...] = ()

    @classmethod
    def from_system(cls, spec: SystemImage) -> Image:
        """A store image for a catalog system image."""
        return cls(
            id=spec.id,
            type="system",
            status="available",
            name=spec.name,
            description=spec.description,
            architecture=spec.architecture,
            created=spec.created,
            os_flavor=spec.os_flavor,
            os_version=spec.os_version,
            disk_size=5.0,
            rapid_deploy=True,
            deprecated=spec.deprecated,
            executes=spec.executes,
            origin_name=spec.name,
        )


class Store:
    """All resources of the emulated project, and the id counters."""

    def __init__(self, system_images: list[SystemImage]) -> None:
        self.servers: dict[int, Server] = {}
        self.networks: dict[int, Network] = {}
        self.firewalls: dict[int, Firewall] = {}
        self.ssh_keys: dict[int, SSHKey] = {}
        self.placement_groups: dict[int, PlacementGroup] = {}
        self.images: dict[int, Image] = {spec.id: Image.from_system(spec) for spec in system_images}
        self.actions: dict[int, Action] = {}
        self._next_id = 10_000
        self._next_action_id = 1
        self._next_mac = 0

    def new_id(self) -> int:
        """A fresh resource id (one counter for all kinds, so ids never repeat)."""
        self._next_id += 1
        return self._next_id

    def new_mac(self) -> str:
        """A fresh MAC address for a private network interface."""
        self._next_mac += 1
        n = self._next_mac
        return f"86:00:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"

    def new_action(
        self, command: str, resources: list[tuple[int, str]], expected: float = 0.0
    ) -> Action:
        """Register a running action."""
        action = Action(
            id=self._next_action_id, command=command, resources=resources, expected=expected
        )
        self._next_action_id += 1
        self.actions[action.id] = action
        return action

    def servers_in_network(self, network_id: int) -> Iterator[Server]:
        """Servers attached to a network."""
        for server in self.servers.values():
            if any(net.network_id == network_id for net in server.private_net):
                yield server

    def servers_in_group(self, group_id: int) -> list[int]:
        """Ids of the servers in a placement group."""
        return sorted(
            server.id for server in self.servers.values() if server.placement_group_id == group_id
        )
