"""``/networks``: private networks, their subnets and routes, and private IP assignment.

In the emulator every network lives on the loopback interface: its range must lie
inside 127.0.0.0/8, outside 127.0.0.0/16 and outside the public pool.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..offerings import Location
from ..store import Network, PrivateNet, Route, Server, Subnet, utcnow
from . import render
from .body import Body, read_body
from .context import Context, context
from .errors import APIError, invalid_input
from .listing import Query, filter_common, list_response
from .lookup import path_item, rename_and_relabel, unique_name
from .responses import action_created, json_response, no_content

logger = logging.getLogger(__name__)

__all__ = ["allocate_private", "routes"]

routes = web.RouteTableDef()

T = TypeVar("T")

_SORT = {
    "id": lambda n: n.id,
    "name": lambda n: n.name,
    "created": lambda n: n.created,
}


def _cidr(value: Any, field: str, body: Body) -> ipaddress.IPv4Network | None:
    if not isinstance(value, str):
        body.errors.add(field, "must be an IPv4 CIDR string")
        return None
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as exc:
        body.errors.add(field, f"{value!r} is not a valid IPv4 network: {exc}")
        return None


def _first_free_24(network: Network) -> ipaddress.IPv4Network | None:
    prefix = max(24, network.ip_range.prefixlen)
    for candidate in network.ip_range.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(subnet.ip_range) for subnet in network.subnets):
            return candidate
    return None


def _parse_subnet(
    ctx: Context, body: Body, data: Any, network: Network, field: str
) -> Subnet | None:
    """Validate one subnet for ``network`` (choosing its range if not given)."""
    if not isinstance(data, dict):
        body.errors.add(field, "must be an object")
        return None
    kind = data.get("type")
    if kind not in ("cloud", "server", "vswitch"):
        body.errors.add(field, "type must be 'cloud' (or the deprecated 'server')")
        return None
    if kind == "vswitch":
        body.errors.add(field, "vSwitch subnets are not supported by the emulator")
        return None
    zones = {location.network_zone for location in ctx.catalog.locations}
    zone = data.get("network_zone")
    if zone not in zones:
        body.errors.add(field, f"network_zone must be one of {', '.join(sorted(zones))}")
        return None
    if data.get("ip_range") is None:
        ip_range = _first_free_24(network)
        if ip_range is None:
            body.errors.add(field, f"no free /24 left in {network.ip_range}")
            return None
    else:
        ip_range = _cidr(data["ip_range"], field, body)
        if ip_range is None:
            return None
        if not ip_range.subnet_of(network.ip_range):
            body.errors.add(field, f"{ip_range} is not inside the network range {network.ip_range}")
            return None
        if ip_range.prefixlen > 30:
            body.errors.add(field, f"{ip_range} is too small (at least /30)")
            return None
        if any(ip_range.overlaps(subnet.ip_range) for subnet in network.subnets):
            body.errors.add(field, f"{ip_range} overlaps an existing subnet")
            return None
    return Subnet(type="cloud" if kind == "server" else kind, ip_range=ip_range, network_zone=zone)


def _parse_route(body: Body, data: Any, network: Network, field: str) -> Route | None:
    if not isinstance(data, dict):
        body.errors.add(field, "must be an object with destination and gateway")
        return None
    destination = _cidr(data.get("destination"), field, body)
    try:
        gateway = ipaddress.IPv4Address(data.get("gateway"))
    except ValueError:
        body.errors.add(field, "gateway must be an IPv4 address")
        return None
    if destination is None:
        return None
    if gateway not in network.ip_range or gateway == network.gateway:
        body.errors.add(field, f"gateway must be inside {network.ip_range}, not its gateway")
        return None
    return Route(destination=destination, gateway=gateway)


def allocate_private(
    ctx: Context,
    network: Network,
    location: Location,
    *,
    ip: str | None = None,
    alias_ips: list[str] | None = None,
    ip_range: str | None = None,
) -> PrivateNet:
    """Reserve the addresses of a new attachment of a server in ``location``.

    Picks the lowest free host address of the first subnet in the server's network
    zone (within ``ip_range`` if given), unique across every network of the emulator.

    Raises
    ------
    APIError
        422 ``no_subnet_available``, ``ip_not_available`` or ``invalid_input``.
    """
    subnets = [s for s in network.subnets if s.network_zone == location.network_zone]
    if ip_range is not None:
        try:
            narrow = ipaddress.IPv4Network(ip_range)
        except ValueError:
            raise invalid_input("ip_range", f"{ip_range!r} is not a valid IPv4 network") from None
        subnets = [s for s in subnets if narrow.subnet_of(s.ip_range)]
    else:
        narrow = None
    if not subnets:
        raise APIError(
            422,
            "no_subnet_available",
            f"network {network.id} has no subnet in network zone {location.network_zone} "
            f"(the zone of location {location.name})",
        )
    primary: str | None = None
    if ip is not None:
        try:
            wanted = ipaddress.IPv4Address(ip)
        except ValueError:
            raise invalid_input("ip", f"{ip!r} is not an IPv4 address") from None
        if narrow is not None and wanted not in narrow:
            raise invalid_input("ip", f"{ip} is outside ip_range {narrow}")
        for subnet in subnets:
            if wanted in subnet.ip_range:
                primary = ctx.addresses.take_private(subnet.ip_range, network.gateway, wanted)
                break
        if primary is None:
            raise APIError(
                422, "ip_not_available", f"IP {ip} is not available in network {network.id}"
            )
    else:
        for subnet in subnets:
            scope = narrow if narrow is not None else subnet.ip_range
            primary = ctx.addresses.take_private(scope, network.gateway)
            if primary is not None:
                break
        if primary is None:
            raise APIError(422, "no_subnet_available", f"no free IP left in network {network.id}")
    aliases: list[str] = []
    try:
        for alias in alias_ips or []:
            wanted = ipaddress.IPv4Address(alias)
            taken = next(
                (
                    ctx.addresses.take_private(s.ip_range, network.gateway, wanted)
                    for s in subnets
                    if wanted in s.ip_range
                ),
                None,
            )
            if taken is None:
                raise APIError(422, "ip_not_available", f"alias IP {alias} is not available")
            aliases.append(taken)
    except (APIError, ValueError) as exc:
        ctx.addresses.release([primary, *aliases])
        if isinstance(exc, APIError):
            raise
        raise invalid_input("alias_ips", f"invalid alias IP: {exc}") from None
    return PrivateNet(
        network_id=network.id, ip=primary, alias_ips=aliases, mac_address=ctx.store.new_mac()
    )


def _check_conflict(network: Network) -> None:
    if network.change is not None and network.change.running:
        raise APIError(409, "conflict", f"network {network.id} is being changed, retry")


def _detach_all(ctx: Context, network: Network) -> None:
    for server in list(ctx.store.servers_in_network(network.id)):
        gone = [net for net in server.private_net if net.network_id == network.id]
        server.private_net = [net for net in server.private_net if net.network_id != network.id]
        ctx.addresses.release(ip for net in gone for ip in (net.ip, *net.alias_ips))
        ctx.engine.spawn(ctx.engine.reconcile_addresses(server))


@routes.get("/v1/networks")
async def list_networks(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(
        ctx.store.networks.values(), query, name=lambda n: n.name, labels=lambda n: n.labels
    )
    return json_response(
        list_response("networks", items, query, lambda n: render.network(n, ctx.store), _SORT)
    )


@routes.post("/v1/networks")
async def create_network(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    name = body.name()
    labels = body.labels() or {}
    expose = body.boolean("expose_routes_to_vswitch", False)
    ip_range = _cidr(body.data.get("ip_range"), "ip_range", body) if body.has("ip_range") else None
    if not body.has("ip_range"):
        body.errors.add("ip_range", "is required")
    elif ip_range is not None:
        problem = ctx.addresses.network_range_problem(ip_range)
        if problem:
            body.errors.add("ip_range", problem)
        elif ip_range.prefixlen > 24:
            body.errors.add("ip_range", f"{ip_range} is too small (at least /24)")
    raw_subnets = body.array("subnets")
    raw_routes = body.array("routes")
    body.done()
    assert ip_range is not None
    unique_name(ctx.store.networks.values(), name, lambda n: n.name, "network")
    network = Network(
        id=ctx.store.new_id(),
        name=name,
        ip_range=ip_range,
        labels=labels,
        created=utcnow(),
        expose_routes_to_vswitch=expose,
    )
    for index, data in enumerate(raw_subnets):
        subnet = _parse_subnet(ctx, body, data, network, f"subnets[{index}]")
        if subnet is not None:
            network.subnets.append(subnet)
    for index, data in enumerate(raw_routes):
        route = _parse_route(body, data, network, f"routes[{index}]")
        if route is not None:
            network.routes.append(route)
    body.done()
    ctx.store.networks[network.id] = network
    return json_response({"network": render.network(network, ctx.store)}, 201)


@routes.get("/v1/networks/{id}")
async def get_network(request: web.Request) -> web.Response:
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    return json_response({"network": render.network(network, ctx.store)})


@routes.put("/v1/networks/{id}")
async def update_network(request: web.Request) -> web.Response:
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    body = await read_body(request)
    expose = body.boolean("expose_routes_to_vswitch", network.expose_routes_to_vswitch)
    rename_and_relabel(body, ctx.store.networks.values(), network, "network")
    network.expose_routes_to_vswitch = expose
    return json_response({"network": render.network(network, ctx.store)})


@routes.delete("/v1/networks/{id}")
async def delete_network(request: web.Request) -> web.Response:
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    if network.protection_delete:
        raise APIError(423, "protected", f"network {network.id} is protected against deletion")
    _check_conflict(network)
    _detach_all(ctx, network)
    del ctx.store.networks[network.id]
    return no_content()


async def _change_request(
    request: web.Request, parse: Callable[[Body, Network], T | None]
) -> tuple[Context, Network, T]:
    """The network of a change request and what ``parse`` read from its valid body.

    Raises
    ------
    APIError
        404 for an unknown network, 422 ``invalid_input``, 409 ``conflict`` while the
        network's previous change still runs.
    """
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    body = await read_body(request)
    value = parse(body, network)
    body.done()
    _check_conflict(network)
    assert value is not None
    return ctx, network, value


def _route(body: Body, network: Network) -> Route | None:
    return _parse_route(body, body.data, network, "route")


def _ip_range(body: Body, network: Network) -> ipaddress.IPv4Network | None:
    return _cidr(body.data.get("ip_range"), "ip_range", body)


def _network_action(ctx: Context, network: Network, command: str) -> web.Response:
    network.change = ctx.engine.simple(
        command, [(network.id, "network")], ctx.profile.network_change
    )
    return action_created(network.change)


@routes.post("/v1/networks/{id}/actions/add_subnet")
async def add_subnet(request: web.Request) -> web.Response:
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    body = await read_body(request)
    _check_conflict(network)
    subnet = _parse_subnet(ctx, body, body.data, network, "subnet")
    body.done()
    assert subnet is not None
    network.subnets.append(subnet)
    return _network_action(ctx, network, "add_subnet")


@routes.post("/v1/networks/{id}/actions/delete_subnet")
async def delete_subnet(request: web.Request) -> web.Response:
    ctx, network, ip_range = await _change_request(request, _ip_range)
    subnet = next((s for s in network.subnets if s.ip_range == ip_range), None)
    if subnet is None:
        raise invalid_input("ip_range", f"network {network.id} has no subnet {ip_range}")
    in_use = [
        server.id
        for server in ctx.store.servers_in_network(network.id)
        if any(ipaddress.IPv4Address(ip) in subnet.ip_range for ip in _ips_in(server, network))
    ]
    if in_use:
        raise APIError(
            422, "resource_in_use", f"subnet {ip_range} still has servers attached: {in_use}"
        )
    network.subnets.remove(subnet)
    return _network_action(ctx, network, "delete_subnet")


def _ips_in(server: Server, network: Network) -> list[str]:
    return [
        ip
        for net in server.private_net
        if net.network_id == network.id
        for ip in (net.ip, *net.alias_ips)
    ]


@routes.post("/v1/networks/{id}/actions/add_route")
async def add_route(request: web.Request) -> web.Response:
    ctx, network, route = await _change_request(request, _route)
    network.routes.append(route)
    return _network_action(ctx, network, "add_route")


@routes.post("/v1/networks/{id}/actions/delete_route")
async def delete_route(request: web.Request) -> web.Response:
    ctx, network, route = await _change_request(request, _route)
    if route not in network.routes:
        raise invalid_input("destination", "no such route in this network")
    network.routes.remove(route)
    return _network_action(ctx, network, "delete_route")


@routes.post("/v1/networks/{id}/actions/change_ip_range")
async def change_ip_range(request: web.Request) -> web.Response:
    ctx, network, ip_range = await _change_request(request, _ip_range)
    if (
        ip_range.network_address != network.ip_range.network_address
        or ip_range.prefixlen > network.ip_range.prefixlen
    ):
        raise invalid_input(
            "ip_range", f"the range can only grow from {network.ip_range} (same start address)"
        )
    problem = ctx.addresses.network_range_problem(ip_range)
    if problem:
        raise invalid_input("ip_range", problem)
    network.ip_range = ip_range
    return _network_action(ctx, network, "change_ip_range")


@routes.post("/v1/networks/{id}/actions/change_protection")
async def change_protection(request: web.Request) -> web.Response:
    ctx = context(request)
    network = path_item(request, ctx.store.networks, "network")
    body = await read_body(request)
    delete = body.boolean("delete", network.protection_delete)
    body.done()
    network.protection_delete = delete
    action = ctx.engine.simple(
        "change_protection", [(network.id, "network")], ctx.profile.small_action
    )
    return action_created(action)
