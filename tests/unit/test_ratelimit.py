"""The client's pacer against the emulator's token bucket, on a simulated clock.

Calls are simulated as events: a call asks the pacer when to go, is sent to the bucket
then, and the bucket's answer reaches the pacer ``latency`` seconds later, so calls are
in flight while others are paced and answers arrive after newer calls were let through.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest

from scherbelberg_dask.cloud.ratelimit import RateLimitPacer
from scherbelberg_dask.emulator.api.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Response:
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    sent: list[float] = field(default_factory=list)
    refused: int = 0


def simulate(
    bucket: TokenBucket,
    pacer: RateLimitPacer,
    clock: Clock,
    starts: list[float],
    latency: Callable[[], float],
) -> Outcome:
    """Run one call per entry of ``starts``; a refused call is retried, paced again."""
    outcome = Outcome()
    events: list[tuple[float, int, str, int, dict[str, str]]] = []
    for index, start in enumerate(starts):
        heapq.heappush(events, (start, index, "ask", index, {}))
    sequence = len(starts)
    while events:
        at, _, kind, call, headers = heapq.heappop(events)
        clock.now = at
        sequence += 1
        if kind == "ask":
            heapq.heappush(events, (at + pacer.delay(), sequence, "send", call, {}))
        elif kind == "send":
            accepted = bucket.take()
            if accepted:
                outcome.sent.append(at)
            else:
                outcome.refused += 1
            answer = "done" if accepted else "refused"
            heapq.heappush(events, (at + latency(), sequence, answer, call, bucket.headers()))
        else:
            pacer.observe(Response(headers))
            if kind == "refused":
                heapq.heappush(events, (at, sequence, "ask", call, {}))
    return outcome


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize("latency", [0.0, 0.3, 2.5])
def test_bursts_larger_than_the_bucket_meet_no_429(clock: Clock, latency: float) -> None:
    bucket = TokenBucket(3600, capacity=12, clock=clock)
    pacer = RateLimitPacer(reserve=4, clock=clock)
    # A first call teaches the pacer the budget, then 40 calls at once, then after a
    # long pause (the bucket is full again, not fuller) another 40.
    starts = [0.0] + [5.0] * 40 + [200.0] * 40
    outcome = simulate(bucket, pacer, clock, starts, lambda: latency)
    assert outcome.refused == 0
    assert len(outcome.sent) == 81
    # Paced, not stalled: each burst finishes about when the bucket allows it
    # (40 calls, 12 in the bucket less the reserve, one more per second).
    first = [t for t in outcome.sent if 5.0 <= t < 200.0]
    second = [t for t in outcome.sent if t >= 200.0]
    assert max(first) - 5.0 <= 40 - 12 + 4 + 2
    assert max(second) - 200.0 <= 40 - 12 + 4 + 2


def test_answers_in_flight_do_not_inflate_the_budget(clock: Clock) -> None:
    """Calls spread over time, answers late and out of order: the local count rules.

    An answer reports the bucket as it was when its call arrived; calls let through
    since have spent more.  A pacer that believed such answers would overspend.
    """
    rng = random.Random(5)
    bucket = TokenBucket(3600, capacity=12, clock=clock)
    pacer = RateLimitPacer(reserve=4, clock=clock)
    starts = sorted(rng.uniform(0, 120) for _ in range(300))
    outcome = simulate(bucket, pacer, clock, starts, lambda: rng.uniform(0.0, 6.0))
    assert outcome.refused == 0
    assert len(outcome.sent) == 300


def test_the_bucket_size_is_learned_from_reset(clock: Clock) -> None:
    bucket = TokenBucket(3600, capacity=12, clock=clock)
    pacer = RateLimitPacer(reserve=4, clock=clock)
    simulate(bucket, pacer, clock, [0.0], lambda: 0.0)
    clock.now = 1000.0
    # After a long idle time the bucket holds 12, not 1000: of 20 calls, the first 8 go
    # at once (12 less the reserve of 4; 7 if the size was rounded down to 11) and the
    # others wait their turn.
    delays = [pacer.delay() for _ in range(20)]
    assert sum(1 for d in delays if d == 0.0) in (7, 8)
    assert delays == sorted(delays)


@pytest.mark.parametrize("skew", [-300.0, 300.0])
def test_the_clients_clock_does_not_matter(clock: Clock, skew: float) -> None:
    """Reset is read against the answer's Date, not the client's own clock."""
    bucket = TokenBucket(3600, capacity=600, clock=clock)
    pacer = RateLimitPacer(reserve=4, clock=clock, wall_clock=lambda: time.time() + skew)
    for _ in range(590):
        bucket.take()
    pacer.observe(Response({**bucket.headers(), "Date": formatdate(time.time(), usegmt=True)}))
    # Ten minutes later the bucket is full again (600): 595 calls may go at once.
    clock.now = 600.0
    delays = [pacer.delay() for _ in range(600)]
    assert 590 <= sum(1 for d in delays if d == 0.0) <= 596


def test_without_reset_the_bucket_is_as_big_as_the_hourly_limit(clock: Clock) -> None:
    pacer = RateLimitPacer(reserve=4, clock=clock)
    pacer.observe(Response({"RateLimit-Limit": "3600", "RateLimit-Remaining": "10"}))
    clock.now = 100.0
    # 10 + 100 s of refill, less the reserve: 106 calls go at once, the next one waits.
    delays = [pacer.delay() for _ in range(107)]
    assert delays[:106] == [0.0] * 106
    assert delays[106] > 0


def test_no_headers_means_no_pacing(clock: Clock) -> None:
    pacer = RateLimitPacer(clock=clock)
    pacer.observe(Response({"Content-Type": "application/json"}))
    assert [pacer.delay() for _ in range(100)] == [0.0] * 100


def test_a_lower_remaining_from_elsewhere_is_believed(clock: Clock) -> None:
    # Another client of the same project spent most of the budget: the pacer follows
    # the server's count down, not its own estimate.
    bucket = TokenBucket(3600, capacity=3600, clock=clock)
    pacer = RateLimitPacer(reserve=4, clock=clock)
    pacer.observe(Response(bucket.headers()))
    for _ in range(3598):
        bucket.take()
    pacer.observe(Response(bucket.headers()))
    assert pacer.delay() > 0
