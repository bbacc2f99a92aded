"""What the controller and clients exchange with the scheduler.

The scheduler is the meeting point: the controller asks it whether there is work and
whether clients are connected (:func:`activity`), clients leave directives in its
metadata (:data:`DIRECTIVE_KEY`) and the controller publishes its status there
(:data:`STATUS_KEY`).  Nothing secret goes through it.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import cloudpickle
from distributed.protocol.pickle import dumps

#: Scheduler metadata keys of a client's directive and of the controller's status.
DIRECTIVE_KEY = ["scherbelberg-autonomy", "directive"]
STATUS_KEY = ["scherbelberg-autonomy", "status"]
#: The scheduler's own pseudo-client that holds ``fire_and_forget`` work.
_FIRE_AND_FORGET = "fire-and-forget"


@dataclasses.dataclass(frozen=True)
class Activity:
    """Whether the scheduler has work or clients.

    Attributes
    ----------
    tasks
        Tasks that are waiting, queued, processing or without a worker to run on.
    clients
        Connected clients (the scheduler's own ``fire-and-forget`` one not counted).
    """

    tasks: int
    clients: int

    @property
    def idle(self) -> bool:
        """No work and nobody connected."""
        return self.tasks == 0 and self.clients == 0


def _scheduler_activity(dask_scheduler: Any) -> dict[str, int]:
    """Runs inside the scheduler process (pickled by value: our package is not there)."""
    busy = ("waiting", "queued", "processing", "no-worker")
    tasks = sum(1 for ts in dask_scheduler.tasks.values() if ts.state in busy)
    clients = sum(1 for name in dask_scheduler.clients if name != "fire-and-forget")
    return {"tasks": tasks, "clients": clients}


cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def activity(comm: Any) -> Activity:
    """Ask the scheduler behind rpc ``comm`` for its :class:`Activity`."""
    response = await comm.run_function(function=dumps(_scheduler_activity), wait=True)
    if response.get("status") != "OK":
        raise RuntimeError(f"the scheduler could not report its activity: {response}")
    return Activity(**response["result"])


async def get_metadata(comm: Any, key: list[str]) -> Any:
    """The scheduler's metadata under ``key`` (``None`` if unset)."""
    return await comm.get_metadata(keys=key, default=None)


async def set_metadata(comm: Any, key: list[str], value: Any) -> None:
    """Set the scheduler's metadata under ``key``."""
    await comm.set_metadata(keys=key, value=value)
