"""The emulated Hetzner offerings: locations, datacenters, server types, prices, system images.

Loaded from ``data/catalog.yaml`` (sources in ``docs/emulator-catalog.md``), plus the
emulator's own image (:data:`EMULATOR_IMAGE_NAME`) for both architectures.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

import yaml

from .machine.interface import EMULATOR_IMAGE_NAME

logger = logging.getLogger(__name__)

__all__ = [
    "Datacenter",
    "Location",
    "Offerings",
    "ServerType",
    "ServerTypeLocation",
    "SystemImage",
    "format_price",
]

_TIB = 1024**4


@dataclasses.dataclass(frozen=True)
class Datacenter:
    """A (deprecated) datacenter: one per location here."""

    id: int
    name: str
    description: str


@dataclasses.dataclass(frozen=True)
class Location:
    """A Hetzner location such as ``fsn1``."""

    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str
    price_zone: str
    datacenter: Datacenter


@dataclasses.dataclass(frozen=True)
class ServerTypeLocation:
    """A server type's offer in one location."""

    location: Location
    deprecation: dict[str, str] | None
    available: bool
    recommended: bool
    price_monthly: Decimal
    price_hourly: Decimal
    included_traffic: int
    price_per_tb_traffic: Decimal


@dataclasses.dataclass(frozen=True)
class ServerType:
    """A server type with its per-location offers."""

    id: int
    name: str
    description: str
    category: str
    cores: int
    memory: float
    disk: int
    cpu_type: str
    architecture: str
    storage_type: str
    deprecation: dict[str, str] | None
    locations: tuple[ServerTypeLocation, ...]

    def offer(self, location_name: str) -> ServerTypeLocation | None:
        """The offer in ``location_name``, or ``None`` if the type is not sold there."""
        for offer in self.locations:
            if offer.location.name == location_name:
                return offer
        return None


@dataclasses.dataclass(frozen=True)
class SystemImage:
    """A system image (one per name and architecture)."""

    id: int
    name: str
    description: str
    os_flavor: str
    os_version: str | None
    architecture: str
    created: str
    deprecated: str | None
    executes: bool


def format_price(net: Decimal, vat_rate: Decimal) -> dict[str, str]:
    """``{"net", "gross"}`` decimal strings as the API writes them."""
    gross = net * (Decimal(1) + vat_rate / Decimal(100))
    return {"net": f"{net:.10f}", "gross": f"{gross:.16f}"}


class Offerings:
    """The static part of the emulated cloud (read-only after loading)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.currency: str = data["currency"]
        self.vat_rate = Decimal(data["vat_rate"])
        self.raw = data
        self.locations: list[Location] = [
            Location(
                id=entry["id"],
                name=entry["name"],
                description=entry["description"],
                country=entry["country"],
                city=entry["city"],
                latitude=float(entry["latitude"]),
                longitude=float(entry["longitude"]),
                network_zone=entry["network_zone"],
                price_zone=entry["price_zone"],
                datacenter=Datacenter(**entry["datacenter"]),
            )
            for entry in data["locations"]
        ]
        self._locations_by_name = {location.name: location for location in self.locations}
        self.server_types: list[ServerType] = sorted(
            (
                self._server_type(family, row)
                for family in data["server_type_families"]
                for row in family["types"]
            ),
            key=lambda server_type: server_type.id,
        )
        self.system_images: list[SystemImage] = self._system_images(data)

    @classmethod
    def load(cls) -> Offerings:
        """The packaged catalog (parsed once; it is read-only)."""
        return _packaged_catalog()

    # -- construction -------------------------------------------------------------------

    def _server_type(self, family: dict[str, Any], row: list[Any]) -> ServerType:
        name, type_id, cores, memory, disk, monthly = row
        deprecation = family.get("deprecation")
        zones = self.raw["price_zones"]
        offers = []
        for location_name in family["locations"]:
            location = self._locations_by_name[location_name]
            zone = zones[location.price_zone]
            price = (Decimal(monthly) * Decimal(zone["factor"])).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP
            )
            hourly = (price / Decimal(625)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
            offers.append(
                ServerTypeLocation(
                    location=location,
                    deprecation=dict(deprecation) if deprecation else None,
                    available=deprecation is None,
                    recommended=deprecation is None and bool(family.get("recommended")),
                    price_monthly=price,
                    price_hourly=hourly,
                    included_traffic=int(Decimal(str(zone["included_traffic_tb"])) * _TIB),
                    price_per_tb_traffic=Decimal(zone["price_per_tb_traffic"]),
                )
            )
        return ServerType(
            id=type_id,
            name=name,
            description=name.upper(),
            category=family["category"],
            cores=cores,
            memory=float(memory),
            disk=disk,
            cpu_type=family["cpu_type"],
            architecture=family["architecture"],
            storage_type="local",
            deprecation=dict(deprecation) if deprecation else None,
            locations=tuple(offers),
        )

    @staticmethod
    def _system_images(data: dict[str, Any]) -> list[SystemImage]:
        images = []
        for entry in data["system_images"]:
            for architecture, image_id in entry["ids"].items():
                images.append(
                    SystemImage(
                        id=image_id,
                        name=entry["name"],
                        description=entry["description"],
                        os_flavor=entry["os_flavor"],
                        os_version=entry["os_version"],
                        architecture=architecture,
                        created=entry["created"],
                        deprecated=entry.get("deprecated"),
                        executes=False,
                    )
                )
        own = data["emulator_image"]
        for architecture, image_id in own["ids"].items():
            images.append(
                SystemImage(
                    id=image_id,
                    name=EMULATOR_IMAGE_NAME,
                    description=own["description"],
                    os_flavor="unknown",
                    os_version=None,
                    architecture=architecture,
                    created=own["created"],
                    deprecated=None,
                    executes=True,
                )
            )
        return sorted(images, key=lambda image: image.id)

    # -- lookups ------------------------------------------------------------------------

    def location(self, ident: int | str) -> Location | None:
        """A location by id or name."""
        for location in self.locations:
            if _matches(ident, location.id, location.name):
                return location
        return None

    def datacenter(self, ident: int | str) -> Location | None:
        """The location whose datacenter has this id or name."""
        for location in self.locations:
            if _matches(ident, location.datacenter.id, location.datacenter.name):
                return location
        return None

    def server_type(self, ident: int | str) -> ServerType | None:
        """A server type by id or name."""
        for server_type in self.server_types:
            if _matches(ident, server_type.id, server_type.name):
                return server_type
        return None


@functools.lru_cache(maxsize=1)
def _packaged_catalog() -> Offerings:
    text = resources.files(__package__).joinpath("data/catalog.yaml").read_text("utf-8")
    return Offerings(yaml.safe_load(text))


def _matches(ident: int | str, item_id: int, item_name: str) -> bool:
    if isinstance(ident, int):
        return ident == item_id
    if ident.isdigit():
        return int(ident) == item_id
    return ident == item_name
