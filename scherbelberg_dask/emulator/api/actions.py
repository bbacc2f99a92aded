"""Actions: ``/actions`` (batched by id) and the per-resource action lists.

``GET /actions`` without ``id`` is refused with 410 ``deprecated_api_endpoint``, as the
real API does since 2025-01-30.  Unknown ids are left out of batched answers, which
are sorted by ``sort`` and not paginated; ``status``, ``page`` and ``per_page`` are not
documented for ``/actions`` and so are ignored there (see :mod:`.listing`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..store import Action
from . import render
from .context import context
from .errors import APIError, not_found
from .listing import Query, list_response, sort_items
from .lookup import path_id, path_item
from .responses import json_response

logger = logging.getLogger(__name__)

__all__ = ["register"]

STATUSES = ("running", "success", "error")
SORT: dict[str, Callable[[Action], Any]] = {
    "id": lambda a: a.id,
    "command": lambda a: a.command,
    "status": lambda a: a.status,
    "started": lambda a: a.started,
    "finished": lambda a: a.finished,
}
_ANNOUNCEMENT = (
    "https://docs.hetzner.cloud/changelog#"
    "2025-01-30-listing-arbitrary-actions-in-the-actions-list-endpoint-is-removed"
)


def _filtered(actions: list[Action], query: Query) -> list[Action]:
    statuses = query.choices("status", STATUSES)
    ids = query.int_list("id")
    if statuses:
        actions = [a for a in actions if a.status in statuses]
    if ids:
        wanted = set(ids)
        actions = [a for a in actions if a.id in wanted]
    return actions


async def get_actions(request: web.Request) -> web.Response:
    """``GET /actions?id=..&id=..``: every requested action that exists, unpaginated."""
    ctx = context(request)
    query = Query(request)
    if not query.all("id"):
        raise APIError(
            410,
            "deprecated_api_endpoint",
            "listing actions without ids was removed; pass ?id=<action id> (repeatable)",
            {"announcement": _ANNOUNCEMENT},
        )
    items = sort_items(_filtered(list(ctx.store.actions.values()), query), query, SORT)
    return json_response(
        {
            "actions": [render.action(a) for a in items],
            "meta": {
                "pagination": {
                    "page": 1,
                    "per_page": max(1, len(items)),
                    "previous_page": None,
                    "next_page": None,
                    "last_page": 1,
                    "total_entries": len(items),
                }
            },
        }
    )


async def get_action(request: web.Request) -> web.Response:
    """``GET /actions/{id}``."""
    action = path_item(request, context(request).store.actions, "action")
    return json_response({"action": render.action(action)})


def _family_routes(
    plural: str, kind: str, table: Callable[[Any], dict[int, Any]]
) -> list[web.RouteDef]:
    """The four action routes of one resource family (``servers``, ``networks``, ...)."""

    async def list_family(request: web.Request) -> web.Response:
        ctx = context(request)
        query = Query(request)
        items = _filtered([a for a in ctx.store.actions.values() if a.concerns(kind)], query)
        return json_response(list_response("actions", items, query, render.action, SORT))

    async def get_family(request: web.Request) -> web.Response:
        ctx = context(request)
        action = path_item(request, ctx.store.actions, "action")
        if not action.concerns(kind):
            raise not_found("action", action.id)
        return json_response({"action": render.action(action)})

    async def list_resource(request: web.Request) -> web.Response:
        ctx = context(request)
        resource_id = path_id(request)
        if resource_id not in table(ctx):
            raise not_found(kind, resource_id)
        query = Query(request)
        items = _filtered(
            [a for a in ctx.store.actions.values() if a.concerns(kind, resource_id)], query
        )
        return json_response(list_response("actions", items, query, render.action, SORT))

    async def get_resource(request: web.Request) -> web.Response:
        ctx = context(request)
        resource_id = path_id(request)
        if resource_id not in table(ctx):
            raise not_found(kind, resource_id)
        action = path_item(request, ctx.store.actions, "action", name="action_id")
        if not action.concerns(kind, resource_id):
            raise not_found("action", action.id)
        return json_response({"action": render.action(action)})

    return [
        web.get(f"/v1/{plural}/actions", list_family),
        web.get(f"/v1/{plural}/actions/{{id}}", get_family),
        web.get(f"/v1/{plural}/{{id}}/actions", list_resource),
        web.get(f"/v1/{plural}/{{id}}/actions/{{action_id}}", get_resource),
    ]


def register(app: web.Application) -> None:
    """Add the action routes (before the resource routes, which they shadow)."""
    app.router.add_get("/v1/actions", get_actions)
    app.router.add_get("/v1/actions/{id}", get_action)
    families: list[tuple[str, str, Callable[[Any], dict[int, Any]]]] = [
        ("servers", "server", lambda ctx: ctx.store.servers),
        ("networks", "network", lambda ctx: ctx.store.networks),
        ("firewalls", "firewall", lambda ctx: ctx.store.firewalls),
        ("images", "image", lambda ctx: ctx.store.images),
    ]
    for plural, kind, table in families:
        app.router.add_routes(_family_routes(plural, kind, table))
