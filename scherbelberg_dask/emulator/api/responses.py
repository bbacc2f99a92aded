"""JSON answers (the API always answers JSON, errors included)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from ..store import Action
from . import render

logger = logging.getLogger(__name__)

__all__ = ["action_created", "json_response", "no_content"]


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON answer with ``Content-Type: application/json``."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode("utf-8"),
        status=status,
        content_type="application/json",
    )


def action_created(action: Action, **extra: Any) -> web.Response:
    """``201 Created`` with ``{"action": ...}`` (and the ``extra`` keys) for a started action."""
    return json_response({"action": render.action(action), **extra}, 201)


def no_content() -> web.Response:
    """``204 No Content`` (DELETE of keys, networks, firewalls, groups, images)."""
    return web.Response(status=204)
