"""The catalog endpoints: server types, locations, datacenters, pricing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from . import render
from .context import context
from .errors import not_found
from .listing import Query, filter_common, list_response
from .lookup import path_id
from .responses import json_response

logger = logging.getLogger(__name__)

__all__ = ["EMPTY_COLLECTIONS", "empty_collection_routes", "routes"]

routes = web.RouteTableDef()

T = TypeVar("T")

_SORT_LOCATIONS = {"id": lambda loc: loc.id, "name": lambda loc: loc.name}
_SORT_DATACENTERS = {
    "id": lambda loc: loc.datacenter.id,
    "name": lambda loc: loc.datacenter.name,
}


def _catalog_item(request: web.Request, lookup: Callable[[int], T | None], kind: str) -> T:
    """The catalog entry whose id is in the URL path, or 404 ``not_found``."""
    ident = path_id(request)
    item = lookup(ident)
    if item is None:
        raise not_found(kind, ident)
    return item


@routes.get("/v1/server_types")
async def list_server_types(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(ctx.catalog.server_types, query, name=lambda t: t.name)
    return json_response(
        list_response(
            "server_types", items, query, lambda t: render.server_type(t, ctx.catalog), None
        )
    )


@routes.get("/v1/server_types/{id}")
async def get_server_type(request: web.Request) -> web.Response:
    ctx = context(request)
    server_type = _catalog_item(request, ctx.catalog.server_type, "server type")
    return json_response({"server_type": render.server_type(server_type, ctx.catalog)})


@routes.get("/v1/locations")
async def list_locations(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(ctx.catalog.locations, query, name=lambda loc: loc.name)
    return json_response(list_response("locations", items, query, render.location, _SORT_LOCATIONS))


@routes.get("/v1/locations/{id}")
async def get_location(request: web.Request) -> web.Response:
    location = _catalog_item(request, context(request).catalog.location, "location")
    return json_response({"location": render.location(location)})


@routes.get("/v1/datacenters")
async def list_datacenters(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(ctx.catalog.locations, query, name=lambda loc: loc.datacenter.name)
    answer = list_response(
        "datacenters",
        items,
        query,
        lambda loc: render.datacenter(loc, ctx.catalog),
        _SORT_DATACENTERS,
    )
    answer["recommendation"] = ctx.catalog.locations[0].datacenter.id
    return json_response(answer)


@routes.get("/v1/datacenters/{id}")
async def get_datacenter(request: web.Request) -> web.Response:
    ctx = context(request)
    location = _catalog_item(request, ctx.catalog.datacenter, "datacenter")
    return json_response({"datacenter": render.datacenter(location, ctx.catalog)})


@routes.get("/v1/pricing")
async def get_pricing(request: web.Request) -> web.Response:
    return json_response({"pricing": render.pricing(context(request).catalog)})


#: Collections the emulator does not model, with the fields their list operation sorts
#: by (empty: it documents no ``sort``).  Listed as empty so that clients that look them
#: up (volumes of a server, floating IPs, ...) get a well-formed answer.
EMPTY_COLLECTIONS: dict[str, tuple[str, ...]] = {
    "certificates": ("id", "name", "created"),
    "floating_ips": ("id", "created"),
    "isos": (),
    "load_balancer_types": (),
    "load_balancers": ("id", "name", "created"),
    "primary_ips": ("id", "created"),
    "volumes": ("id", "name", "created"),
}


def empty_collection_routes() -> list[web.RouteDef]:
    """``GET /v1/<collection>`` answering an empty list, for :data:`EMPTY_COLLECTIONS`.

    The documented ``sort``, ``label_selector`` and pagination parameters are still
    validated, so a bad value gives 422 ``invalid_input`` as for the modelled lists.
    """

    def route(key: str, fields: tuple[str, ...]) -> web.RouteDef:
        sort_keys: dict[str, Callable[[object], object]] | None = (
            {field: lambda item: None for field in fields} if fields else None
        )

        async def handler(request: web.Request) -> web.Response:
            query = Query(request)
            query.selector()
            return json_response(list_response(key, [], query, lambda item: {}, sort_keys))

        return web.get(f"/v1/{key}", handler)

    return [route(key, fields) for key, fields in EMPTY_COLLECTIONS.items()]
