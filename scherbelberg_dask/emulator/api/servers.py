"""``/servers``: create (with keys, networks, firewalls, cloud-init), read, update, delete."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web

from ..offerings import Location, ServerType
from ..store import FirewallTarget, Image, PrivateNet, Server, SSHKey, utcnow
from . import render
from .body import MAX_USER_DATA, Body, hostname_problem, read_body
from .context import Context, context
from .errors import APIError, invalid_input
from .listing import Query, filter_common, list_response
from .lookup import by_id_or_name, path_item, unique_name
from .networks import allocate_private
from .responses import json_response

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LOCATION",
    "MAX_FIREWALLS_PER_SERVER",
    "MAX_GROUP_SIZE",
    "forget_server",
    "routes",
]

routes = web.RouteTableDef()

DEFAULT_LOCATION = "fsn1"
MAX_FIREWALLS_PER_SERVER = 5
MAX_GROUP_SIZE = 10
STATUSES = (
    "initializing",
    "starting",
    "running",
    "stopping",
    "off",
    "deleting",
    "migrating",
    "rebuilding",
    "unknown",
)
_SORT = {
    "id": lambda s: s.id,
    "name": lambda s: s.name,
    "created": lambda s: s.created,
}


@routes.get("/v1/servers")
async def list_servers(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    statuses = query.choices("status", STATUSES)
    items = filter_common(
        ctx.store.servers.values(), query, name=lambda s: s.name, labels=lambda s: s.labels
    )
    if statuses:
        items = [server for server in items if server.status in statuses]
    return json_response(
        list_response(
            "servers", items, query, lambda s: render.server(s, ctx.store, ctx.catalog), _SORT
        )
    )


@routes.get("/v1/servers/{id}")
async def get_server(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    return json_response({"server": render.server(server, ctx.store, ctx.catalog)})


@routes.put("/v1/servers/{id}")
async def update_server(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    body = await read_body(request)
    name = body.string("name")
    if name is not None and (problem := hostname_problem(name)):
        body.errors.add("name", problem)
    labels = body.labels()
    body.done()
    if name is not None:
        unique_name(ctx.store.servers.values(), name, lambda s: s.name, "server", skip=server)
        server.name = name
    if labels is not None:
        server.labels = labels
    return json_response({"server": render.server(server, ctx.store, ctx.catalog)})


@routes.delete("/v1/servers/{id}")
async def delete_server(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    if server.status == "deleting" and server.busy is not None:
        return json_response({"action": render.action(server.busy)})
    if server.protection_delete:
        raise APIError(423, "protected", f"server {server.id} is protected against deletion")
    action = ctx.store.new_action(
        "delete_server", [(server.id, "server")], expected=ctx.profile.delete_server
    )
    ctx.engine.delete(server, action, lambda: forget_server(ctx, server))
    return json_response({"action": render.action(action)})


def forget_server(ctx: Context, server: Server) -> None:
    """Remove a deleted server and give back its addresses and firewall slots."""
    ctx.store.servers.pop(server.id, None)
    ctx.addresses.release([server.public_ipv4, *server.private_ips()])
    for firewall in ctx.store.firewalls.values():
        firewall.applied_to = [
            t for t in firewall.applied_to if not (t.type == "server" and t.server_id == server.id)
        ]
        firewall.pending.discard(server.id)


# -- POST /servers ------------------------------------------------------------------------


def _resolve_location(ctx: Context, body: Body, server_type: ServerType | None) -> Location | None:
    location_ident = body.id_or_name("location")
    datacenter_ident = body.id_or_name("datacenter")
    if location_ident is not None and datacenter_ident is not None:
        body.errors.add("datacenter", "must not be combined with location")
        return None
    if location_ident is not None:
        location = ctx.catalog.location(location_ident)
        if location is None:
            names = ", ".join(loc.name for loc in ctx.catalog.locations)
            body.errors.add(
                "location", f"unknown location {location_ident!r}; choose one of {names}"
            )
        return location
    if datacenter_ident is not None:
        location = ctx.catalog.datacenter(datacenter_ident)
        if location is None:
            body.errors.add("datacenter", f"unknown datacenter {datacenter_ident!r}")
        return location
    if server_type is not None:
        for offer in server_type.locations:
            if offer.available:
                return offer.location
    return ctx.catalog.location(DEFAULT_LOCATION)


def _check_offer(server_type: ServerType, location: Location) -> None:
    offer = server_type.offer(location.name)
    orderable = [o.location.name for o in server_type.locations if o.available]
    if offer is None:
        raise invalid_input(
            "server_type",
            f"server type {server_type.name} is not offered in {location.name}"
            + (f"; it is offered in {', '.join(orderable)}" if orderable else ""),
        )
    if offer.deprecation is not None:
        raise invalid_input(
            "server_type",
            f"server type {server_type.name} is deprecated and no longer available in "
            f"{location.name} (unavailable after {offer.deprecation['unavailable_after']})",
        )
    if not offer.available:
        raise APIError(
            412,
            "resource_unavailable",
            f"server type {server_type.name} is currently not available in {location.name}",
        )


def _resolve_image(ctx: Context, ident: int | str, server_type: ServerType) -> Image:
    images = ctx.store.images.values()
    if isinstance(ident, int) or ident.isdigit():
        found = ctx.store.images.get(int(ident))
        if found is None:
            raise invalid_input("image", f"image {ident} not found")
        if found.architecture != server_type.architecture:
            raise invalid_input(
                "image",
                f"image {ident} is for {found.architecture}, server type {server_type.name} "
                f"is {server_type.architecture}",
            )
    else:
        found = next(
            (
                image
                for image in images
                if image.name == ident and image.architecture == server_type.architecture
            ),
            None,
        )
        if found is None:
            names = sorted(
                {i.name for i in images if i.type == "system" and i.name and not i.deprecated}
            )
            raise invalid_input(
                "image",
                f"image {ident!r} not found for architecture {server_type.architecture}; "
                f"system images: {', '.join(names)}",
            )
    if found.status != "available":
        raise invalid_input("image", f"image {found.id} is {found.status}, not available")
    return found


def _resolve_keys(ctx: Context, idents: list[Any]) -> list[SSHKey]:
    keys = []
    for ident in idents:
        key = None
        if isinstance(ident, (int, str)) and not isinstance(ident, bool):
            key = by_id_or_name(
                ctx.store.ssh_keys.values(), ident, lambda k: k.id, lambda k: k.name
            )
        if key is None:
            raise invalid_input("ssh_keys", f"SSH key {ident!r} not found")
        keys.append(key)
    return keys


def _check_public_net(body: Body) -> tuple[bool, bool]:
    public_net = body.obj("public_net")
    flags = []
    for key in ("enable_ipv4", "enable_ipv6"):
        value = public_net.get(key, True)
        if value is None:
            value = True
        if not isinstance(value, bool):
            body.errors.add("public_net", f"{key} must be a boolean")
            value = True
        flags.append(value)
    for key in ("ipv4", "ipv6"):
        if public_net.get(key) is not None:
            body.errors.add("public_net", f"{key}: Primary IPs are not supported by the emulator")
    return flags[0], flags[1]


@routes.post("/v1/servers")
async def create_server(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    name = body.string("name", required=True)
    if name and (problem := hostname_problem(name)):
        body.errors.add("name", problem)
    type_ident = body.id_or_name("server_type", required=True)
    image_ident = body.id_or_name("image", required=True)
    start = body.boolean("start_after_create", True)
    key_idents = body.array("ssh_keys")
    network_ids = body.array("networks")
    firewall_refs = body.array("firewalls")
    if body.array("volumes"):
        body.errors.add("volumes", "volumes are not supported by the emulator")
    labels = body.labels() or {}
    user_data = body.string("user_data")
    if user_data is not None and len(user_data.encode("utf-8")) > MAX_USER_DATA:
        body.errors.add("user_data", f"must be at most {MAX_USER_DATA} bytes")
    body.boolean("automount", False)
    group_id = body.integer("placement_group")
    enable_ipv4, enable_ipv6 = _check_public_net(body)
    server_type = None
    if type_ident is not None:
        server_type = ctx.catalog.server_type(type_ident)
        if server_type is None:
            body.errors.add("server_type", f"unknown server type {type_ident!r}")
    location = _resolve_location(ctx, body, server_type)
    body.done()
    assert name is not None and server_type is not None and location is not None
    assert image_ident is not None
    _check_offer(server_type, location)
    image = _resolve_image(ctx, image_ident, server_type)
    keys = _resolve_keys(ctx, key_idents)
    networks = []
    for ident in network_ids:
        network = ctx.store.networks.get(ident) if isinstance(ident, int) else None
        if network is None:
            raise invalid_input("networks", f"network {ident!r} not found")
        networks.append(network)
    firewalls = []
    for ref in firewall_refs:
        firewall_id = ref.get("firewall") if isinstance(ref, dict) else None
        firewall = ctx.store.firewalls.get(firewall_id) if isinstance(firewall_id, int) else None
        if firewall is None:
            raise invalid_input("firewalls", f"firewall {ref!r} not found")
        firewalls.append(firewall)
    if len(firewalls) > MAX_FIREWALLS_PER_SERVER:
        raise APIError(
            403,
            "resource_limit_exceeded",
            f"a server can have at most {MAX_FIREWALLS_PER_SERVER} firewalls",
            {"limits": [{"name": "firewalls_per_server"}]},
        )
    group = None
    if group_id is not None:
        group = ctx.store.placement_groups.get(group_id)
        if group is None:
            raise invalid_input("placement_group", f"placement group {group_id} not found")
        if len(ctx.store.servers_in_group(group.id)) >= MAX_GROUP_SIZE:
            raise APIError(
                422,
                "placement_error",
                f"placement group {group.name} already holds {MAX_GROUP_SIZE} servers",
            )
    unique_name(ctx.store.servers.values(), name, lambda s: s.name, "server")

    server_id = ctx.store.new_id()
    ipv4 = ctx.addresses.take_public_ipv4() if enable_ipv4 else None
    attachments: list[PrivateNet] = []
    try:
        for network in networks:
            attachments.append(allocate_private(ctx, network, location))
    except APIError:
        ctx.addresses.release([ipv4, *(ip for a in attachments for ip in (a.ip, *a.alias_ips))])
        raise
    server = Server(
        id=server_id,
        name=name,
        created=utcnow(),
        server_type=server_type,
        location=location,
        image=image,
        labels=labels,
        status="initializing",
        public_ipv4=ipv4,
        ipv4_id=ctx.store.new_id() if ipv4 else None,
        public_ipv6=ctx.addresses.take_ipv6_network() if enable_ipv6 else None,
        ipv6_id=ctx.store.new_id() if enable_ipv6 else None,
        placement_group_id=None if group is None else group.id,
        private_net=attachments,
    )
    try:
        server.machine = ctx.engine.make_machine(
            server, image, user_data, [key.public_key for key in keys]
        )
    except Exception:
        ctx.addresses.release([ipv4, *server.private_ips()])
        raise
    ctx.store.servers[server.id] = server
    for firewall in firewalls:
        firewall.applied_to.append(FirewallTarget("server", server_id=server.id))

    create = ctx.store.new_action(
        "create_server", [(server.id, "server")], expected=ctx.profile.create_server
    )
    start_action = None
    if start:
        start_action = ctx.store.new_action(
            "start_server", [(server.id, "server")], expected=ctx.profile.start_server
        )
    ctx.engine.create_server(server, create, start_action, fail=ctx.faults.next_boot_fails())
    logger.info("server %s (%d) created at %s", server.name, server.id, server.public_ipv4)
    return json_response(
        {
            "server": render.server(server, ctx.store, ctx.catalog),
            "action": render.action(create),
            "next_actions": [] if start_action is None else [render.action(start_action)],
            "root_password": None if keys else secrets.token_urlsafe(15),
        },
        201,
    )
