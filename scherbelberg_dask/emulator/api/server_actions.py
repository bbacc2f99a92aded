"""``/servers/{id}/actions/<command>``: power, networks, snapshots, protection, groups."""

from __future__ import annotations

import logging

from aiohttp import web

from ..store import Action, Image, Server, utcnow
from . import render
from .body import read_body
from .context import Context, context
from .errors import APIError, invalid_input, locked
from .lookup import path_item
from .networks import allocate_private
from .responses import action_created
from .servers import MAX_GROUP_SIZE

logger = logging.getLogger(__name__)

__all__ = ["routes"]

routes = web.RouteTableDef()

#: Server actions of the API that the emulator answers with 422 ``unsupported_error``.
UNSUPPORTED = (
    "attach_iso",
    "detach_iso",
    "change_alias_ips",
    "change_dns_ptr",
    "change_type",
    "disable_backup",
    "enable_backup",
    "disable_rescue",
    "enable_rescue",
    "rebuild",
    "request_console",
    "reset_password",
)


def _server(request: web.Request, *, force: bool = False) -> tuple[Context, Server]:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    reason = ctx.engine.locked_by(server, force=force)
    if reason is not None:
        raise locked(reason)
    return ctx, server


def _power_action(ctx: Context, server: Server, command: str, expected: float) -> Action:
    """A new action of ``command`` on ``server`` alone."""
    return ctx.store.new_action(command, [(server.id, "server")], expected=expected)


