"""The Hetzner Cloud API over aiohttp, with a small typed layer of our own (docs/design.md,
"Cloud").

Requests go straight from the event loop through one :class:`aiohttp.ClientSession`;
nothing blocks the loop and no thread is needed.  On top of plain HTTP the client adds
what the cluster needs: pacing by the ``RateLimit-*`` headers, batched action waits,
pagination, retries of idempotent calls, recovery of creates whose answer was lost, typed
servers (:class:`ServerInfo`, :class:`ServerSpec`), and error messages that say what
failed without ever containing the token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json as jsonlib
import logging
import random
import urllib.parse
from datetime import datetime
from typing import Any

import aiohttp

from scherbelberg_dask import config
from scherbelberg_dask._version import __version__
from scherbelberg_dask.cloud.actions import ActionWaiter
from scherbelberg_dask.cloud.catalog import Catalog
from scherbelberg_dask.cloud.errors import CloudAuthError, CloudError, CloudUnreachableError
from scherbelberg_dask.cloud.ratelimit import RateLimitPacer

logger = logging.getLogger(__name__)

#: Error codes after which the same request may simply be sent again.
_TRANSIENT = {"server_error", "unavailable", "timeout", "conflict", "rate_limit_exceeded", "locked"}
#: Error codes after which a create may or may not have happened.
_AMBIGUOUS = {"server_error", "unavailable", "timeout", "unreachable"}
_ATTEMPTS = 6
#: Seconds to connect, and to wait for an answer's bytes.
_CONNECT_TIMEOUT, _READ_TIMEOUT = 10, 60


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What the cluster needs to know of a server, from its API object."""

    id: int
    name: str
    status: str
    public_ip: str | None
    private_ips: tuple[str, ...]
    labels: dict[str, str]
    server_type: str
    location: str
    image: str | None
    created: datetime

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ServerInfo:
        ipv4 = (data.get("public_net") or {}).get("ipv4")
        location = data.get("location") or (data.get("datacenter") or {}).get("location") or {}
        image = data.get("image") or {}
        return cls(
            id=int(data["id"]),
            name=data["name"],
            status=data["status"],
            public_ip=ipv4["ip"] if ipv4 else None,
            private_ips=tuple(net["ip"] for net in data.get("private_net") or []),
            labels=dict(data.get("labels") or {}),
            server_type=data["server_type"]["name"],
            location=location.get("name", ""),
            image=image.get("name") or image.get("description"),
            created=datetime.fromisoformat(data["created"].replace("Z", "+00:00")),
        )


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """What a new server is made of: everything its one create request names.

    The server is created already attached to its network and firewall, with the
    cluster's SSH key, its labels and its cloud-init ``user_data`` (docs/design.md,
    "Cloud"): no call after the create changes it.
    """

    name: str
    server_type: str
    image: str
    location: str
    labels: dict[str, str]
    user_data: str
    ssh_key_ids: tuple[int, ...] = ()
    network_ids: tuple[int, ...] = ()
    firewall_ids: tuple[int, ...] = ()

    def body(self) -> dict[str, Any]:
        """The ``POST /servers`` request body."""
        return {
            "name": self.name,
            "server_type": self.server_type,
            "image": self.image,
            "location": self.location,
            "start_after_create": True,
            "ssh_keys": list(self.ssh_key_ids),
            "networks": list(self.network_ids),
            "firewalls": [{"firewall": i} for i in self.firewall_ids],
            "labels": dict(self.labels),
            "user_data": self.user_data,
        }


