"""Measuring how long an asyncio event loop is blocked ("stalls"), and finding out why.

:class:`StallMonitor` is a task that wakes up periodically and records how late every
wakeup is; :class:`StallSampler` (diagnosis) samples the loop thread's stack while a
wakeup is overdue; :class:`SlowCallbacks` collects asyncio debug mode's warnings about
slow callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
import traceback

logger = logging.getLogger(__name__)

__all__ = ["SlowCallbacks", "StallMonitor", "StallSampler", "StallSummary"]


class StallMonitor:
    """Wake up every ``interval`` seconds on the running loop; record how late each wakeup is.

    A wakeup is late when the loop runs other code for that long (a blocking call, a long
    callback, many callbacks in a row) or when the loop's thread does not get to run: it
    waits for a CPU (the operating system runs other processes) or for the GIL (another
    thread of this process runs Python).  To tell these apart, every interval also records,
    from ``/proc/thread-self/schedstat``, the CPU time the loop's thread used and the time
    it spent runnable but waiting for a CPU.  A stall minus its CPU wait is what this
    process did to itself: computing on the loop, blocking in a system call, or waiting for
    the GIL.  Pauses of Python's cyclic garbage collector (which stop every thread) are
    recorded too, in ``gc_pauses``.
    """

    def __init__(self, interval: float = 0.005, keep: float = 0.010) -> None:
        self.interval = interval
        self.keep = keep  # stalls longer than this are kept with their time
        #: Per wakeup: (when it was due, lateness, loop-thread CPU, loop-thread wait for a
        #: CPU), in seconds; "when" counts from :meth:`start`.
        self.intervals: list[tuple[float, float, float, float]] = []
        #: Stalls longer than ``keep``: (seconds since start, lateness, CPU, CPU wait).
        self.stalls: list[tuple[float, float, float, float]] = []
        self.last_beat = time.monotonic()
        self.thread_id = threading.get_ident()
        self._task: asyncio.Task[None] | None = None
        self.started = 0.0
        self._schedstat: int | None = None
        #: Garbage collections: (seconds since start, duration, generation).
        self.gc_pauses: list[tuple[float, float, int]] = []
        self._gc_began = 0.0

    def start(self) -> None:
        self.thread_id = threading.get_ident()
        self.started = time.monotonic()
        try:
            self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:  # not Linux, or no schedstats: CPU time only
            self._schedstat = None
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stall-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._gc_began = now
        else:
            began = self._gc_began - self.started
            self.gc_pauses.append((began, now - self._gc_began, info["generation"]))

    def gc_between(self, start: float, end: float) -> float:
        """Seconds of garbage collection between ``start`` and ``end`` (monitor time)."""
        return sum(max(0.0, min(end, t + d) - max(start, t)) for t, d, _ in self.gc_pauses)

    @property
    def max_gc_ms(self) -> float:
        """The longest garbage-collector pause, in milliseconds."""
        return 1000 * max((d for _, d, _ in self.gc_pauses), default=0.0)

    def _sched(self) -> tuple[float, float]:
        """(CPU time, time waiting for a CPU) of the loop's thread so far, in seconds."""
        if self._schedstat is None:
            return time.thread_time(), 0.0
        cpu_ns, wait_ns, _ = os.pread(self._schedstat, 128, 0).split()
        return int(cpu_ns) / 1e9, int(wait_ns) / 1e9

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval
            cpu, wait = self._sched()
            self.last_beat = time.monotonic()
            await asyncio.sleep(self.interval)
            late = max(0.0, loop.time() - expected)
            cpu_after, wait_after = self._sched()
            used, waited = cpu_after - cpu, wait_after - wait
            at = time.monotonic() - self.started - late
            self.intervals.append((at, late, used, waited))
            if late > self.keep:
                self.stalls.append((at, late, used, waited))

    def summary(self, start: float = 0.0, end: float = float("inf")) -> StallSummary:
        """Statistics of the wakeups due between ``start`` and ``end`` (monitor time, s)."""
        chosen = [
            (late, used, waited) for at, late, used, waited in self.intervals if start <= at < end
        ]
        lates = sorted(late for late, _, _ in chosen)
        own = [max(0.0, late - waited) for late, _, waited in chosen]
        return StallSummary(
            wakeups=len(chosen),
            max_ms=1000 * max(lates, default=0.0),
            p99_ms=1000 * lates[int(0.99 * (len(lates) - 1))] if lates else 0.0,
            over_20ms=sum(1 for late in lates if late > 0.020),
            max_own_ms=1000 * max(own, default=0.0),
            own_over_20ms=sum(1 for late in own if late > 0.020),
            max_loop_cpu_ms=1000 * max((used for _, used, _ in chosen), default=0.0),
        )


