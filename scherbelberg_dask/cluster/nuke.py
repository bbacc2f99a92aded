"""Remove every labelled resource of a cluster prefix, even when nothing else works."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from scherbelberg_dask import config
from scherbelberg_dask.cloud.client import CloudClient
from scherbelberg_dask.cloud.labels import validate_prefix
from scherbelberg_dask.cluster.resources import destroy_cluster
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)
T = TypeVar("T")


async def nuke_async(
    prefix: str | None = None,
    *,
    token: str | None = None,
    api_endpoint: str | None = None,
    state_dir: str | None = None,
) -> dict[str, int]:
    """Delete all resources labelled with cluster ``prefix``, and its local state.

    Only resources carrying the cluster's label are touched: nuking ``ab`` never touches
    ``abc``.  Idempotent.  Returns how many resources of each kind were deleted.
    """
    prefix = validate_prefix(prefix or config.get("prefix"))
    state = StateDir(prefix, base=state_dir or config.get("state-dir"))
    cloud = CloudClient(token, api_endpoint)
    try:
        deleted = await destroy_cluster(
            cloud, prefix, state, timeout=float(config.get("timeouts.delete"))
        )
    finally:
        await cloud.close()
    logger.info("Cluster %s nuked.", prefix)
    return deleted


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code, even inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def nuke(
    prefix: str | None = None,
    *,
    token: str | None = None,
    api_endpoint: str | None = None,
    state_dir: str | None = None,
) -> dict[str, int]:
    """Synchronous :func:`nuke_async`."""
    return run_sync(nuke_async(prefix, token=token, api_endpoint=api_endpoint, state_dir=state_dir))
