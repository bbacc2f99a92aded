"""What every request handler can reach: the project state and the emulator's services."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..faults import Faults
from ..offerings import Offerings
from ..settings import TimingProfile
from ..store import Store
from .addresses import AddressBook
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger(__name__)

__all__ = ["CONTEXT", "Context", "Counters", "ResponseRecord", "context"]


@dataclasses.dataclass(frozen=True)
class ResponseRecord:
    """One answered API request, as shown to observers.

    Attributes
    ----------
    method, path
        The request's method and path.
    route
        Route template such as ``/v1/servers/{id}``, or ``None`` for unknown paths.
    status
        HTTP status of the answer.
    content_type
        The answer's ``Content-Type`` header (``None`` if absent).
    body
        The raw answer body.
    """

    method: str
    path: str
    route: str | None
    status: int
    content_type: str | None
    body: bytes


class Counters:
    """Request counts by ``"METHOD /v1/route-template"`` and by status (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: collections.Counter[str] = collections.Counter()
        self._statuses: collections.Counter[str] = collections.Counter()

    def count(self, endpoint: str, status: int) -> None:
        """Record one answered request."""
        with self._lock:
            self._routes[endpoint] += 1
            self._statuses[str(status)] += 1

    def to_dict(self) -> dict[str, dict[str, int]]:
        """``{"by_route": {...}, "by_status": {...}, "total": {"requests": n}}``."""
        with self._lock:
            return {
                "by_route": dict(self._routes),
                "by_status": dict(self._statuses),
                "total": {"requests": sum(self._routes.values())},
            }

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._routes.clear()
            self._statuses.clear()


@dataclasses.dataclass
class Context:
    """Shared state of one emulator's API."""

    emulator_id: str
    token: str
    readonly_token: str
    store: Store
    catalog: Offerings
    addresses: AddressBook
    engine: Engine
    faults: Faults
    profile: TimingProfile
    bucket: TokenBucket
    counters: Counters = dataclasses.field(default_factory=Counters)
    observers: list[Callable[[ResponseRecord], None]] = dataclasses.field(default_factory=list)


CONTEXT = web.AppKey("context", Context)


def context(request: web.Request) -> Context:
    """The :class:`Context` of the app serving ``request``."""
    return request.app[CONTEXT]