class CloudClient:
    """The Hetzner Cloud API, asynchronously.

    Parameters
    ----------
    token
        API token; defaults to ``HCLOUD_TOKEN``.  Never logged or stored.
    endpoint
        API endpoint; defaults to ``HCLOUD_ENDPOINT`` or ``scherbelberg.api.endpoint``.
    """

    def __init__(self, token: str | None = None, endpoint: str | None = None) -> None:
        token = (config.api_token(token) or "").strip()
        if not token:
            raise CloudAuthError(
                "no Hetzner Cloud API token: set HCLOUD_TOKEN (or pass token=...)",
                code="unauthorized",
            )
        if not token.isascii() or not token.isprintable() or " " in token:
            raise CloudAuthError(
                "the Hetzner Cloud API token contains spaces, control or non-ASCII "
                "characters: set HCLOUD_TOKEN to the token exactly as the Cloud Console "
                "shows it",
                code="unauthorized",
            )
        self.endpoint = config.api_endpoint(endpoint).rstrip("/")
        url = urllib.parse.urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise CloudUnreachableError(
                f"{self.endpoint!r} is not an http(s) URL: check HCLOUD_ENDPOINT, "
                "e.g. https://api.hetzner.cloud/v1",
                code="unreachable",
            )
        self._headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": f"scherbelberg-dask/{__version__}",
        }
        self._concurrency = int(config.get("api.max-concurrency"))
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.pacer = RateLimitPacer()
        self._waiter = ActionWaiter(
            self._fetch_actions,
            interval=float(config.get("api.poll-interval")),
            interval_max=float(config.get("api.poll-interval-max")),
        )
        self._catalog: Catalog | None = None
        self.requests = 0  # API requests sent by this client, for diagnostics

    def __repr__(self) -> str:
        return f"<CloudClient endpoint={self.endpoint!r}>"

    async def close(self) -> None:
        """Stop the action poller and close the HTTP session."""
        self._closed = True
        await self._waiter.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ---------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        """The session (made on first use, inside the event loop that uses it)."""
        if self._closed:
            raise CloudError("the API client of this cluster is closed", code="closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=_CONNECT_TIMEOUT, sock_read=_READ_TIMEOUT
                ),
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                raise_for_status=False,
            )
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """One HTTP exchange: the answer's JSON, or :class:`CloudError` with its code."""
        async with self._http().request(
            method, self.endpoint + path, params=_query(params), json=json
        ) as response:
            self.pacer.observe(response)
            content = await response.read()
            status, reason = response.status, response.reason or ""
        payload: Any = {}
        try:
            if content:
                payload = jsonlib.loads(content)
        except ValueError:
            # Not JSON (an HTML error page, a proxy): the HTTP status is all there is.
            raise CloudError(f"{status}: {reason}", code=str(status)) from None
        if status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict) or "code" not in error:
                raise CloudError(f"{status}: {reason}", code=str(status))
            raise CloudError(f"{error['code']}: {error.get('message', '')}", code=error["code"])
        return payload if isinstance(payload, dict) else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        retry: bool | None = None,
    ) -> dict[str, Any]:
        """Send one API request; retry transient failures if ``retry``.

        ``retry`` defaults to True for GET, PUT and DELETE (idempotent) and False for POST.
        """
        if retry is None:
            retry = method != "POST"
        for attempt in range(_ATTEMPTS):
            await self.pacer.wait()
            self.requests += 1
            try:
                return await self._send(method, path, params, json)
            except CloudError as exc:
                code = str(exc.code)
                if code in ("unauthorized", "token_readonly", "401"):
                    raise CloudAuthError(
                        f"the Hetzner Cloud API at {self.endpoint} refused the token "
                        f"({code}); check HCLOUD_TOKEN",
                        code=code,
                    ) from None
                # A 429 or a conflict was refused before anything happened: safe to
                # send again, even a POST.
                refused = code in ("rate_limit_exceeded", "conflict", "locked")
                if (refused or (retry and code in _TRANSIENT)) and attempt < _ATTEMPTS - 1:
                    await _backoff(attempt, f"{method} {path}: {code}")
                    continue
                raise CloudError(f"{method} {path} failed: {exc}", code=code) from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                # Invalid URLs and headers (ValueErrors) fail the same way every time.
                if retry and not isinstance(exc, ValueError) and attempt < _ATTEMPTS - 1:
                    await _backoff(attempt, f"{method} {path}: {type(exc).__name__}")
                    continue
                raise CloudUnreachableError(
                    f"cannot reach the Hetzner Cloud API at {self.endpoint} "
                    f"({type(exc).__name__}); check HCLOUD_ENDPOINT and the network",
                    code="unreachable",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_all(
        self, path: str, key: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """All objects of a paginated list endpoint."""
        items: list[dict[str, Any]] = []
        page: int | None = 1
        while page is not None:
            body = await self.request(
                "GET", path, params={**(params or {}), "page": page, "per_page": 50}
            )
            items.extend(body[key])
            page = ((body.get("meta") or {}).get("pagination") or {}).get("next_page")
        return items

    async def _fetch_actions(self, ids: list[int]) -> list[dict[str, Any]]:
        body = await self.request("GET", "/actions", params={"id": ids, "per_page": 50})
        return list(body["actions"])

    async def wait_actions(self, action_ids: list[int], *, timeout: float, what: str) -> None:
        """Wait (batched with every other waiter of this client) until the actions succeed."""
        await self._waiter.wait(action_ids, timeout=timeout, what=what)

    # -- catalog -----------------------------------------------------------------------

    async def catalog(self) -> Catalog:
        """Server types, locations and images (fetched once per client)."""
        if self._catalog is None:
            try:
                types, locations, images = await asyncio.gather(
                    self.get_all("/server_types", "server_types"),
                    self.get_all("/locations", "locations"),
                    self.get_all(
                        "/images",
                        "images",
                        # Deprecated ones too, so that their errors name the successor.
                        {"type": ["system", "snapshot"], "include_deprecated": "true"},
                    ),
                )
            except (CloudError, KeyError) as exc:
                if isinstance(exc, CloudError) and exc.code not in ("not_found", "404"):
                    raise
                raise CloudUnreachableError(
                    f"{self.endpoint} is not the Hetzner Cloud API (it has no "
                    "/server_types); check HCLOUD_ENDPOINT, e.g. https://api.hetzner.cloud/v1",
                    code="not_found",
                ) from None
            self._catalog = Catalog.from_api(types, locations, images)
        return self._catalog

    # -- generic resources -------------------------------------------------------------

    async def find(self, kind: str, label_selector: str) -> list[dict[str, Any]]:
        """All ``kind`` resources (``servers``, ``networks``, ...) matching the selector."""
        return await self.get_all(f"/{kind}", kind, {"label_selector": label_selector})

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a new ``kind`` resource; adopt it if a lost answer made us ask twice.

        Returns the whole response body.
        """
        try:
            return await self.request("POST", f"/{kind}", json=body)
        except CloudError as exc:
            if exc.code not in _AMBIGUOUS | {"uniqueness_error"}:
                raise
            existing = await self.get_all(f"/{kind}", kind, {"name": body["name"]})
            labels = body.get("labels") or {}
            mine = [
                r
                for r in existing
                if labels.items() <= (r.get("labels") or {}).items()
                and r.get("status") != "deleting"
            ]
            if mine:
                logger.debug("adopting %s %s after %s", kind, body["name"], exc.code)
                return {kind.rstrip("s"): mine[0], "adopted": True}
            if exc.code == "uniqueness_error":
                raise CloudError(
                    f"a resource named {body['name']!r} already exists in this project and "
                    "belongs to no cluster of this name; rename or delete it",
                    code=exc.code,
                ) from None
            return await self.request("POST", f"/{kind}", json=body)

    async def delete(self, kind: str, resource_id: int) -> dict[str, Any] | None:
        """Delete a resource; a resource that is already gone counts as deleted.

        Returns the body (for servers: ``{"action": ...}``) or None if it was gone.
        """
        for attempt in range(_ATTEMPTS):
            try:
                return await self.request("DELETE", f"/{kind}/{resource_id}")
            except CloudError as exc:
                if exc.code == "not_found":
                    return None
                if exc.code == "resource_in_use" and attempt < _ATTEMPTS - 1:
                    # A firewall or network still applied to a server being deleted.
                    await _backoff(attempt, f"DELETE /{kind}/{resource_id}: resource_in_use")
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- servers -----------------------------------------------------------------------

    async def create_server(self, spec: ServerSpec) -> tuple[ServerInfo, list[int]]:
        """Create a server with one POST; return it and the actions to wait for."""
        answer = await self.create("servers", spec.body())
        server = ServerInfo.from_api(answer["server"])
        if answer.get("adopted"):
            pending = await self.request(
                "GET", f"/servers/{server.id}/actions", params={"status": "running"}
            )
            return server, [a["id"] for a in pending["actions"]]
        actions = [answer["action"], *answer.get("next_actions", [])]
        return server, [a["id"] for a in actions if a]

    async def delete_server(self, server_id: int, *, timeout: float, what: str) -> bool:
        """Delete a server and wait until it is gone; False if it was gone already."""
        answer = await self.delete("servers", server_id)
        if answer is None:
            return False
        if answer.get("action"):
            await self.wait_actions([answer["action"]["id"]], timeout=timeout, what=what)
        return True


def _query(params: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as pairs; a list value repeats its key (``id=1&id=2``)."""
    if not params:
        return None
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return pairs


async def _backoff(attempt: int, what: str) -> None:
    delay = min(0.25 * 2**attempt, 8.0) * (0.5 + random.random())
    logger.debug("retrying in %.1f s: %s", delay, what)
    await asyncio.sleep(delay)
