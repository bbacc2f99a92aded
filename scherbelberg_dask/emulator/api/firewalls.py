"""``/firewalls``: rules and where they apply (servers, label selectors).

The emulator keeps firewalls as API objects only: traffic between loopback addresses is
not filtered.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from aiohttp import web

from ..store import Action, Firewall, FirewallTarget, utcnow
from . import render
from .body import Body, read_body
from .context import Context, context
from .errors import APIError
from .labels import LabelSelector
from .listing import Query, filter_common, list_response
from .lookup import path_item, rename_and_relabel, unique_name
from .responses import json_response, no_content
from .servers import MAX_FIREWALLS_PER_SERVER

logger = logging.getLogger(__name__)

__all__ = ["routes"]

routes = web.RouteTableDef()

MAX_RULES = 50
MAX_IPS = 100
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_SORT = {
    "id": lambda f: f.id,
    "name": lambda f: f.name,
    "created": lambda f: f.created,
}


def _ips(value: Any, field: str, body: Body) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        body.errors.add(field, "must be a list of CIDR strings")
        return []
    if len(value) > MAX_IPS:
        body.errors.add(field, f"at most {MAX_IPS} entries")
    result = []
    for text in value:
        try:
            result.append(str(ipaddress.ip_network(text, strict=True)))
        except ValueError as exc:
            body.errors.add(field, f"{text!r} is not a valid CIDR: {exc}")
    return result


def _port(value: Any, field: str, body: Body) -> str | None:
    if not isinstance(value, str):
        body.errors.add(field, "port is required for tcp and udp (e.g. '22' or '1024-5000')")
        return None
    match = _PORT.match(value)
    if match is None:
        body.errors.add(field, f"invalid port {value!r}")
        return None
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 1 <= low <= high <= 65535:
        body.errors.add(field, f"invalid port range {value!r}")
        return None
    return value


def _list_field(body: Body, field: str, required: bool) -> Any:
    """The raw value of ``field`` (missing or null: ``[]``); missing is an error if ``required``."""
    if required and field not in body.data:
        body.errors.add(field, "is required")
    return body.data.get(field) or []


def _parse_rules(body: Body, *, required: bool = False) -> list[dict[str, Any]]:
    field = "rules"
    raw = _list_field(body, field, required)
    if not isinstance(raw, list):
        body.errors.add(field, "must be a list of rules")
        return []
    if len(raw) > MAX_RULES:
        body.errors.add(field, f"at most {MAX_RULES} rules per firewall")
    rules = []
    for index, data in enumerate(raw):
        where = f"{field}[{index}]"
        if not isinstance(data, dict):
            body.errors.add(where, "must be an object")
            continue
        direction = data.get("direction")
        protocol = data.get("protocol")
        if direction not in ("in", "out"):
            body.errors.add(where, "direction must be 'in' or 'out'")
        if protocol not in ("tcp", "udp", "icmp", "esp", "gre"):
            body.errors.add(where, "protocol must be one of tcp, udp, icmp, esp, gre")
        port = None
        if protocol in ("tcp", "udp"):
            port = _port(data.get("port"), where, body)
        elif data.get("port") is not None:
            body.errors.add(where, f"port is only allowed for tcp and udp, not {protocol}")
        source = _ips(data.get("source_ips"), where, body)
        destination = _ips(data.get("destination_ips"), where, body)
        if direction == "in" and not source:
            body.errors.add(where, "source_ips are required for inbound rules")
        if direction == "out" and not destination:
            body.errors.add(where, "destination_ips are required for outbound rules")
        description = data.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            body.errors.add(where, "description must be a string of at most 255 characters")
        rules.append(
            {
                "direction": direction,
                "protocol": protocol,
                "port": port,
                "source_ips": source if direction == "in" else [],
                "destination_ips": destination if direction == "out" else [],
                "description": description,
            }
        )
    return rules


def _parse_targets(body: Body, field: str, *, required: bool = False) -> list[FirewallTarget]:
    raw = _list_field(body, field, required)
    if not isinstance(raw, list):
        body.errors.add(field, "must be a list")
        return []
    targets = []
    for index, data in enumerate(raw):
        where = f"{field}[{index}]"
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "server":
            server = data.get("server")
            server_id = server.get("id") if isinstance(server, dict) else None
            if not isinstance(server_id, int) or isinstance(server_id, bool):
                body.errors.add(where, "server.id must be an integer")
                continue
            targets.append(FirewallTarget("server", server_id=server_id))
        elif kind == "label_selector":
            selector = data.get("label_selector")
            text = selector.get("selector") if isinstance(selector, dict) else None
            if not isinstance(text, str):
                body.errors.add(where, "label_selector.selector must be a string")
                continue
            LabelSelector(text, field=where)
            targets.append(FirewallTarget("label_selector", selector=text))
        else:
            body.errors.add(where, "type must be 'server' or 'label_selector'")
    return targets


def _check_targets(ctx: Context, firewall: Firewall, targets: list[FirewallTarget]) -> None:
    for target in targets:
        if target in firewall.applied_to or targets.count(target) > 1:
            raise APIError(
                422, "firewall_already_applied", f"firewall {firewall.id} is already applied there"
            )
        if target.type != "server":
            continue
        server = ctx.store.servers.get(target.server_id or -1)
        if server is None:
            raise APIError(
                404, "firewall_resource_not_found", f"server {target.server_id} not found"
            )
        if server.public_ipv4 is None and server.public_ipv6 is None:
            raise APIError(
                422, "private_net_only_server", f"server {server.id} has no public interface"
            )
        applied = sum(
            1
            for other in ctx.store.firewalls.values()
            if server.id in render.firewall_server_ids(other, ctx.store)
        )
        if applied >= MAX_FIREWALLS_PER_SERVER:
            raise APIError(
                422,
                "resource_limit_exceeded",
                f"server {server.id} already has {MAX_FIREWALLS_PER_SERVER} firewalls",
                {"limits": [{"name": "firewalls_per_server"}]},
            )


def _apply_actions(
    ctx: Context, firewall: Firewall, targets: list[FirewallTarget], command: str
) -> list[Action]:
    """One action per target; servers stay ``pending`` until theirs succeeds."""
    actions = []
    for target in targets:
        resources: list[tuple[int, str]] = [(firewall.id, "firewall")]
        if target.type == "server" and target.server_id is not None:
            resources.append((target.server_id, "server"))
            if command == "apply_firewall":
                firewall.pending.add(target.server_id)
        server_id = target.server_id

        def settle(server_id: int | None = server_id) -> None:
            if server_id is not None:
                firewall.pending.discard(server_id)

        actions.append(ctx.engine.simple(command, resources, ctx.profile.firewall_change, settle))
    return actions


def _set_rules_actions(
    ctx: Context, firewall: Firewall, targets: list[FirewallTarget]
) -> list[Action]:
    """``set_firewall_rules``, then the ``apply_firewall`` actions of ``targets``."""
    set_rules = ctx.engine.simple(
        "set_firewall_rules", [(firewall.id, "firewall")], ctx.profile.firewall_change
    )
    return [set_rules, *_apply_actions(ctx, firewall, targets, "apply_firewall")]


async def _targets_request(
    request: web.Request, field: str
) -> tuple[Context, Firewall, list[FirewallTarget]]:
    """The firewall in the path and the valid targets the body lists in ``field``."""
    ctx = context(request)
    firewall = path_item(request, ctx.store.firewalls, "firewall")
    body = await read_body(request)
    targets = _parse_targets(body, field, required=True)
    body.done()
    return ctx, firewall, targets


def _actions_created(actions: list[Action], **extra: Any) -> web.Response:
    return json_response({**extra, "actions": [render.action(a) for a in actions]}, 201)


@routes.get("/v1/firewalls")
async def list_firewalls(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(
        ctx.store.firewalls.values(), query, name=lambda f: f.name, labels=lambda f: f.labels
    )
    return json_response(
        list_response("firewalls", items, query, lambda f: render.firewall(f, ctx.store), _SORT)
    )


@routes.post("/v1/firewalls")
async def create_firewall(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    name = body.name(max_length=128)
    labels = body.labels() or {}
    rules = _parse_rules(body)
    targets = _parse_targets(body, "apply_to")
    body.done()
    unique_name(ctx.store.firewalls.values(), name, lambda f: f.name, "firewall")
    firewall = Firewall(id=ctx.store.new_id(), name=name, labels=labels, created=utcnow())
    firewall.rules = rules
    _check_targets(ctx, firewall, targets)
    ctx.store.firewalls[firewall.id] = firewall
    firewall.applied_to.extend(targets)
    actions = _set_rules_actions(ctx, firewall, targets)
    return _actions_created(actions, firewall=render.firewall(firewall, ctx.store))


@routes.get("/v1/firewalls/{id}")
async def get_firewall(request: web.Request) -> web.Response:
    ctx = context(request)
    firewall = path_item(request, ctx.store.firewalls, "firewall")
    return json_response({"firewall": render.firewall(firewall, ctx.store)})


@routes.put("/v1/firewalls/{id}")
async def update_firewall(request: web.Request) -> web.Response:
    ctx = context(request)
    firewall = path_item(request, ctx.store.firewalls, "firewall")
    body = await read_body(request)
    rename_and_relabel(body, ctx.store.firewalls.values(), firewall, "firewall")
    return json_response({"firewall": render.firewall(firewall, ctx.store)})


@routes.delete("/v1/firewalls/{id}")
async def delete_firewall(request: web.Request) -> web.Response:
    ctx = context(request)
    firewall = path_item(request, ctx.store.firewalls, "firewall")
    if firewall.applied_to:
        raise APIError(
            422, "resource_in_use", f"firewall {firewall.id} is still applied to resources"
        )
    del ctx.store.firewalls[firewall.id]
    return no_content()


@routes.post("/v1/firewalls/{id}/actions/set_rules")
async def set_rules(request: web.Request) -> web.Response:
    ctx = context(request)
    firewall = path_item(request, ctx.store.firewalls, "firewall")
    body = await read_body(request)
    rules = _parse_rules(body, required=True)
    body.done()
    firewall.rules = rules
    servers = [
        FirewallTarget("server", server_id=sid)
        for sid in render.firewall_server_ids(firewall, ctx.store)
    ]
    return _actions_created(_set_rules_actions(ctx, firewall, servers))


@routes.post("/v1/firewalls/{id}/actions/apply_to_resources")
async def apply_to_resources(request: web.Request) -> web.Response:
    ctx, firewall, targets = await _targets_request(request, "apply_to")
    _check_targets(ctx, firewall, targets)
    firewall.applied_to.extend(targets)
    return _actions_created(_apply_actions(ctx, firewall, targets, "apply_firewall"))


@routes.post("/v1/firewalls/{id}/actions/remove_from_resources")
async def remove_from_resources(request: web.Request) -> web.Response:
    ctx, firewall, targets = await _targets_request(request, "remove_from")
    for target in targets:
        if target not in firewall.applied_to:
            raise APIError(
                404,
                "firewall_resource_not_found",
                f"firewall {firewall.id} is not applied to that resource",
            )
    for target in targets:
        firewall.applied_to.remove(target)
        if target.server_id is not None:
            firewall.pending.discard(target.server_id)
    return _actions_created(_apply_actions(ctx, firewall, targets, "remove_firewall"))
