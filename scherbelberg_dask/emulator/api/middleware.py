"""Cross-cutting request handling: latency, rate limit, auth, fault injection, errors.

Order for ``/v1`` requests: API latency, rate limit (unauthenticated requests count
too), Bearer auth, injected faults, the handler.  Every answer is JSON (errors use the
Hetzner envelope) and carries ``X-Correlation-Id`` and the three ``RateLimit-*``
headers.  Introspection routes (``/_emulator/``) need the token too but are neither
rate limited, fault injected nor counted.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from .context import Context, ResponseRecord, context
from .errors import APIError
from .responses import json_response

logger = logging.getLogger(__name__)

__all__ = ["API_PREFIX", "INTROSPECTION_PREFIX", "api_middleware", "route_template"]

API_PREFIX = "/v1"
INTROSPECTION_PREFIX = "/_emulator"


def route_template(request: web.Request) -> str | None:
    """The matched route's template (``/v1/servers/{id}``), or ``None``."""
    resource = getattr(request.match_info.route, "resource", None)
    return None if resource is None else resource.canonical


def _check_auth(ctx: Context, request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "unauthorized", "request was made without a valid API token")
    if hmac.compare_digest(token.encode(), ctx.token.encode()):
        return
    if hmac.compare_digest(token.encode(), ctx.readonly_token.encode()):
        if request.method in ("GET", "HEAD"):
            return
        raise APIError(401, "token_readonly", "the API token is read-only")
    raise APIError(401, "unauthorized", "unable to authenticate: invalid API token")


def _error_for_http(exc: web.HTTPException) -> APIError:
    if isinstance(exc, web.HTTPNotFound):
        return APIError(404, "not_found", "no such API endpoint")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return APIError(405, "method_not_allowed", "method not allowed for this endpoint")
    if exc.status >= 500:
        return APIError(exc.status, "server_error", exc.reason)
    return APIError(exc.status, "invalid_input", exc.reason)


async def _dispatch(
    ctx: Context, request: web.Request, handler: Handler, endpoint: str
) -> web.StreamResponse:
    is_api = request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")
    if is_api:
        if ctx.profile.api_latency > 0:
            await asyncio.sleep(ctx.profile.api_latency)
        if not ctx.bucket.take():
            raise APIError(429, "rate_limit_exceeded", "rate limit exceeded, retry later")
    _check_auth(ctx, request)
    if is_api:
        injected = ctx.faults.pick_api_error(endpoint)
        if injected is not None:
            logger.info("injecting %s into %s", injected.code, endpoint)
            raise APIError(injected.status, injected.code, injected.message)
    return await handler(request)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Wrap every request: see the module docstring."""
    ctx = context(request)
    route = route_template(request)
    endpoint = f"{request.method} {route or '<unknown>'}"
    is_introspection = request.path.startswith(INTROSPECTION_PREFIX + "/")
    try:
        response = await _dispatch(ctx, request, handler, endpoint)
    except APIError as exc:
        response = json_response(exc.body(), exc.status)
    except web.HTTPException as exc:
        error = _error_for_http(exc)
        response = json_response(error.body(), error.status)
    except Exception:
        logger.exception("internal error answering %s %s", request.method, request.path)
        error = APIError(500, "server_error", "internal error in the emulator")
        response = json_response(error.body(), error.status)

    response.headers["X-Correlation-Id"] = str(uuid.uuid4())
    if not is_introspection:
        response.headers.update(ctx.bucket.headers())
        ctx.counters.count(endpoint, response.status)
        _notify(ctx, request, route, response)
    return response


def _notify(
    ctx: Context, request: web.Request, route: str | None, response: web.StreamResponse
) -> None:
    if not ctx.observers:
        return
    body = response.body if isinstance(response, web.Response) else None
    record = ResponseRecord(
        method=request.method,
        path=request.path,
        route=route,
        status=response.status,
        content_type=response.headers.get("Content-Type"),
        body=body if isinstance(body, bytes) else b"",
    )
    for observer in list(ctx.observers):
        try:
            observer(record)
        except Exception:
            logger.exception("response observer failed")
