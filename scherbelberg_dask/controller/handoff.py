"""The client's side of an autonomous cluster's control: one adaptive loop at a time.

A client never runs its own adaptive loop on an autonomous cluster.  ``adapt`` hands
the policy to the controller; ``scale`` takes control from it (the controller stops
adapting and lets go of the cluster before it acknowledges); both, and changing the
timeouts, are a :class:`~.spec.Directive` left in the scheduler's metadata and
acknowledged in the controller's status there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from scherbelberg_dask.controller.probe import DIRECTIVE_KEY, STATUS_KEY, get_metadata, set_metadata
from scherbelberg_dask.controller.spec import Directive
from scherbelberg_dask.errors import UserError

#: Leaves a setting as the controller has it (``set_timeouts``).
KEEP: Any = object()


class HandoffError(UserError, TimeoutError):
    """The controller did not acknowledge a directive in time (is it running?)."""


async def status(comm: Any) -> dict[str, Any] | None:
    """The controller's last published status (``None``: none yet)."""
    return await get_metadata(comm, STATUS_KEY)


async def direct(
    comm: Any,
    *,
    driver: Any = KEEP,
    adapt: Any = KEEP,
    idle_timeout: Any = KEEP,
    max_lifetime: Any = KEEP,
    fallback: Directive,
    timeout: float,
) -> dict[str, Any]:
    """Send a directive (unchanged fields as the controller has them); return the
    controller's status that acknowledges it.

    Raises
    ------
    HandoffError
        No acknowledgement within ``timeout`` seconds.
    """
    current = await status(comm)
    pending = await get_metadata(comm, DIRECTIVE_KEY)
    base = Directive.from_dict(pending or current or fallback.to_dict())
    changes = {
        "driver": driver,
        "adapt": adapt,
        "idle_timeout": idle_timeout,
        "max_lifetime": max_lifetime,
    }
    data = base.to_dict()
    data.update({k: v for k, v in changes.items() if v is not KEEP})
    seen = max(int((current or {}).get("generation", 0)), base.generation)
    data["generation"] = max(time.time_ns(), seen + 1)
    directive = Directive.from_dict(data)
    await set_metadata(comm, DIRECTIVE_KEY, directive.to_dict())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await status(comm)
        if answer is not None and int(answer.get("generation", 0)) >= directive.generation:
            return dict(answer)
        await asyncio.sleep(0.1)
    raise HandoffError(
        f"the cluster's controller did not take directive ({directive.driver} drives) "
        f"within {timeout:.0f} s; look at its log with `scherbelberg-dask logs`"
    )
