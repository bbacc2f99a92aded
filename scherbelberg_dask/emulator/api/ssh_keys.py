"""``/ssh_keys``: the project's public keys (unique names and fingerprints)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging

from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..store import SSHKey, utcnow
from . import render
from .body import read_body
from .context import context
from .errors import invalid_input, uniqueness_error
from .listing import Query, filter_common, list_response
from .lookup import path_item, rename_and_relabel, unique_name
from .responses import json_response, no_content

logger = logging.getLogger(__name__)

__all__ = ["fingerprint", "routes"]

routes = web.RouteTableDef()

_SORT = {"id": lambda k: k.id, "name": lambda k: k.name}


def fingerprint(public_key: str) -> str:
    """MD5 fingerprint in colon hex, as Hetzner shows it.

    Raises
    ------
    ValueError
        If ``public_key`` is not an OpenSSH public key line.
    """
    text = public_key.strip()
    try:
        serialization.load_ssh_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a valid OpenSSH public key: {exc}") from None
    try:
        blob = base64.b64decode(text.split()[1], validate=True)
    except (IndexError, binascii.Error):
        raise ValueError("not a valid OpenSSH public key") from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@routes.get("/v1/ssh_keys")
async def list_ssh_keys(request: web.Request) -> web.Response:
    ctx = context(request)
    query = Query(request)
    items = filter_common(
        ctx.store.ssh_keys.values(), query, name=lambda k: k.name, labels=lambda k: k.labels
    )
    wanted = query.one("fingerprint")
    if wanted is not None:
        items = [key for key in items if key.fingerprint == wanted]
    return json_response(list_response("ssh_keys", items, query, render.ssh_key, _SORT))


@routes.post("/v1/ssh_keys")
async def create_ssh_key(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    name = body.name()
    public_key = body.string("public_key", required=True)
    labels = body.labels() or {}
    body.done()
    assert public_key is not None
    try:
        digest = fingerprint(public_key)
    except ValueError as exc:
        raise invalid_input("public_key", str(exc)) from None
    unique_name(ctx.store.ssh_keys.values(), name, lambda k: k.name, "SSH key")
    if any(key.fingerprint == digest for key in ctx.store.ssh_keys.values()):
        raise uniqueness_error("public_key", "SSH key with the same fingerprint already exists")
    key = SSHKey(
        id=ctx.store.new_id(),
        name=name,
        public_key=public_key.strip(),
        fingerprint=digest,
        labels=labels,
        created=utcnow(),
    )
    ctx.store.ssh_keys[key.id] = key
    return json_response({"ssh_key": render.ssh_key(key)}, 201)


@routes.get("/v1/ssh_keys/{id}")
async def get_ssh_key(request: web.Request) -> web.Response:
    key = path_item(request, context(request).store.ssh_keys, "SSH key")
    return json_response({"ssh_key": render.ssh_key(key)})


@routes.put("/v1/ssh_keys/{id}")
async def update_ssh_key(request: web.Request) -> web.Response:
    ctx = context(request)
    key = path_item(request, ctx.store.ssh_keys, "SSH key")
    body = await read_body(request)
    rename_and_relabel(body, ctx.store.ssh_keys.values(), key, "SSH key")
    return json_response({"ssh_key": render.ssh_key(key)})


@routes.delete("/v1/ssh_keys/{id}")
async def delete_ssh_key(request: web.Request) -> web.Response:
    ctx = context(request)
    key = path_item(request, ctx.store.ssh_keys, "SSH key")
    del ctx.store.ssh_keys[key.id]
    return no_content()
