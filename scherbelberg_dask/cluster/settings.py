"""A cluster's settings: arguments over Dask config defaults, validated before any I/O.

:class:`ClusterSettings` is the single source of truth of what shapes a cluster: the
cluster, its provisioner and its process interfaces read it, nothing reads those keys
from the config again, and the creator stores it whole (:meth:`~ClusterSettings.remembered`)
so that ``from_existing`` in another process rebuilds the same cluster
(docs/design.md, "Settings").
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import json
import math
from collections.abc import Mapping
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from scherbelberg_dask import config
from scherbelberg_dask.cloud.labels import validate_prefix
from scherbelberg_dask.cloud.successors import POLICIES
from scherbelberg_dask.cluster.cloudprovider_compat import configured
from scherbelberg_dask.errors import SettingsError


@dataclasses.dataclass(frozen=True)
class Ports:
    """Dask ports on every node (the seed's defaults: 9753, 9756, 9759)."""

    scheduler: int
    dashboard: int
    nanny: int


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Bounded waits, in seconds (docs/design.md, "Failure")."""

    server: float
    ssh: float
    bootstrap: float
    dask: float
    delete: float


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """Everything that shapes a cluster, resolved and validated."""

    prefix: str
    workers: int
    scheduler_type: str
    worker_type: str
    image: str
    location: str
    #: ``successor`` or ``error``: what a retired server type does (see cloud.successors).
    retired_types: str
    ssh_port: int
    ports: Ports
    network_ip_range: str
    allowed_cidrs: tuple[str, ...]
    packages: tuple[str, ...]
    env_vars: dict[str, str]
    worker_options: dict[str, Any]
    scheduler_options: dict[str, Any]
    timeouts: Timeouts
    state_dir: str | None
    #: How often in a row a new server is tried for a node whose server failed to come up.
    boot_retries: int = 2
    #: Whether a controller on the scheduler node adapts and deletes the cluster
    #: (docs/autonomous.md).  Keeps the API token on the scheduler node.
    autonomous: bool = False
    #: Seconds without work and without clients after which the controller deletes the
    #: cluster (``None``: never).
    idle_timeout: float | None = None
    #: Seconds after the cluster's creation at which the controller deletes it, busy or
    #: not (``None``: no limit).
    max_lifetime: float | None = None
    #: Snapshot the node environment, and boot later nodes from it (docs/snapshots.md).
    snapshot: bool = True
    #: Seconds ``close`` waits for a snapshot under way before it stops it (``None``: it
    #: stops it at once).
    snapshot_close_wait: float | None = 600.0

    #: Settings of one process's handle, not of the cluster: not remembered.
    LOCAL = ("workers", "state_dir", "timeouts", "snapshot_close_wait")

    def remembered(self) -> dict[str, Any]:
        """The settings as plain data, for the local state; ``resolve(**them)`` reads them.

        Everything but :attr:`LOCAL` (how many workers this handle started with, where it
        keeps its state, how long it waits), so that a process attaching with
        ``from_existing`` builds the same workers as the creator.
        """
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if field.name in self.LOCAL:
                continue
            value = getattr(self, field.name)
            if field.name == "ports":
                data.update({f"{name}_port": port for name, port in vars(value).items()})
                continue
            data[field.name] = list(value) if isinstance(value, tuple) else value
        return json.loads(json.dumps(data))

    @classmethod
    def argument_names(cls) -> frozenset[str]:
        """The keywords :meth:`resolve` takes: ``HetznerCluster``'s settings keywords."""
        names = {f.name for f in dataclasses.fields(cls)} - {"ports"}
        return frozenset(names | {"scheduler_port", "dashboard_port", "nanny_port"})

    @classmethod
    def resolve(cls, **arguments: Any) -> ClusterSettings:
        """Settings from ``arguments``; ``None`` or missing ones come from Dask config.

        Raises
        ------
        SettingsError
            A setting is invalid; the message says which and how to fix it.
        """

        def pick(name: str) -> Any:
            value = arguments.pop(name, None)
            return configured(name) if value is None else value

        prefix = validate_prefix(pick("prefix"))
        workers = pick("workers")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise SettingsError(
                f"workers must be a whole number ≥ 0 (0 means: adapt up from nothing), "
                f"not {workers!r}"
            )
        ports_in = {**config.get("ports"), **_mapping("ports", arguments.pop("ports", None))}
        for name in ("scheduler", "dashboard", "nanny"):
            override = arguments.pop(f"{name}_port", None)
            if override is not None:
                ports_in[name] = override
        ports = Ports(**{k: _port(f"{k} port", v) for k, v in ports_in.items()})
        if len({ports.scheduler, ports.dashboard, ports.nanny}) != 3:
            raise SettingsError(
                f"the scheduler ({ports.scheduler}), dashboard ({ports.dashboard}) and nanny "
                f"({ports.nanny}) ports clash: give each its own port"
            )
        ssh_port = _port("ssh_port", pick("ssh_port"))
        if ssh_port in (ports.scheduler, ports.dashboard, ports.nanny):
            raise SettingsError(f"ssh_port {ssh_port} clashes with a Dask port; choose another")
        timeouts_in = {
            **config.get("timeouts"),
            **_mapping("timeouts", arguments.pop("timeouts", None)),
        }
        unknown = set(timeouts_in) - {f.name for f in dataclasses.fields(Timeouts)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(Timeouts))
            raise SettingsError(f"unknown timeouts: {', '.join(sorted(unknown))}; known: {known}")
        timeouts = Timeouts(**{k: _positive(f"timeouts.{k}", v) for k, v in timeouts_in.items()})
        settings = cls(
            prefix=prefix,
            workers=workers,
            scheduler_type=_name("scheduler_type", pick("scheduler_type")),
            worker_type=_name("worker_type", pick("worker_type")),
            image=_name("image", pick("image")),
            location=_name("location", pick("location")),
            retired_types=_policy(pick("retired_types")),
            ssh_port=ssh_port,
            ports=ports,
            network_ip_range=_network(arguments.pop("network_ip_range", None)),
            allowed_cidrs=_cidrs(pick("allowed_cidrs")),
            packages=_requirements(pick("packages")),
            env_vars=_env(pick("env_vars")),
            worker_options=_options("worker_options", pick("worker_options")),
            scheduler_options=_options("scheduler_options", pick("scheduler_options")),
            timeouts=timeouts,
            state_dir=pick("state_dir"),
            boot_retries=_count("boot_retries", pick("boot_retries")),
            autonomous=_flag("autonomous", pick("autonomous")),
            idle_timeout=duration("idle_timeout", pick("idle_timeout")),
            max_lifetime=duration("max_lifetime", pick("max_lifetime")),
            snapshot=_flag("snapshot", pick("snapshot")),
            snapshot_close_wait=duration("snapshot_close_wait", pick("snapshot_close_wait")),
        )
        if arguments:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(
                f"unknown cluster settings: {', '.join(sorted(arguments))}; known: {known}"
            )
        return settings


def _port(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SettingsError(f"{name} must be a TCP port number from 1 to 65535, not {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{name} must be true or false, not {value!r}")
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(f"{name} must be a whole number ≥ 0, not {value!r}")
    return value


def duration(name: str, value: Any) -> float | None:
    """A time span (``"30m"``, ``"2h"``, seconds) as seconds; ``None``/``0``/"off": none.

    Raises
    ------
    SettingsError
        Not a time span Dask's ``parse_timedelta`` reads, or negative.
    """
    from dask.utils import parse_timedelta

    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "never", ""):
        return None
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (TypeError, ValueError, KeyError):
        seconds = None
    if isinstance(value, bool) or seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise SettingsError(
            f"{name} must be a time span such as '30m', '2h' or a number of seconds "
            f"('off' or null for none), not {value!r}"
        )
    return float(seconds) or None


def _positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SettingsError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{name} must be a non-empty string, not {value!r}")
    return value.strip()


def _policy(value: Any) -> str:
    if value not in POLICIES:
        raise SettingsError(
            f"retired_types must be 'successor' (use the successor of a retired server type, "
            f"with a warning) or 'error' (fail before creating anything), not {value!r}"
        )
    return str(value)


def _network(value: Any) -> str:
    value = value or config.get("network.ip-range")
    try:
        network = ipaddress.ip_network(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"network ip range {value!r} is not a network in CIDR notation (e.g. 10.0.0.0/16)"
        ) from None
    if network.version != 4 or network.prefixlen > 24:
        raise SettingsError(f"network ip range {value!r} must be an IPv4 network of /24 or larger")
    return str(network)


def _cidrs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise SettingsError(
            "allowed_cidrs must be a non-empty list of networks in CIDR notation, "
            f"e.g. ['203.0.113.0/24'], not {value!r}"
        )
    cidrs = []
    for item in value:
        try:
            cidrs.append(str(ipaddress.ip_network(item)))
        except (TypeError, ValueError):
            raise SettingsError(
                f"allowed_cidrs entry {item!r} is not a network in CIDR notation with no host "
                "bits set (e.g. 203.0.113.0/24, 0.0.0.0/0, ::/0)"
            ) from None
    return tuple(cidrs)


def _requirements(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        # One requirement ("zarr >= 2.18", "pkg @ https://..."), else several by spaces.
        value = [value] if _is_requirement(value) else value.split()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"packages must be a list of pip requirements, not {value!r}")
    for item in value:
        if not _is_requirement(item):
            raise SettingsError(
                f"packages entry {item!r} is not a pip requirement (e.g. 'xarray', "
                "'zarr>=2.18', 'pandas[parquet]', 'name @ https://host/name.whl')"
            )
    return tuple(value)


def _is_requirement(text: str) -> bool:
    try:
        Requirement(text)
    except InvalidRequirement:
        return False
    return True


def _env(value: Any) -> dict[str, str]:
    mapping = _mapping("env_vars", value)
    for key, item in mapping.items():
        if not isinstance(key, str) or not key.isidentifier() or not key.isascii():
            raise SettingsError(
                f"env_vars key {key!r} is not an environment variable name: use letters, "
                "digits and '_', not starting with a digit"
            )
        if not isinstance(item, (str, int, float)) or isinstance(item, bool) or "\0" in str(item):
            raise SettingsError(
                f"env_vars[{key!r}] must be a string (without NUL) or a number, not {item!r}"
            )
    return {k: str(v) for k, v in mapping.items()}


#: Options the cluster sets itself on every scheduler and worker.
_RESERVED_OPTIONS = frozenset(
    {
        "host", "port", "worker_port", "protocol", "security", "name", "env",
        "dashboard_address", "listen_address", "contact_address", "interface",
        "scheduler_ip", "scheduler_port", "scheduler_file",
    }
)  # fmt: skip


def _options(name: str, value: Any) -> dict[str, Any]:
    """Keyword arguments for ``Scheduler`` or ``Nanny``/``Worker`` on the nodes."""
    from distributed import Nanny, Scheduler, Worker
    from distributed.core import Server

    options = _mapping(name, value)
    # Scheduler and Worker pass what they do not take themselves on to Server.
    targets = (Scheduler, Server) if name == "scheduler_options" else (Nanny, Worker, Server)
    accepted = {
        parameter.name
        for target in targets
        for parameter in inspect.signature(target).parameters.values()
        if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }
    for key, item in options.items():
        if key == "env":
            raise SettingsError(f"{name}['env'] is set by the cluster: use env_vars instead")
        if key in _RESERVED_OPTIONS:
            raise SettingsError(f"{name}[{key!r}] is set by the cluster itself; leave it out")
        if key not in accepted:
            raise SettingsError(
                f"{name} key {key!r} is not a parameter of "
                f"{' or '.join(t.__name__ for t in targets[:-1])}"
            )
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            raise SettingsError(
                f"{name}[{key!r}] must be plain data (it is sent to the nodes as JSON), "
                f"not {type(item).__name__}"
            ) from None
    threads = options.get("nthreads") or 1  # None or 0: Dask's default
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SettingsError(f"{name}['nthreads'] must be a whole number ≥ 1, not {threads!r}")
    return options


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(f"{name} must be a mapping, not {value!r}")
    return dict(value)
