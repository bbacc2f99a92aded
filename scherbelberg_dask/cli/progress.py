"""A rich progress bar on stderr while a long step runs, only when stderr is a terminal.

The bar follows a count the caller can read at any time (e.g. nodes that are up);
log lines keep flowing above it.  When stderr is not a terminal (scripts, CI, tests)
nothing is drawn and only the log lines appear.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable

#: Seconds between refreshes of the count.
_REFRESH = 0.2


def enabled() -> bool:
    """True if stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.asynccontextmanager
async def tracking(
    description: str, total: int | None, count: Callable[[], int]
) -> AsyncIterator[None]:
    """Show ``count()`` of ``total`` (``None``: a spinner) until the block ends.

    Parameters
    ----------
    description
        What is being waited for, e.g. ``nodes up``.
    total
        The count at which the step is complete; ``None`` for an open-ended step.
    count
        Cheap, non-blocking function returning the current count.
    """
    if not enabled():
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=True)
    task = progress.add_task(description, total=total)

    async def follow() -> None:
        while True:
            progress.update(task, completed=count())
            await asyncio.sleep(_REFRESH)

    with progress:
        follower = asyncio.create_task(follow())
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
