"""``/images``: system images per architecture and the project's snapshots.

Deprecated images are left out of lists unless ``include_deprecated=true``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from aiohttp import web

from . import render
from .body import read_body
from .context import context
from .errors import APIError
from .listing import Query, filter_common, list_response
from .lookup import path_item
from .responses import action_created, json_response, no_content

logger = logging.getLogger(__name__)

__all__ = ["routes"]

routes = web.RouteTableDef()

TYPES = ("system", "snapshot", "backup", "app")
STATUSES = ("available", "creating", "unavailable")
_SORT = {
    "id": lambda i: i.id,
    "name": lambda i: i.name,
    "created": lambda i: i.created,
}


@routes.get("/v1/images")
async def list_images(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    types = query.choices("type", TYPES)
    statuses = query.choices("status", STATUSES)
    architectures = query.choices("architecture", ("x86", "arm"))
    bound_to = query.int_list("bound_to")
    include_deprecated = query.boolean("include_deprecated") or False
    items = filter_common(
        ctx.store.images.values(), query, name=lambda i: i.name, labels=lambda i: i.labels
    )
    items = [
        image
        for image in items
        if (not types or image.type in types)
        and (not statuses or image.status in statuses)
        and (not architectures or image.architecture in architectures)
        and (not bound_to or image.bound_to in bound_to)
        and (include_deprecated or image.deprecated is None)
    ]
    return json_response(list_response("images", items, query, render.image, _SORT))


@routes.get("/v1/images/{id}")
async def get_image(request: web.Request) -> web.Response:
    image = path_item(request, context(request).store.images, "image")
    return json_response({"image": render.image(image)})


@routes.put("/v1/images/{id}")
async def update_image(request: web.Request) -> web.Response:
    ctx = context(request)
    image = path_item(request, ctx.store.images, "image")
    body = await read_body(request)
    description = body.string("description")
    kind = body.string("type")
    if kind is not None and kind != "snapshot":
        body.errors.add("type", "can only be changed to 'snapshot'")
    labels = body.labels()
    body.done()
    if image.type == "system" and (description is not None or kind is not None):
        raise APIError(403, "forbidden", "system images cannot be changed")
    if description is not None:
        image.description = description
    if kind is not None:
        image.type = kind
        image.bound_to = None
    if labels is not None:
        image.labels = labels
    return json_response({"image": render.image(image)})


@routes.delete("/v1/images/{id}")
async def delete_image(request: web.Request) -> web.Response:
    ctx = context(request)
    image = path_item(request, ctx.store.images, "image")
    if image.type not in ("snapshot", "backup"):
        raise APIError(403, "forbidden", f"image {image.id} is a {image.type} image")
    if image.protection_delete:
        raise APIError(423, "protected", f"image {image.id} is protected against deletion")
    del ctx.store.images[image.id]
    # The image's own layer goes, unless a server still boots from it (a container
    # server reads its snapshot's layers for as long as it lives).
    in_use = {
        layer
        for server in ctx.store.servers.values()
        if server.machine is not None
        for layer in server.machine.spec.layers
    }
    if image.layers and image.layers[-1] not in in_use:
        await asyncio.to_thread(shutil.rmtree, image.layers[-1], True)
    return no_content()


@routes.post("/v1/images/{id}/actions/change_protection")
async def change_protection(request: web.Request) -> web.Response:
    ctx = context(request)
    image = path_item(request, ctx.store.images, "image")
    body = await read_body(request)
    delete = body.boolean("delete", image.protection_delete)
    body.done()
    if image.type == "system":
        raise APIError(403, "forbidden", "system images cannot be protected")
    image.protection_delete = delete
    action = ctx.engine.simple("change_protection", [(image.id, "image")], ctx.profile.small_action)
    return action_created(action)
