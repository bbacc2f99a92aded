"""The live catalog: server types, images and locations, and validation against it.

Choices are validated before anything is created (docs/design.md, "Cloud"); an error
names the valid choices, nearest first, so a typo costs one line of reading, not a
half-made cluster.  Retired server types and their successors:
:mod:`scherbelberg_dask.cloud.successors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from datetime import datetime, timezone
from typing import Any

from scherbelberg_dask.cloud.errors import CatalogError


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclasses.dataclass(frozen=True)
class Price:
    """Prices of a server type in one location (decimal strings turned to floats, EUR)."""

    location: str
    hourly_net: float
    hourly_gross: float
    monthly_net: float
    monthly_gross: float


@dataclasses.dataclass(frozen=True)
class ServerType:
    """A server type with its resources and where it can be ordered."""

    name: str
    description: str
    cores: int
    memory_gb: float
    disk_gb: int
    cpu_type: str
    architecture: str
    prices: dict[str, Price]
    #: Location name → ``None`` if orderable there, else the reason it is not.
    unavailable: dict[str, str | None]

    @classmethod
    def from_api(cls, data: dict[str, Any], now: datetime) -> ServerType:
        prices = {
            p["location"]: Price(
                location=p["location"],
                hourly_net=float(p["price_hourly"]["net"]),
                hourly_gross=float(p["price_hourly"]["gross"]),
                monthly_net=float(p["price_monthly"]["net"]),
                monthly_gross=float(p["price_monthly"]["gross"]),
            )
            for p in data.get("prices", [])
        }
        unavailable: dict[str, str | None] = {}
        entries = data.get("locations") or [{"name": name} for name in prices]
        for entry in entries:
            reason = None
            deprecation = entry.get("deprecation") or data.get("deprecation")
            until = _parse_time((deprecation or {}).get("unavailable_after"))
            if until is not None and until <= now:
                reason = f"retired (unavailable since {until.date().isoformat()})"
            elif entry.get("available") is False:
                reason = "not available there right now"
            unavailable[entry["name"]] = reason
        return cls(
            name=data["name"],
            description=data.get("description") or data["name"],
            cores=int(data["cores"]),
            memory_gb=float(data["memory"]),
            disk_gb=int(data["disk"]),
            cpu_type=data.get("cpu_type", "shared"),
            architecture=data.get("architecture", "x86"),
            prices=prices,
            unavailable=unavailable,
        )

    def orderable_in(self, location: str) -> bool:
        """True if new servers of this type can be created in ``location``."""
        return location in self.unavailable and self.unavailable[location] is None

    def summary(self) -> str:
        """``ccx53 (32 cores, 128 GB)``: the name with what it brings."""
        cores = "1 core" if self.cores == 1 else f"{self.cores} cores"
        return f"{self.name} ({cores}, {self.memory_gb:g} GB)"

    def distance(self, other: ServerType) -> float:
        """How far ``other``'s cores and memory are from this type's (ratios, in octaves)."""
        return abs(math.log2(max(other.cores, 1) / max(self.cores, 1))) + abs(
            math.log2(max(other.memory_gb, 0.5) / max(self.memory_gb, 0.5))
        )


@dataclasses.dataclass(frozen=True)
class Location:
    name: str
    description: str
    network_zone: str


@dataclasses.dataclass(frozen=True)
class Image:
    id: int
    name: str | None
    description: str
    architecture: str
    type: str
    #: When the image was (or will be) deprecated; ``None`` if it is current.
    deprecated: datetime | None = None
    os_flavor: str = "unknown"
    created: datetime | None = None

    def deprecated_at(self, now: datetime) -> bool:
        """True if the image is deprecated at ``now`` (no longer to be used for servers)."""
        return self.deprecated is not None and self.deprecated <= now


#: ``ubuntu-20.04`` → ``ubuntu``, ``centos-stream-9`` → ``centos-stream``.
_IMAGE_FAMILY = re.compile(r"^(?P<family>[a-z][a-z-]*?)-\d[\w.]*$")


def image_family(name: str) -> str | None:
    """The family of a system image name (its name without the version), if it has one."""
    match = _IMAGE_FAMILY.match(name)
    return match.group("family") if match else None


@dataclasses.dataclass(frozen=True)
class Catalog:
    """What can be ordered, as the API reported it."""

    server_types: dict[str, ServerType]
    locations: dict[str, Location]
    images: list[Image]
    #: When the catalog was read (deprecations are judged against it).
    fetched: datetime = dataclasses.field(default_factory=lambda: datetime.now(timezone.utc))

    @classmethod
    def from_api(
        cls,
        server_types: list[dict[str, Any]],
        locations: list[dict[str, Any]],
        images: list[dict[str, Any]],
    ) -> Catalog:
        now = datetime.now(timezone.utc)
        return cls(
            server_types={t["name"]: ServerType.from_api(t, now) for t in server_types},
            locations={
                loc["name"]: Location(loc["name"], loc.get("description", ""), loc["network_zone"])
                for loc in locations
            },
            images=[
                Image(
                    id=int(i["id"]),
                    name=i.get("name"),
                    description=i.get("description") or "",
                    architecture=i.get("architecture", "x86"),
                    type=i.get("type", "system"),
                    deprecated=_parse_time(i.get("deprecated")),
                    os_flavor=i.get("os_flavor") or "unknown",
                    created=_parse_time(i.get("created")),
                )
                for i in images
            ],
            fetched=now,
        )

    def location(self, name: str) -> Location:
        """The location called ``name``, or :class:`CatalogError` listing the valid ones."""
        try:
            return self.locations[name]
        except KeyError:
            raise CatalogError(
                f"unknown location {name!r}; valid locations: {', '.join(sorted(self.locations))}"
            ) from None

    def orderable(self, location: str) -> list[ServerType]:
        """The server types that can be ordered in ``location``, by name."""
        return sorted(
            (t for t in self.server_types.values() if t.orderable_in(location)),
            key=lambda t: t.name,
        )

    def nearest(self, name: str, location: str, count: int = 3) -> list[ServerType]:
        """Orderable types in ``location`` closest to type ``name``.

        A known type's nearest are those of its architecture closest in cores and memory
        (then the cheapest); an unknown name's are the most similar names.
        """
        orderable = self.orderable(location)
        wanted = self.server_types.get(name)
        if wanted is None:
            names = difflib.get_close_matches(name, [t.name for t in orderable], count, 0.5)
            return [self.server_types[n] for n in names]

        def key(t: ServerType) -> tuple[bool, float, float, str]:
            price = t.prices.get(location)
            return (
                t.architecture != wanted.architecture,
                wanted.distance(t),
                price.hourly_net if price else math.inf,
                t.name,
            )

        return sorted(orderable, key=key)[:count]

    def choices(self, name: str, location: str) -> str:
        """``nearest: ...; valid server types in <location>: ...`` for error messages."""
        nearest = self.nearest(name, location)
        valid = ", ".join(t.name for t in self.orderable(location)) or "none"
        first = f"nearest: {', '.join(t.summary() for t in nearest)}; " if nearest else ""
        return f"{first}valid server types in {location}: {valid}"

    def why_not_orderable(self, name: str, location: str) -> str | None:
        """Why type ``name`` cannot be ordered in ``location`` (``None``: it can)."""
        server_type = self.server_types.get(name)
        if server_type is None:
            return "unknown"
        if location not in server_type.unavailable:
            return f"not offered in {location}"
        reason = server_type.unavailable[location]
        return None if reason is None else f"{reason} in {location}"

    def server_type(self, name: str, location: str) -> ServerType:
        """The server type ``name`` if it can be ordered in ``location``, else CatalogError.

        The error names the nearest orderable types first, then all valid ones.
        """
        self.location(location)
        reason = self.why_not_orderable(name, location)
        if reason is None:
            return self.server_types[name]
        choices = self.choices(name, location)
        if reason == "unknown":
            raise CatalogError(f"unknown server type {name!r}; {choices}")
        raise CatalogError(f"server type {name!r} is {reason}; {choices}")

    def image(self, name_or_id: str | int, architecture: str) -> Image:
        """The image for ``architecture`` by name, ID or snapshot description, else CatalogError.

        A deprecated image, or a name of an image family whose version is gone, fails
        with the name of the family's current image.
        """
        key = str(name_or_id)
        for image in self.images:
            if image.architecture == architecture and key in (
                str(image.id),
                image.name,
                image.description if image.type == "snapshot" else None,
            ):
                if image.deprecated_at(self.fetched):
                    assert image.deprecated is not None
                    raise CatalogError(
                        f"image {key!r} is deprecated (since "
                        f"{image.deprecated.date().isoformat()}): "
                        f"{self._current_of_family(image.name or key, architecture)}"
                    )
                return image
        current = [
            i
            for i in self.images
            if i.architecture == architecture and not i.deprecated_at(self.fetched)
        ]
        names = sorted({i.name for i in current if i.name})
        family = image_family(key)
        hint = ""
        if family is not None and self._family_images(family, architecture):
            hint = f" (deprecated or removed?): {self._current_of_family(key, architecture)}"
        raise CatalogError(
            f"unknown image {key!r} for architecture {architecture}{hint}; "
            f"valid images: {', '.join(names)} (or the ID of a snapshot)"
        )

    def _family_images(self, family: str, architecture: str) -> list[Image]:
        """Current system images of ``family`` for ``architecture``, newest first."""
        found = [
            i
            for i in self.images
            if i.type == "system"
            and i.architecture == architecture
            and i.name
            and image_family(i.name) == family
            and not i.deprecated_at(self.fetched)
        ]
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        return sorted(found, key=lambda i: (i.created or oldest, i.name or ""), reverse=True)

    def _current_of_family(self, name: str, architecture: str) -> str:
        family = image_family(name)
        current = self._family_images(family, architecture) if family else []
        if not current:
            return "no current image of its family; choose another image"
        return f"the current {family} image is {current[0].name}"
