"""The project's request budget: a token bucket like Hetzner's (3600/hour, +1 per second)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["TokenBucket"]


class TokenBucket:
    """Token bucket with Hetzner's header semantics.

    Parameters
    ----------
    limit
        Requests per hour (``RateLimit-Limit``); the bucket refills ``limit / 3600``
        tokens per second.
    capacity
        Bucket size (burst); defaults to ``limit``.
    clock
        Monotonic clock, for tests.
    """

    def __init__(
        self,
        limit: int,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per hour, got {limit}")
        self.limit = limit
        self.capacity = capacity if capacity is not None else limit
        if self.capacity < 1:
            raise ValueError(f"rate limit capacity must be at least 1, got {self.capacity}")
        self._rate = limit / 3600.0
        self._clock = clock
        self._tokens = float(self.capacity)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def headers(self) -> dict[str, str]:
        """``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``."""
        with self._lock:
            self._refill()
            remaining = math.floor(self._tokens)
            missing = self.capacity - self._tokens
        reset = math.ceil(time.time() + missing / self._rate)
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }

    def reset(self) -> None:
        """Fill the bucket (introspection: counters reset)."""
        with self._lock:
            self._tokens = float(self.capacity)
            self._stamp = self._clock()
