"""The live catalog: server types, images and locations, and validation against it.

Choices are validated before anything is created (docs/design.md, "Cloud"); an error names the valid
choices, so a typo costs one line of reading, not a half-made cluster.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Catalog:
    """What can be ordered, as the API reported it."""

    server_types: dict[str, ServerType]
    locations: dict[str, Location]
    images: list[Image]

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
                )
                for i in images
            ],
        )

    def location(self, name: str) -> Location:
        """The location called ``name``, or :class:`CatalogError` listing the valid ones."""
        try:
            return self.locations[name]
        except KeyError:
            raise CatalogError(
                f"unknown location {name!r}; valid locations: {', '.join(sorted(self.locations))}"
            ) from None

    def server_type(self, name: str, location: str) -> ServerType:
        """The server type ``name`` if it can be ordered in ``location``, else CatalogError."""
        self.location(location)
        valid = sorted(n for n, t in self.server_types.items() if t.orderable_in(location))
        choices = f"valid server types in {location}: {', '.join(valid) or 'none'}"
        server_type = self.server_types.get(name)
        if server_type is None:
            raise CatalogError(f"unknown server type {name!r}; {choices}")
        if location not in server_type.unavailable:
            raise CatalogError(f"server type {name!r} is not offered in {location}; {choices}")
        reason = server_type.unavailable[location]
        if reason is not None:
            raise CatalogError(f"server type {name!r} is {reason} in {location}; {choices}")
        return server_type

    def image(self, name_or_id: str | int, architecture: str) -> Image:
        """The image for ``architecture`` by name, ID or snapshot description, else CatalogError."""
        key = str(name_or_id)
        for image in self.images:
            if image.architecture == architecture and key in (
                str(image.id),
                image.name,
                image.description if image.type == "snapshot" else None,
            ):
                return image
        names = sorted({i.name for i in self.images if i.name and i.architecture == architecture})
        raise CatalogError(
            f"unknown image {key!r} for architecture {architecture}; "
            f"valid images: {', '.join(names)} (or the ID of a snapshot)"
        )
