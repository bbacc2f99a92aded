"""``/_emulator/``: state, counters and fault injection for tests in other processes.

Routes (Bearer token required, not rate limited, not counted):

``GET state``
    :func:`snapshot` of every resource.
``GET counters`` / ``POST counters/reset``
    Request counts by route template and by status.
``GET faults`` / ``PUT faults``
    :meth:`Faults.to_dict` / :meth:`Faults.update` (only the keys given change).
``POST servers/{id}/crash`` ``{"after": seconds}``
    Crash a server now or later.
``POST servers/{id}/refuse_ssh`` ``{"seconds": seconds}``
    Refuse new SSH connections for a while.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from aiohttp import web

from .body import read_body
from .context import Context, context
from .errors import APIError, invalid_input
from .lookup import path_item
from .render import firewall_server_ids
from .responses import json_response

logger = logging.getLogger(__name__)

__all__ = ["routes", "snapshot"]

routes = web.RouteTableDef()


def snapshot(ctx: Context) -> dict[str, Any]:
    """A plain dict of the project's current resources."""
    store = ctx.store
    statuses = collections.Counter(action.status for action in store.actions.values())
    return {
        "emulator_id": ctx.emulator_id,
        "directory": str(ctx.engine.root),
        "servers": [
            {
                "id": s.id,
                "name": s.name,
                "status": s.status,
                "server_type": s.server_type.name,
                "location": s.location.name,
                "image": None if s.image is None else (s.image.name or s.image.id),
                "public_ipv4": s.public_ipv4,
                "public_ipv6": s.public_ipv6,
                "private_net": [
                    {"network": n.network_id, "ip": n.ip, "alias_ips": list(n.alias_ips)}
                    for n in s.private_net
                ],
                "labels": dict(s.labels),
                "placement_group": s.placement_group_id,
                "executes": bool(s.image and s.image.executes),
                "ssh_up": s.machine_ips is not None,
                "machine_error": s.machine_error,
            }
            for s in sorted(store.servers.values(), key=lambda s: s.id)
        ],
        "networks": [
            {
                "id": n.id,
                "name": n.name,
                "ip_range": str(n.ip_range),
                "subnets": [
                    {"ip_range": str(sub.ip_range), "network_zone": sub.network_zone}
                    for sub in n.subnets
                ],
                "labels": dict(n.labels),
                "servers": sorted(s.id for s in store.servers_in_network(n.id)),
            }
            for n in store.networks.values()
        ],
        "firewalls": [
            {
                "id": f.id,
                "name": f.name,
                "labels": dict(f.labels),
                "rules": [dict(rule) for rule in f.rules],
                "servers": firewall_server_ids(f, store),
            }
            for f in store.firewalls.values()
        ],
        "ssh_keys": [
            {"id": k.id, "name": k.name, "fingerprint": k.fingerprint, "labels": dict(k.labels)}
            for k in store.ssh_keys.values()
        ],
        "placement_groups": [
            {
                "id": g.id,
                "name": g.name,
                "labels": dict(g.labels),
                "servers": store.servers_in_group(g.id),
            }
            for g in store.placement_groups.values()
        ],
        "images": [
            {
                "id": i.id,
                "type": i.type,
                "status": i.status,
                "description": i.description,
                "labels": dict(i.labels),
                "created_from": None if i.created_from is None else i.created_from[0],
                "executes": i.executes,
            }
            for i in store.images.values()
            if i.type != "system"
        ],
        "actions": {
            "total": len(store.actions),
            "running": statuses.get("running", 0),
            "by_status": dict(statuses),
        },
    }


@routes.get("/_emulator/state")
async def get_state(request: web.Request) -> web.Response:
    return json_response(snapshot(context(request)))


@routes.get("/_emulator/counters")
async def get_counters(request: web.Request) -> web.Response:
    return json_response(context(request).counters.to_dict())


@routes.post("/_emulator/counters/reset")
async def reset_counters(request: web.Request) -> web.Response:
    ctx = context(request)
    ctx.counters.reset()
    ctx.bucket.reset()
    return json_response(ctx.counters.to_dict())


@routes.get("/_emulator/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(context(request).faults.to_dict())


@routes.put("/_emulator/faults")
async def put_faults(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    try:
        ctx.faults.update(body.data)
    except ValueError as exc:
        raise APIError(422, "invalid_input", str(exc)) from None
    return json_response(ctx.faults.to_dict())


def _seconds(data: dict[str, Any], key: str, default: float | None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise invalid_input(key, "must be a non-negative number of seconds")
    return float(value)


@routes.post("/_emulator/servers/{id}/crash")
async def crash_server(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    body = await read_body(request)
    ctx.engine.crash(server, _seconds(body.data, "after", 0.0))
    return json_response({"server": server.id, "crash": "scheduled"}, 202)


@routes.post("/_emulator/servers/{id}/refuse_ssh")
async def refuse_ssh(request: web.Request) -> web.Response:
    ctx = context(request)
    server = path_item(request, ctx.store.servers, "server")
    body = await read_body(request)
    ctx.engine.refuse_ssh(server, _seconds(body.data, "seconds", None))
    return json_response({"server": server.id, "refuse_ssh": "set"}, 202)
