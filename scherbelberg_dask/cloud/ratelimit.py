"""Pacing API calls by Hetzner's ``RateLimit-*`` response headers.

Hetzner refills a project's request budget gradually (3600 an hour, one a second by
default).  The hcloud client ignores the headers and only retries after a 429; the pacer
reads them from every response and makes the next call wait for a refill instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


class RateLimitPacer:
    """Track the budget from response headers and delay calls when it runs low.

    Parameters
    ----------
    reserve
        Requests kept in hand: when fewer remain, calls wait for the bucket to refill.
    """

    def __init__(self, reserve: int = 4) -> None:
        self.reserve = reserve
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._remaining: int | None = None
        self._seen_at = 0.0

    def observe(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """``requests`` response hook: remember the budget the server reported."""
        headers = response.headers
        try:
            limit = int(headers["RateLimit-Limit"])
            remaining = int(headers["RateLimit-Remaining"])
        except (KeyError, ValueError):
            return
        with self._lock:
            now = time.monotonic()
            if self._remaining is not None and self._limit == limit:
                # Answers to concurrent calls arrive in any order, and calls still in
                # flight have already spent tokens: never believe in more budget than
                # the local estimate.
                remaining = min(remaining, int(self._available(now)))
            self._limit, self._remaining, self._seen_at = limit, remaining, now

    def delay(self) -> float:
        """Seconds to wait before the next call so as not to run the bucket dry."""
        with self._lock:
            if self._limit is None or self._remaining is None:
                return 0.0
            refill_per_second = self._limit / 3600.0
            available = self._available(time.monotonic())
            if available > self.reserve:
                # Spend one token locally so concurrent callers spread out.
                self._remaining -= 1
                return 0.0
            self._remaining -= 1
            return (self.reserve + 1 - available) / refill_per_second

    def _available(self, now: float) -> float:
        """Tokens in the bucket now, by the last answer plus the refill since."""
        assert self._limit is not None and self._remaining is not None
        return self._remaining + (now - self._seen_at) * self._limit / 3600.0

    async def wait(self) -> None:
        """Sleep as long as :meth:`delay` says."""
        seconds = self.delay()
        if seconds > 0:
            await asyncio.sleep(seconds)
