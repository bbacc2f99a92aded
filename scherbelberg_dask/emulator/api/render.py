"""JSON shapes of every resource, as the Hetzner API (and its OpenAPI spec) has them."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from ..offerings import Location, Offerings, ServerType, format_price
from ..store import (
    Action,
    Firewall,
    Image,
    Network,
    PlacementGroup,
    Server,
    SSHKey,
    Store,
    iso,
)
from .labels import LabelSelector

logger = logging.getLogger(__name__)


def action(item: Action) -> dict[str, Any]:
    """An action object."""
    return {
        "id": item.id,
        "command": item.command,
        "status": item.status,
        "progress": item.progress,
        "started": iso(item.started),
        "finished": iso(item.finished),
        "resources": [{"id": rid, "type": rtype} for rid, rtype in item.resources],
        "error": None if item.error is None else {"code": item.error[0], "message": item.error[1]},
    }


def location(item: Location) -> dict[str, Any]:
    """A location object."""
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "country": item.country,
        "city": item.city,
        "latitude": item.latitude,
        "longitude": item.longitude,
        "network_zone": item.network_zone,
    }


def datacenter(item: Location, catalog: Offerings) -> dict[str, Any]:
    """The datacenter object of a location (deprecated resource, still served)."""
    supported = []
    available = []
    for server_type in catalog.server_types:
        offer = server_type.offer(item.name)
        if offer is not None:
            supported.append(server_type.id)
            if offer.available:
                available.append(server_type.id)
    return {
        "id": item.datacenter.id,
        "name": item.datacenter.name,
        "description": item.datacenter.description,
        "location": location(item),
        "server_types": {
            "supported": supported,
            "available": available,
            "available_for_migration": list(available),
        },
    }


def server_type_prices(item: ServerType, vat_rate: Decimal) -> list[dict[str, Any]]:
    """Per-location prices of a server type."""
    return [
        {
            "location": offer.location.name,
            "price_hourly": format_price(offer.price_hourly, vat_rate),
            "price_monthly": format_price(offer.price_monthly, vat_rate),
            "included_traffic": offer.included_traffic,
            "price_per_tb_traffic": format_price(offer.price_per_tb_traffic, vat_rate),
        }
        for offer in item.locations
    ]


def server_type(item: ServerType, catalog: Offerings) -> dict[str, Any]:
    """A server type object (with the per-location ``available``/``recommended`` keys)."""
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "category": item.category,
        "cores": item.cores,
        "memory": item.memory,
        "disk": item.disk,
        "cpu_type": item.cpu_type,
        "architecture": item.architecture,
        "storage_type": item.storage_type,
        "deprecated": item.deprecation is not None,
        "deprecation": item.deprecation,
        "prices": server_type_prices(item, catalog.vat_rate),
        "locations": [
            {
                "id": offer.location.id,
                "name": offer.location.name,
                "deprecation": offer.deprecation,
                "available": offer.available,
                "recommended": offer.recommended,
            }
            for offer in item.locations
        ],
    }


def image(item: Image) -> dict[str, Any]:
    """An image object."""
    return {
        "id": item.id,
        "type": item.type,
        "status": item.status,
        "name": item.name,
        "description": item.description,
        "image_size": item.image_size,
        "disk_size": item.disk_size,
        "created": item.created,
        "created_from": (
            None
            if item.created_from is None
            else {"id": item.created_from[0], "name": item.created_from[1]}
        ),
        "bound_to": item.bound_to,
        "os_flavor": item.os_flavor,
        "os_version": item.os_version,
        "architecture": item.architecture,
        "rapid_deploy": item.rapid_deploy,
        "protection": {"delete": item.protection_delete},
        "deprecated": item.deprecated,
        "deleted": None,
        "labels": dict(item.labels),
    }


def firewall_server_ids(item: Firewall, store: Store) -> list[int]:
    """Every server a firewall applies to, directly or through a label selector."""
    result: set[int] = set()
    for target in item.applied_to:
        if target.type == "server" and target.server_id in store.servers:
            result.add(target.server_id)
        elif target.type == "label_selector" and target.selector is not None:
            selector = LabelSelector(target.selector)
            result.update(
                server.id for server in store.servers.values() if selector.matches(server.labels)
            )
    return sorted(result)


def server(item: Server, store: Store, catalog: Offerings) -> dict[str, Any]:
    """A server object."""
    firewalls = [
        {"id": fw.id, "status": "pending" if item.id in fw.pending else "applied"}
        for fw in store.firewalls.values()
        if item.id in firewall_server_ids(fw, store)
    ]
    group = store.placement_groups.get(item.placement_group_id or -1)
    offer = item.server_type.offer(item.location.name)
    return {
        "id": item.id,
        "name": item.name,
        "status": item.status,
        "created": iso(item.created),
        "public_net": {
            "ipv4": (
                None
                if item.public_ipv4 is None
                else {
                    "id": item.ipv4_id,
                    "ip": item.public_ipv4,
                    "blocked": False,
                    "dns_ptr": f"static.{item.public_ipv4}.clients.your-server.de",
                }
            ),
            "ipv6": (
                None
                if item.public_ipv6 is None
                else {"id": item.ipv6_id, "ip": item.public_ipv6, "blocked": False, "dns_ptr": []}
            ),
            "floating_ips": [],
            "firewalls": firewalls,
        },
        "private_net": [
            {
                "network": net.network_id,
                "ip": net.ip,
                "alias_ips": list(net.alias_ips),
                "mac_address": net.mac_address,
            }
            for net in item.private_net
        ],
        "server_type": server_type(item.server_type, catalog),
        "location": location(item.location),
        "datacenter": datacenter(item.location, catalog),
        "image": None if item.image is None else image(item.image),
        "iso": None,
        "rescue_enabled": False,
        "locked": False,
        "backup_window": None,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 0 if offer is None else offer.included_traffic,
        "protection": {"delete": item.protection_delete, "rebuild": item.protection_rebuild},
        "labels": dict(item.labels),
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": item.server_type.disk,
        "placement_group": None if group is None else placement_group(group, store),
    }


def network(item: Network, store: Store) -> dict[str, Any]:
    """A network object."""
    return {
        "id": item.id,
        "name": item.name,
        "ip_range": str(item.ip_range),
        "subnets": [
            {
                "type": subnet.type,
                "ip_range": str(subnet.ip_range),
                "network_zone": subnet.network_zone,
                "gateway": str(item.gateway),
                "vswitch_id": subnet.vswitch_id,
            }
            for subnet in item.subnets
        ],
        "routes": [
            {"destination": str(route.destination), "gateway": str(route.gateway)}
            for route in item.routes
        ],
        "servers": sorted(server.id for server in store.servers_in_network(item.id)),
        "load_balancers": [],
        "protection": {"delete": item.protection_delete},
        "labels": dict(item.labels),
        "created": iso(item.created),
        "expose_routes_to_vswitch": item.expose_routes_to_vswitch,
    }


def firewall(item: Firewall, store: Store) -> dict[str, Any]:
    """A firewall object."""
    applied_to: list[dict[str, Any]] = []
    for target in item.applied_to:
        if target.type == "server":
            applied_to.append({"type": "server", "server": {"id": target.server_id}})
        else:
            selector = LabelSelector(target.selector or "")
            applied_to.append(
                {
                    "type": "label_selector",
                    "label_selector": {"selector": target.selector},
                    "applied_to_resources": [
                        {"type": "server", "server": {"id": srv.id}}
                        for srv in sorted(store.servers.values(), key=lambda s: s.id)
                        if selector.matches(srv.labels)
                    ],
                }
            )
    return {
        "id": item.id,
        "name": item.name,
        "labels": dict(item.labels),
        "created": iso(item.created),
        "rules": [dict(rule) for rule in item.rules],
        "applied_to": applied_to,
    }


def ssh_key(item: SSHKey) -> dict[str, Any]:
    """An SSH key object."""
    return {
        "id": item.id,
        "name": item.name,
        "fingerprint": item.fingerprint,
        "public_key": item.public_key,
        "labels": dict(item.labels),
        "created": iso(item.created),
    }


def placement_group(item: PlacementGroup, store: Store) -> dict[str, Any]:
    """A placement group object."""
    return {
        "id": item.id,
        "name": item.name,
        "type": item.type,
        "labels": dict(item.labels),
        "servers": store.servers_in_group(item.id),
        "created": iso(item.created),
    }


def pricing(catalog: Offerings) -> dict[str, Any]:
    """The ``/pricing`` object, consistent with the server types' prices."""
    raw = catalog.raw
    vat = catalog.vat_rate

    def price(value: str) -> dict[str, str]:
        return format_price(Decimal(value), vat)

    def per_location(monthly: str) -> list[dict[str, Any]]:
        hourly = (Decimal(monthly) / Decimal(720)).quantize(Decimal("0.0001"))
        return [
            {
                "location": loc.name,
                "price_hourly": format_price(hourly, vat),
                "price_monthly": price(monthly),
            }
            for loc in catalog.locations
        ]

    return {
        "currency": catalog.currency,
        "vat_rate": raw["vat_rate"],
        "image": {"price_per_gb_month": price(raw["image_price_per_gb_month"])},
        "volume": {"price_per_gb_month": price(raw["volume_price_per_gb_month"])},
        "server_backup": {"percentage": raw["server_backup_percentage"]},
        "floating_ip": {"price_monthly": price(raw["floating_ipv4_monthly"])},
        "floating_ips": [
            {
                "type": "ipv4",
                "prices": [
                    {"location": loc.name, "price_monthly": price(raw["floating_ipv4_monthly"])}
                    for loc in catalog.locations
                ],
            },
            {
                "type": "ipv6",
                "prices": [
                    {"location": loc.name, "price_monthly": price(raw["floating_ipv6_monthly"])}
                    for loc in catalog.locations
                ],
            },
        ],
        "primary_ips": [
            {"type": "ipv4", "prices": per_location(raw["primary_ipv4_monthly"])},
            {"type": "ipv6", "prices": per_location("0.0000")},
        ],
        "server_types": [
            {"id": st.id, "name": st.name, "prices": server_type_prices(st, vat)}
            for st in catalog.server_types
        ],
        "load_balancer_types": [],
    }
