"""Snapshot images of a node environment: their key, labels, and finding them.

A snapshot of a bootstrapped environment is found by its labels alone: the key (a hash of
the bootstrap profile and its version, the base image, the architecture, the Python
version, the exact package set, and whether it holds an autonomous cluster's controller
dependencies) and readable labels next to it (docs/snapshots.md).
Snapshots carry no cluster label: they belong to no cluster, so ``destroy`` and ``nuke``
leave them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scherbelberg_dask.bootstrap.environment import NodeEnvironment
    from scherbelberg_dask.cloud.client import CloudClient

#: Label key marking our snapshots (value :data:`KIND`).
SNAPSHOT = "scherbelberg/snapshot"
KIND = "node-environment"
#: Label key holding the environment key.
KEY = "scherbelberg/environment"
#: Label key (value ``true``) of a snapshot with an autonomous cluster's controller
#: dependencies; snapshots without them do not carry it.
CONTROLLER = "scherbelberg/controller"
#: Label key naming the cluster whose builder made the snapshot (not a cluster label:
#: ``destroy`` and ``nuke`` leave the snapshot unless ``nuke --images`` asks).
MADE_BY = "scherbelberg/made-by"
#: Label key marking a snapshot that must not be used again; its value says why
#: (one of :data:`UNUSABLE_REASONS`).
UNUSABLE = "scherbelberg/unusable"
#: Why a snapshot was found unusable: a server made from it did not boot, or SSH never
#: answered with its pinned host key (while one of the base image did), or the setup
#: script found its environment wrong.
UNUSABLE_REASONS = (
    "boot-failed",
    "ssh-failed",
    "environment-differs",
    "no-environment-marker",
    "venv-broken",
)
#: Bumped when what a snapshot holds changes in a way the environment digest misses.
FORMAT_VERSION = "1"
#: Snapshot descriptions start with this (``profile_for_image`` knows it).
DESCRIPTION_PREFIX = "scherbelberg-node-"

_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def label_value_ok(value: str) -> bool:
    """True if ``value`` keeps Hetzner's label value rules (≤ 63, alphanumeric ends)."""
    return bool(_LABEL_VALUE.match(value))


@dataclasses.dataclass(frozen=True)
class SnapshotKey:
    """What identifies a node environment, and the labels its snapshot carries."""

    key: str
    labels: dict[str, str]
    description: str

    @property
    def selector(self) -> str:
        """The label selector of this environment's snapshots."""
        return f"{SNAPSHOT}={KIND},{KEY}={self.key}"