@routes.post("/v1/servers/{id}/actions/poweron")
async def poweron(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    action = _power_action(ctx, server, "start_server", ctx.profile.start_server)
    ctx.engine.power_on(server, action)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/poweroff")
async def poweroff(request: web.Request) -> web.Response:
    ctx, server = _server(request, force=True)
    action = _power_action(ctx, server, "stop_server", ctx.profile.stop_server)
    ctx.engine.power_off(server, action)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/shutdown")
async def shutdown(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    action = _power_action(ctx, server, "shutdown_server", ctx.profile.shutdown_signal)
    ctx.engine.shutdown(server, action)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/reboot")
async def reboot(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    action = _power_action(ctx, server, "reboot_server", ctx.profile.reboot)
    ctx.engine.reboot(server, action, hard=False)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/reset")
async def reset(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    action = _power_action(ctx, server, "reset_server", ctx.profile.reboot)
    ctx.engine.reboot(server, action, hard=True)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/attach_to_network")
async def attach_to_network(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    body = await read_body(request)
    network_id = body.integer("network", required=True)
    ip = body.string("ip")
    ip_range = body.string("ip_range")
    alias_ips = body.array("alias_ips")
    if not all(isinstance(alias, str) for alias in alias_ips):
        body.errors.add("alias_ips", "must be a list of IP address strings")
    body.done()
    network = ctx.store.networks.get(network_id or -1)
    if network is None:
        raise APIError(404, "not_found", f"network with ID {network_id} not found")
    if any(net.network_id == network.id for net in server.private_net):
        raise APIError(
            422,
            "server_already_attached",
            f"server {server.id} is already attached to network {network.id}",
        )
    entry = allocate_private(
        ctx, network, server.location, ip=ip, alias_ips=alias_ips, ip_range=ip_range
    )
    action = ctx.store.new_action(
        "attach_to_network",
        [(server.id, "server"), (network.id, "network")],
        expected=ctx.profile.network_change,
    )
    ctx.engine.attach(server, action, entry)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/detach_from_network")
async def detach_from_network(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    body = await read_body(request)
    network_id = body.integer("network", required=True)
    body.done()
    network = ctx.store.networks.get(network_id or -1)
    if network is None:
        raise APIError(404, "not_found", f"network with ID {network_id} not found")
    if not any(net.network_id == network.id for net in server.private_net):
        raise invalid_input(
            "network", f"server {server.id} is not attached to network {network.id}"
        )
    action = ctx.store.new_action(
        "detach_from_network",
        [(server.id, "server"), (network.id, "network")],
        expected=ctx.profile.network_change,
    )
    ctx.engine.detach(server, action, network.id)
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/create_image")
async def create_image(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    body = await read_body(request)
    description = body.string("description")
    kind = body.string("type") or "snapshot"
    if kind not in ("snapshot", "backup"):
        body.errors.add("type", "must be 'snapshot' or 'backup'")
    labels = body.labels() or {}
    body.done()
    if kind == "backup":
        raise APIError(
            422, "unsupported_error", "backups are not enabled for this server (emulator)"
        )
    source = server.image
    image = Image(
        id=ctx.store.new_id(),
        type="snapshot",
        status="creating",
        name=None,
        description=description or f"{server.name}-{utcnow():%Y%m%d%H%M%S}",
        architecture=server.server_type.architecture,
        created=utcnow().isoformat(),
        os_flavor=source.os_flavor if source else "unknown",
        os_version=source.os_version if source else None,
        disk_size=float(server.server_type.disk),
        created_from=(server.id, server.name),
        labels=labels,
        executes=bool(source and source.executes),
        origin_name=source.origin_name if source else "",
    )
    ctx.store.images[image.id] = image
    action = ctx.store.new_action(
        "create_image",
        [(server.id, "server"), (image.id, "image")],
        expected=ctx.profile.create_image,
    )
    ctx.engine.create_image(server, action, image)
    return action_created(action, image=render.image(image))


@routes.post("/v1/servers/{id}/actions/change_protection")
async def change_protection(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    body = await read_body(request)
    delete = body.boolean("delete", server.protection_delete)
    rebuild = body.boolean("rebuild", server.protection_rebuild)
    body.done()
    server.protection_delete = delete
    server.protection_rebuild = rebuild
    action = ctx.engine.simple(
        "change_protection", [(server.id, "server")], ctx.profile.small_action
    )
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/add_to_placement_group")
async def add_to_placement_group(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    body = await read_body(request)
    group_id = body.integer("placement_group", required=True)
    body.done()
    group = ctx.store.placement_groups.get(group_id or -1)
    if group is None:
        raise APIError(404, "not_found", f"placement group with ID {group_id} not found")
    if server.status != "off":
        raise APIError(422, "server_not_stopped", "the server must be powered off first")
    if server.placement_group_id is not None:
        raise invalid_input(
            "placement_group", f"server {server.id} is already in a placement group"
        )
    if len(ctx.store.servers_in_group(group.id)) >= MAX_GROUP_SIZE:
        raise APIError(
            422, "placement_error", f"placement group {group.name} is full ({MAX_GROUP_SIZE})"
        )
    server.placement_group_id = group.id
    action = ctx.engine.simple(
        "add_to_placement_group",
        [(server.id, "server"), (group.id, "placement_group")],
        ctx.profile.small_action,
    )
    return action_created(action)


@routes.post("/v1/servers/{id}/actions/remove_from_placement_group")
async def remove_from_placement_group(request: web.Request) -> web.Response:
    ctx, server = _server(request)
    if server.placement_group_id is None:
        raise invalid_input("placement_group", f"server {server.id} is in no placement group")
    group_id = server.placement_group_id
    server.placement_group_id = None
    action = ctx.engine.simple(
        "remove_from_placement_group",
        [(server.id, "server"), (group_id, "placement_group")],
        ctx.profile.small_action,
    )
    return action_created(action)


async def _unsupported(request: web.Request) -> web.Response:
    path_item(request, context(request).store.servers, "server")
    command = request.path.rsplit("/", 1)[-1]
    raise APIError(
        422, "unsupported_error", f"server action {command!r} is not supported by the emulator"
    )


for _command in UNSUPPORTED:
    routes.post(f"/v1/servers/{{id}}/actions/{_command}")(_unsupported)
