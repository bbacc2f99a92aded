"""The aiohttp application of the emulated Hetzner Cloud API."""

from __future__ import annotations

import logging

from aiohttp import web

from . import (
    actions,
    catalog_routes,
    firewalls,
    images,
    introspection,
    networks,
    placement_groups,
    server_actions,
    servers,
    ssh_keys,
)
from .context import CONTEXT, Context
from .middleware import api_middleware

logger = logging.getLogger(__name__)

__all__ = ["build_app"]


def build_app(ctx: Context) -> web.Application:
    """Create the application serving ``/v1`` and ``/_emulator`` for ``ctx``."""
    app = web.Application(middlewares=[api_middleware])
    app[CONTEXT] = ctx
    # The action lists (/servers/actions, ...) first: /servers/{id} would shadow them.
    actions.register(app)
    for table in (
        servers.routes,
        server_actions.routes,
        networks.routes,
        firewalls.routes,
        ssh_keys.routes,
        placement_groups.routes,
        images.routes,
        catalog_routes.routes,
        introspection.routes,
    ):
        app.router.add_routes(table)
    app.router.add_routes(catalog_routes.empty_collection_routes())
    return app
