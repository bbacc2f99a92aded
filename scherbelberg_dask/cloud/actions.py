"""Batched waiting for Hetzner actions (docs/design.md, "Cloud").

Every caller that waits for actions registers them with one :class:`ActionWaiter`; a
single poll (``GET /actions?id=..&id=..``) covers all pending actions, with backoff while
nothing changes.  Waiting for 16 servers therefore costs about as many requests as
waiting for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from scherbelberg_dask.cloud.errors import ActionFailedError, WaitTimeoutError

logger = logging.getLogger(__name__)

#: Largest page Hetzner serves; also the most IDs asked for in one poll.
_BATCH = 50

FetchActions = Callable[[list[int]], Awaitable[list[dict[str, Any]]]]


class ActionWaiter:
    """Resolve action IDs to their outcome with one shared poll loop.

    Parameters
    ----------
    fetch
        Coroutine function returning the action objects (API JSON) for a list of IDs.
    interval, interval_max
        First and longest pause between polls, in seconds (`scherbelberg.api.poll-interval`
        and `poll-interval-max`).
    """

    def __init__(self, fetch: FetchActions, interval: float, interval_max: float):
        self._fetch = fetch
        self._interval = interval
        self._interval_max = interval_max
        self._pending: dict[int, list[asyncio.Future[dict[str, Any]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    async def wait(self, action_ids: Iterable[int], *, timeout: float, what: str) -> None:
        """Wait until all ``action_ids`` succeeded.

        Raises
        ------
        ActionFailedError
            An action ended in ``error``; the message gives the API's reason.
        WaitTimeoutError
            Not all actions finished within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        futures = []
        for action_id in action_ids:
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pending.setdefault(action_id, []).append(future)
            futures.append(future)
        if not futures:
            return
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll_loop())
        try:
            # Not wait_for(gather(...)): an interrupted wait would leave the gathering
            # future's CancelledError unretrieved (a warning at exit).
            _, pending = await asyncio.wait(futures, timeout=timeout)
            if pending:
                raise WaitTimeoutError(
                    f"timed out after {timeout:.0f} s waiting for {what}", code="timeout"
                )
            actions = [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()
        for action in actions:
            if action["status"] == "error":
                error = action.get("error") or {}
                raise ActionFailedError(
                    f"action {action.get('command')} ended in error: "
                    f"{error.get('message', 'no reason given')}",
                    code=error.get("code"),
                )

    async def close(self) -> None:
        """Stop polling; pending waits stay unresolved (their own timeouts end them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll_loop(self) -> None:
        interval = self._interval
        while True:
            await self._pause(interval)
            self._drop_abandoned()
            if not self._pending:
                return
            ids = sorted(self._pending)
            progressed = False
            try:
                for start in range(0, len(ids), _BATCH):
                    for action in await self._fetch(ids[start : start + _BATCH]):
                        if action["status"] != "running":
                            progressed = True
                            for future in self._pending.pop(action["id"], []):
                                if not future.done():
                                    future.set_result(action)
            except Exception as exc:  # a failed poll is retried; each wait has its own bound
                logger.debug("polling actions failed, retrying: %s", exc)
            interval = self._interval if progressed else min(interval * 1.5, self._interval_max)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, cut short to the base interval when new actions arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return
            self._wakeup.clear()
            deadline = min(deadline, loop.time() + self._interval)

    def _drop_abandoned(self) -> None:
        for action_id in list(self._pending):
            live = [f for f in self._pending[action_id] if not f.done()]
            if live:
                self._pending[action_id] = live
            else:
                del self._pending[action_id]
