"""Retired server types resolve to their successors.

Hetzner retires server types every year or two (``cx11`` in 2024, ``cx22`` and ``cpx11``
in 2026, ``ccx12`` … ``ccx62`` before).  Code and docs written against one generation
should keep working against the next, so a type that cannot be ordered in a location
resolves to the newest orderable type of its successor chain (``cx11`` → ``cx22`` →
``cx23``), with one warning that names both types, what they bring and what the change
costs.  The table of successors is ``successors.yaml`` next to this module; its sources
are listed in ``docs/catalog.md``.

Whether to resolve or to fail is the ``scherbelberg.retired-types`` setting
(:data:`POLICIES`): ``successor`` (the default) or ``error``.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources

import yaml

from scherbelberg_dask.cloud.catalog import Catalog, ServerType
from scherbelberg_dask.cloud.errors import CatalogError

__all__ = ["POLICIES", "Resolution", "resolve_server_type", "successor_chain", "successors"]

#: What to do with a retired type: use its successor, or fail.
POLICIES = ("successor", "error")


@functools.lru_cache(maxsize=1)
def successors() -> dict[str, str]:
    """The packaged table: retired server type name → its direct successor's name."""
    text = resources.files(__package__).joinpath("successors.yaml").read_text("utf-8")
    table = yaml.safe_load(text)["server_types"]
    return {str(name): str(entry["successor"]) for name, entry in table.items()}


def successor_chain(name: str) -> list[str]:
    """The successors of type ``name``, oldest first (``cx11`` → ``[cx22, cx23]``)."""
    table = successors()
    chain: list[str] = []
    current = name
    while current in table and table[current] not in chain and table[current] != name:
        current = table[current]
        chain.append(current)
    return chain


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What a requested server type resolved to in one location."""

    #: The type name that was asked for.
    requested: str
    #: The type new servers get (the requested one, or its successor).
    server_type: ServerType
    location: str
    #: Why the requested type cannot be ordered (``None``: it can, nothing replaced).
    reason: str | None = None
    #: The requested type as the API still lists it (``None`` if it no longer does).
    retired: ServerType | None = None

    @property
    def replaced(self) -> bool:
        """True if a successor takes the requested type's place."""
        return self.reason is not None

    def warning(self, what: str) -> str:
        """One line for the log: both types, their cores and memory, the price change.

        ``what`` names the settings that asked for the type (``worker_type``).
        """
        new = self.server_type
        old = self.retired.summary() if self.retired else self.requested
        return (
            f"{what} {old} is {self.reason}; using its successor {new.summary()} instead"
            f"{self._price_change()}"
        )

    def _price_change(self) -> str:
        new_price = self.server_type.prices.get(self.location)
        old_price = self.retired.prices.get(self.location) if self.retired else None
        if new_price is None or old_price is None:
            return ""
        hourly = new_price.hourly_net - old_price.hourly_net
        monthly = new_price.monthly_net - old_price.monthly_net
        if abs(monthly) < 0.005 and abs(hourly) < 0.00005:
            change = "at the same price"
        else:
            direction = "more" if monthly > 0 or (monthly == 0 and hourly > 0) else "less"
            change = f"{abs(hourly):.4f} EUR/h ({abs(monthly):.2f} EUR/month) {direction}"
        return (
            f", {change}: {new_price.monthly_net:.2f} instead of "
            f"{old_price.monthly_net:.2f} EUR/month net in {self.location}"
        )


def resolve_server_type(
    catalog: Catalog, name: str, location: str, policy: str = "successor"
) -> Resolution:
    """The type new servers of ``name`` get in ``location``.

    An orderable type is itself.  A retired or (in ``location``) unavailable type with
    known successors resolves, under ``policy="successor"``, to the newest successor that
    can be ordered there.

    Raises
    ------
    CatalogError
        Unknown location; unknown type; no orderable successor; or ``policy="error"`` and
        the type cannot be ordered.  The message names the successor if there is one and
        the nearest orderable types by cores and memory, then all valid ones.
    ValueError
        ``policy`` is not one of :data:`POLICIES`.
    """
    if policy not in POLICIES:
        raise ValueError(f"retired_types must be one of {', '.join(POLICIES)}, not {policy!r}")
    catalog.location(location)
    reason = catalog.why_not_orderable(name, location)
    if reason is None:
        return Resolution(name, catalog.server_types[name], location)
    chain = successor_chain(name)
    if not chain:
        catalog.server_type(name, location)  # raises: names the nearest types first
        raise AssertionError(f"{name} is not orderable yet the catalog returned it")
    retired = catalog.server_types.get(name)
    described = "no longer listed by the API" if reason == "unknown" else reason
    usable = [n for n in chain if catalog.why_not_orderable(n, location) is None]
    nearest_to = (
        name
        if retired is not None
        else next((n for n in reversed(chain) if n in catalog.server_types), name)
    )
    choices = catalog.choices(nearest_to, location)
    if not usable:
        raise CatalogError(
            f"server type {name!r} is {described}, and its successor "
            f"{' → '.join(chain)} cannot be ordered in {location} either; {choices}"
        )
    successor = catalog.server_types[usable[-1]]
    if policy == "error":
        raise CatalogError(
            f"server type {name!r} is {described}; its successor is {successor.summary()} "
            f"(or set retired_types to 'successor' to use it); {choices}"
        )
    return Resolution(name, successor, location, reason=described, retired=retired)
