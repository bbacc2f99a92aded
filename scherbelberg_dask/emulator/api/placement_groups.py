"""``/placement_groups``: spread groups (at most 10 servers each)."""

from __future__ import annotations

import logging

from aiohttp import web

from ..store import PlacementGroup, utcnow
from . import render
from .body import read_body
from .context import context
from .errors import APIError
from .listing import Query, filter_common, list_response
from .lookup import path_item, rename_and_relabel, unique_name
from .responses import json_response, no_content

logger = logging.getLogger(__name__)

__all__ = ["routes"]

routes = web.RouteTableDef()

_SORT = {
    "id": lambda g: g.id,
    "name": lambda g: g.name,
    "created": lambda g: g.created,
}


@routes.get("/v1/placement_groups")
async def list_groups(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    types = query.choices("type", ("spread",))
    items = filter_common(
        ctx.store.placement_groups.values(), query, name=lambda g: g.name, labels=lambda g: g.labels
    )
    if types:
        items = [group for group in items if group.type in types]
    return json_response(
        list_response(
            "placement_groups", items, query, lambda g: render.placement_group(g, ctx.store), _SORT
        )
    )


@routes.post("/v1/placement_groups")
async def create_group(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    name = body.name()
    kind = body.string("type", required=True)
    if kind is not None and kind != "spread":
        body.errors.add("type", "must be 'spread'")
    labels = body.labels() or {}
    body.done()
    unique_name(ctx.store.placement_groups.values(), name, lambda g: g.name, "placement group")
    group = PlacementGroup(
        id=ctx.store.new_id(), name=name, type="spread", labels=labels, created=utcnow()
    )
    ctx.store.placement_groups[group.id] = group
    return json_response(
        {"placement_group": render.placement_group(group, ctx.store), "action": None}, 201
    )


@routes.get("/v1/placement_groups/{id}")
async def get_group(request: web.Request) -> web.Response:
    ctx = context(request)
    group = path_item(request, ctx.store.placement_groups, "placement group")
    return json_response({"placement_group": render.placement_group(group, ctx.store)})


@routes.put("/v1/placement_groups/{id}")
async def update_group(request: web.Request) -> web.Response:
    ctx = context(request)
    group = path_item(request, ctx.store.placement_groups, "placement group")
    body = await read_body(request)
    rename_and_relabel(body, ctx.store.placement_groups.values(), group, "placement group")
    return json_response({"placement_group": render.placement_group(group, ctx.store)})


@routes.delete("/v1/placement_groups/{id}")
async def delete_group(request: web.Request) -> web.Response:
    ctx = context(request)
    group = path_item(request, ctx.store.placement_groups, "placement group")
    members = ctx.store.servers_in_group(group.id)
    if members:
        raise APIError(
            422, "resource_in_use", f"placement group {group.id} still holds servers {members}"
        )
    del ctx.store.placement_groups[group.id]
    return no_content()
