"""The node runner's exit status: a retired worker stays gone, a worker whose scheduler
went away is restarted by its service (``Restart=on-failure``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from distributed import Scheduler

from scherbelberg_dask.bootstrap import node_runner


@pytest.mark.parametrize(
    ("stopped", "reason", "status"),
    [
        (True, None, 0),  # SIGTERM from the service manager
        (True, "worker-handle-scheduler-connection-broken", 0),
        (False, "scheduler-close-worker", 0),  # retire_workers(close_workers=True)
        (False, "scheduler-remove-worker", 0),
        (False, "worker-lifetime-reached", 0),
        (False, "scheduler-close", node_runner.SCHEDULER_LOST),  # the scheduler stopped
        (False, "worker-handle-scheduler-connection-broken", node_runner.SCHEDULER_LOST),
        (False, "worker-heartbeat-missing", node_runner.SCHEDULER_LOST),
        (False, None, node_runner.SCHEDULER_LOST),
    ],
)
def test_exit_status(stopped: bool, reason: str | None, status: int) -> None:
    assert node_runner.exit_status(stopped=stopped, reason=reason) == status


async def _exit_of_worker(end: Callable[[Scheduler, asyncio.Event], Awaitable[Any]]) -> int:
    """Run a real nanny against a local scheduler, end it with ``end``, return its status."""
    async with Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as scheduler:
        stop = asyncio.Event()
        nanny = node_runner._nanny_class()(
            scheduler.address, name="worker000", host="127.0.0.1", dashboard_address=":0"
        )
        ready = asyncio.Event()
        served = asyncio.ensure_future(
            node_runner.serve_worker(nanny, stop, lambda address: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 60)
        await end(scheduler, stop)
        return await asyncio.wait_for(served, 60)


async def test_a_retired_worker_exits_0() -> None:
    async def retire(scheduler: Scheduler, stop: asyncio.Event) -> None:
        # What SpecCluster's scale-down asks the scheduler for.
        await scheduler.retire_workers(
            workers=list(scheduler.workers), close_workers=True, remove=True
        )

    assert await _exit_of_worker(retire) == 0


async def test_a_worker_whose_scheduler_stopped_exits_75() -> None:
    async def close(scheduler: Scheduler, stop: asyncio.Event) -> None:
        await scheduler.close()  # a clean stop, as on a reboot: it tells workers to close

    assert await _exit_of_worker(close) == node_runner.SCHEDULER_LOST


async def test_a_worker_stopped_by_its_service_exits_0() -> None:
    async def sigterm(scheduler: Scheduler, stop: asyncio.Event) -> None:
        stop.set()

    assert await _exit_of_worker(sigterm) == 0