@dataclasses.dataclass(frozen=True)
class StallSummary:
    """Stalls of one stretch of time.

    Attributes
    ----------
    wakeups
        Monitor wakeups in the stretch.
    max_ms, p99_ms, over_20ms
        Longest, 99th percentile, and count of stalls over 20 ms.
    max_own_ms, own_over_20ms
        The same for stalls minus the loop thread's wait for a CPU.
    max_loop_cpu_ms
        Most CPU time the loop's thread used in one monitor interval.
    """

    wakeups: int
    max_ms: float
    p99_ms: float
    over_20ms: int
    max_own_ms: float
    own_over_20ms: int
    max_loop_cpu_ms: float


class StallSampler(threading.Thread):
    """Diagnosis: sample the loop thread's stack while the monitor's wakeup is overdue.

    Every sample is attributed to a *site*: the innermost frame of the loop thread's
    stack that lies in ``scherbelberg_dask`` (or, failing that, the innermost frame).
    ``by_site`` counts samples per site, ``example`` keeps one stack per site and
    ``timed`` every sample's time (seconds since the monitor started) and site, so that
    a stall the monitor reports can be matched with what the loop was doing.  A loop
    thread found in ``selectors.select`` is idle: it was not scheduled in time, or waits
    for the GIL on its way back.
    """

    def __init__(self, monitor: StallMonitor, threshold: float, period: float = 0.002) -> None:
        super().__init__(name="stall-sampler", daemon=True)
        self.monitor = monitor
        self.threshold = threshold
        self.period = period
        self.by_site: collections.Counter[str] = collections.Counter()
        self.example: dict[str, str] = {}
        self.timed: list[tuple[float, str]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.period):
            overdue = time.monotonic() - self.monitor.last_beat - self.monitor.interval
            if overdue < self.threshold:
                continue
            frame = sys._current_frames().get(self.monitor.thread_id)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            if stack and stack[-1].filename == __file__:
                continue  # the monitor itself runs: the stall is just ending
            ours = [f for f in stack if "scherbelberg_dask" in f.filename]
            site = ours[-1] if ours else stack[-1]
            key = f"{_short_path(site.filename)}:{site.lineno} in {site.name}"
            self.by_site[key] += 1
            self.timed.append((time.monotonic() - self.monitor.started, key))
            if key not in self.example:
                # From the callback the loop runs, not the loop machinery above it.
                starts = [
                    i for i, f in enumerate(stack) if f.name == "_run" and "asyncio" in f.filename
                ]
                inner = stack[starts[-1] + 1 :] if starts else stack
                self.example[key] = "".join(traceback.format_list(inner[-14:]))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def sites_between(self, start: float, end: float) -> collections.Counter[str]:
        """Samples per site taken between ``start`` and ``end`` (monitor time)."""
        return collections.Counter(key for t, key in self.timed if start <= t <= end)


def _short_path(filename: str) -> str:
    for marker in ("scherbelberg_dask/", "site-packages/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename


class SlowCallbacks(logging.Handler):
    """Diagnosis: collect asyncio debug mode's "Executing <...> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.records.append(message)