def snapshot_key(
    *,
    profile: str,
    digest: str,
    environment: NodeEnvironment,
    base_image: str,
    architecture: str,
) -> SnapshotKey:
    """The key of an environment on ``base_image`` and ``architecture``.

    ``digest`` identifies what the profile installs (the package set, the Python version,
    the setup script's environment part).  An environment with the controller's
    dependencies (``environment.controller``) is another key; without them the key is
    the same as before the controller existed, so older snapshots stay valid.
    """
    parts: dict[str, object] = {
        "profile": profile,
        "version": FORMAT_VERSION,
        "digest": digest,
        "base_image": base_image,
        "architecture": architecture,
        "python": environment.python,
        "packages": sorted(environment.requirements),
    }
    if environment.controller:
        parts["controller"] = True
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
    readable = {
        "scherbelberg/profile": profile,
        "scherbelberg/profile-version": FORMAT_VERSION,
        "scherbelberg/base-image": base_image,
        "scherbelberg/architecture": architecture,
        "scherbelberg/python": environment.python,
        "scherbelberg/packages": digest,
        "scherbelberg/extra-packages": str(len(environment.extra)),
        **{
            f"scherbelberg/{name}": environment.pinned.get(name, "")
            for name in ("dask", "distributed")
        },
    }
    labels = {SNAPSHOT: KIND, KEY: key}
    labels.update({k: v for k, v in readable.items() if v and label_value_ok(v)})
    if environment.controller:
        labels[CONTROLLER] = "true"
    extras = "".join(f" +{extra}" for extra in environment.extra)
    if environment.controller:
        extras += " +controller"
    description = (
        f"{DESCRIPTION_PREFIX}{key[:12]} {base_image} {architecture} "
        f"python {environment.python} dask {environment.pinned.get('dask', '?')}{extras}"
    )
    return SnapshotKey(key=key, labels=labels, description=description[:250])


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One of our snapshots, as the API reports it."""

    id: int
    description: str
    status: str
    created: datetime
    #: GB the snapshot occupies (what Hetzner bills), None while it is being made.
    image_size: float | None
    #: GB of the disk it was made from: servers made from it need at least as much.
    disk_size: float
    architecture: str
    labels: dict[str, str]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Snapshot:
        size = data.get("image_size")
        return cls(
            id=int(data["id"]),
            description=str(data.get("description") or ""),
            status=str(data.get("status", "")),
            created=datetime.fromisoformat(str(data["created"]).replace("Z", "+00:00")),
            image_size=None if size is None else float(size),
            disk_size=float(data.get("disk_size") or 0),
            architecture=str(data.get("architecture", "")),
            labels=dict(data.get("labels") or {}),
        )

    @property
    def key(self) -> str:
        """Its environment key."""
        return self.labels.get(KEY, "")

    @property
    def unusable(self) -> str | None:
        """Why it must not be used (its :data:`UNUSABLE` label), or None."""
        return self.labels.get(UNUSABLE) or None


def environment_reason(why: str) -> str:
    """The :data:`UNUSABLE` label value for the setup script's reason.

    ``why`` is what the script printed in ``== snapshot not usable (<why>)``: ``no
    environment marker``, ``environment <digest> differs from <digest>`` or ``its venv is
    broken``.  Anything else counts as a different environment.
    """
    text = why.strip().lower()
    if text == "no environment marker":
        return "no-environment-marker"
    if "venv" in text:
        return "venv-broken"
    return "environment-differs"


def usable(snapshots: list[Snapshot], *, disk_gb: float) -> list[Snapshot]:
    """The snapshots a server with a disk of ``disk_gb`` may boot from, in the same order.

    Available, fitting the disk, and not labelled :data:`UNUSABLE`.
    """
    return [
        s
        for s in snapshots
        if s.status == "available" and s.disk_size <= disk_gb and s.unusable is None
    ]


async def list_snapshots(cloud: CloudClient, selector: str | None = None) -> list[Snapshot]:
    """Our snapshots (all, or those matching ``selector``), newest first."""
    found = await cloud.get_all(
        "/images",
        "images",
        {"type": "snapshot", "label_selector": selector or f"{SNAPSHOT}={KIND}"},
    )
    snapshots = [Snapshot.from_api(item) for item in found]
    return sorted(snapshots, key=lambda s: (s.created, s.id), reverse=True)


async def newest_snapshot(
    cloud: CloudClient, key: SnapshotKey, *, disk_gb: float
) -> Snapshot | None:
    """The newest usable snapshot of ``key`` that fits a disk of ``disk_gb`` (see
    :func:`usable`)."""
    found = usable(await list_snapshots(cloud, key.selector), disk_gb=disk_gb)
    return found[0] if found else None


async def mark_unusable(cloud: CloudClient, image_id: int, reason: str) -> dict[str, str]:
    """Label snapshot ``image_id`` :data:`UNUSABLE` with ``reason``; return its labels.

    Its other labels are kept (read, merged, written back: the API replaces labels
    whole).
    """
    if reason not in UNUSABLE_REASONS:
        raise ValueError(f"unknown reason {reason!r}; known: {', '.join(UNUSABLE_REASONS)}")
    body = await cloud.request("GET", f"/images/{image_id}")
    labels = {**(body["image"].get("labels") or {}), UNUSABLE: reason}
    await cloud.request("PUT", f"/images/{image_id}", json={"labels": labels})
    return labels


async def image_price_per_gb_month(cloud: CloudClient) -> float | None:
    """The net price of a GB of snapshot per month (``/pricing``), or None if unknown."""
    body = await cloud.request("GET", "/pricing")
    try:
        return float(body["pricing"]["image"]["price_per_gb_month"]["net"])
    except (KeyError, TypeError, ValueError):
        return None
