"""Pacing API calls by Hetzner's ``RateLimit-*`` response headers.

Hetzner refills a project's request budget gradually (3600 an hour, one a second by
default) up to a full bucket, and reports it in every answer: ``RateLimit-Limit``
(requests per hour), ``RateLimit-Remaining`` and ``RateLimit-Reset`` (the UNIX time at
which the bucket will be full again).  The hcloud client ignores the headers and only
retries after a 429; the pacer reads them from every response and makes the next call
wait for a refill instead.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any


class RateLimitPacer:
    """Track the budget from response headers and delay calls when it runs low.

    The pacer keeps a local estimate of the tokens in the bucket: the last reported
    ``Remaining``, plus the refill since, minus the calls let through since, and never
    more than the bucket holds when full (from ``Reset``; the hourly limit without it).
    Calls are let through while more than ``reserve`` tokens are left; later ones are
    queued one refill apart.  Until the first answer the budget is unknown and calls are
    not delayed; a 429 among them is retried, paced, by the caller.

    Parameters
    ----------
    reserve
        Requests kept in hand: when fewer remain, calls wait for the bucket to refill.
    clock, wall_clock
        Monotonic and UNIX clocks (for tests); the UNIX clock is only used for answers
        without a ``Date`` header.
    """

    def __init__(
        self,
        reserve: int = 4,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.reserve = reserve
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._rate = 0.0  # tokens per second; 0 until the first answer with headers
        self._capacity = 0.0
        self._tokens = 0.0  # estimate at self._stamp; negative when calls are queued
        self._stamp = 0.0

    def observe(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """``requests`` response hook: remember the budget the server reported."""
        headers = response.headers
        try:
            limit = int(headers["RateLimit-Limit"])
            remaining = int(headers["RateLimit-Remaining"])
        except (KeyError, ValueError):
            return
        if limit < 1:
            return
        rate = limit / 3600.0
        capacity = min(float(limit), max(1.0, remaining + self._seconds_to_full(headers) * rate))
        with self._lock:
            now = self._clock()
            self._capacity = capacity
            if self._rate != rate:
                self._rate = rate
                estimate = float(remaining)
            else:
                # Answers to concurrent calls arrive in any order, and calls let through
                # or queued have already been counted: never believe in more budget than
                # the local estimate.
                estimate = min(float(remaining), self._available(now))
            self._tokens, self._stamp = estimate, now

    def _seconds_to_full(self, headers: Any) -> float:
        """How long until the bucket is full, by the server's clock (inf: unknown).

        ``RateLimit-Reset`` is a UNIX time rounded up to a second; it is compared with
        the answer's ``Date`` (rounded down) so that the client's clock does not matter.
        The error is taken off, so the bucket's size is never overestimated.
        """
        try:
            reset = float(headers["RateLimit-Reset"])
        except (KeyError, ValueError):
            return math.inf
        try:
            server_now = parsedate_to_datetime(headers["Date"]).timestamp()
            slack = 2.0
        except (KeyError, TypeError, ValueError):
            server_now, slack = self._wall_clock(), 1.0
        return max(0.0, reset - server_now - slack)

    def delay(self) -> float:
        """Count one call and return the seconds it must wait first (0: go now)."""
        with self._lock:
            if self._rate == 0.0:
                return 0.0
            now = self._clock()
            available = self._available(now)
            self._tokens, self._stamp = available - 1.0, now
            if available > self.reserve:
                return 0.0
            return (self.reserve + 1.0 - available) / self._rate

    def _available(self, now: float) -> float:
        """Tokens in the bucket now: the estimate plus the refill since, up to full."""
        refilled = self._tokens + (now - self._stamp) * self._rate
        return min(self._capacity, refilled)

    async def wait(self) -> None:
        """Sleep as long as :meth:`delay` says."""
        seconds = self.delay()
        if seconds > 0:
            await asyncio.sleep(seconds)
