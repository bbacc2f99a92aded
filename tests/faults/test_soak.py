"""The fault tier: whole lifecycles against an emulator that misbehaves (docs/design.md, "Failure").

Each lifecycle creates a cluster, computes, scales up and down and closes, while the
emulator answers about 5 % of API requests with 5xx, 429 or conflict, fails about 10 % of
boots, refuses SSH to new servers for a moment and sometimes crashes a worker.  Every
lifecycle must either succeed or fail with a clear error within a bounded time, and leave
no resource of its cluster behind (after ``close()``, or after ``nuke`` where close
failed).

The count is ``SCHERBELBERG_SOAK_LIFECYCLES`` (default 4, for CI; the full proof is 30):
``SCHERBELBERG_SOAK_LIFECYCLES=30 pytest -m faults tests/faults``.  The emulator's timing
is ``SCHERBELBERG_SOAK_PROFILE`` (``instant``, the default, or ``realistic``) times
``SCHERBELBERG_SOAK_TIME_SCALE`` (default 1).  A summary is printed and written to
``SCHERBELBERG_SOAK_REPORT`` if set.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from typing import Any

import dask.config
import pytest
from distributed import Client

from scherbelberg_dask import HetznerCluster, nuke_async
from scherbelberg_dask.cloud.errors import CloudError
from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.pytest_plugin import free_port
from tests.cluster.conftest import count_left

pytestmark = pytest.mark.faults

LIFECYCLES = int(os.environ.get("SCHERBELBERG_SOAK_LIFECYCLES", "4"))
PROFILE = os.environ.get("SCHERBELBERG_SOAK_PROFILE", "instant")
TIME_SCALE = float(os.environ.get("SCHERBELBERG_SOAK_TIME_SCALE", "1"))
#: The errors a lifecycle may fail with (NodeStartError, SpecCluster's "Cluster failed
#: to start" and the test's own "cluster stopped at" are RuntimeErrors).
CLEAR_ERRORS = (CloudError, RuntimeError)
#: A lifecycle that takes longer than this has hung.
LIFECYCLE_LIMIT = 300.0
TIMEOUTS = {"server": 60, "ssh": 30, "bootstrap": 120, "dask": 60, "delete": 60}


async def _harass_ssh(
    emulator: Emulator, rng: random.Random, stop: asyncio.Event, tally: collections.Counter[str]
) -> None:
    """Refuse SSH for a moment to about half of the servers that appear."""
    seen: set[int] = set()
    while not stop.is_set():
        for server in emulator.snapshot()["servers"]:
            if server["id"] not in seen:
                seen.add(server["id"])
                if rng.random() < 0.5:
                    emulator.faults.refuse_ssh(server["id"], 1.5)
                    tally["ssh refusal windows"] += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except asyncio.TimeoutError:
            continue


async def _wait_workers(
    cluster: HetznerCluster, client: Client, count: int, timeout: float
) -> None:
    """Wait for ``count`` workers, or fail clearly if the cluster gave up on some."""

    async def settled() -> None:
        while True:
            if len(cluster.worker_spec) < count:
                raise RuntimeError(
                    f"cluster stopped at {len(cluster.worker_spec)} of {count} workers: "
                    + "; ".join(str(e).splitlines()[0] for e in cluster.failures.values())
                )
            if len((await client.scheduler.identity())["workers"]) == count:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(settled(), timeout)


async def _lifecycle(
    emulator: Emulator, prefix: str, rng: random.Random, tally: collections.Counter[str]
) -> None:
    async with (
        HetznerCluster(workers=2, prefix=prefix, asynchronous=True, timeouts=TIMEOUTS) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        assert await client.submit(sum, range(100)) == 4950
        if rng.random() < 0.3 and cluster.worker_nodes:
            emulator.faults.crash_server(rng.choice(cluster.worker_nodes).server.id)
            tally["worker crashes"] += 1
        cluster.scale(3)
        await _wait_workers(cluster, client, 3, 180)
        assert await client.submit(sum, range(10)) == 45
        cluster.scale(1)
        await _wait_workers(cluster, client, 1, 120)


async def _run_one(
    emulator: Emulator, index: int, rng: random.Random, tally: collections.Counter[str]
) -> dict[str, Any]:
    prefix = f"soak{index:02d}"
    started = time.monotonic()
    record: dict[str, Any] = {"prefix": prefix, "outcome": "succeeded", "nuked": False}
    try:
        await asyncio.wait_for(_lifecycle(emulator, prefix, rng, tally), LIFECYCLE_LIMIT)
    except asyncio.TimeoutError:
        record["outcome"] = "hung"
    except AssertionError as exc:  # a computation gave a wrong answer
        record["outcome"] = "wrong result"
        record["error"] = repr(exc)
    except Exception as exc:
        # Clear: one of the errors the cluster reports failures with, saying what failed
        # (not a KeyError or TypeError escaping from somewhere, not an empty message).
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        clear = isinstance(exc, CLEAR_ERRORS) and len(message) > 20
        record["outcome"] = "clear error" if clear else "unclear error"
        record["error"] = f"{type(exc).__name__}: {message}"
    if count_left(emulator, prefix):
        record["nuked"] = True
        await nuke_async(prefix)
    record["leaked"] = count_left(emulator, prefix)
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def test_lifecycles_under_faults(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261125)
    records: list[dict[str, Any]] = []
    tally: collections.Counter[str] = collections.Counter()

    async def main() -> None:
        async with Emulator(
            ssh_port=free_port(), seed=7, profile=PROFILE, time_scale=TIME_SCALE
        ) as emulator:
            for name, value in emulator.env().items():
                monkeypatch.setenv(name, value)
            emulator.faults.set_api_error_kinds(
                ["server_error", "unavailable", "rate_limit_exceeded", "conflict"]
            )
            emulator.faults.set_api_error_rate(0.05)
            emulator.faults.boot_failure_rate = 0.10
            stop = asyncio.Event()
            harasser = asyncio.create_task(_harass_ssh(emulator, rng, stop, tally))
            try:
                with dask.config.set(
                    {
                        **emulator.dask_config(),
                        "scherbelberg.state-dir": str(tmp_path / "state"),
                        "distributed.deploy.lost-worker-timeout": "2s",
                    }
                ):
                    for index in range(LIFECYCLES):
                        records.append(await _run_one(emulator, index, rng, tally))
            finally:
                stop.set()
                await harasser
            injected = emulator.faults.to_dict()
            tally["API errors"] = injected["injected_api_errors"]
            tally["failed boots"] = injected["failed_boots"]
            tally["API requests"] = emulator.counters()["total"]["requests"]

    asyncio.run(main())

    counts = collections.Counter(r["outcome"] for r in records)
    summary = {
        "lifecycles": len(records),
        "succeeded": counts["succeeded"],
        "failed with a clear error": counts["clear error"],
        "failed unclearly": counts["unclear error"],
        "wrong results": counts["wrong result"],
        "hung": counts["hung"],
        "nuked after close failed": sum(r["nuked"] for r in records),
        "resources leaked": sum(r["leaked"] for r in records),
        "faults injected": dict(tally),
        "records": records,
    }
    print(json.dumps(summary, indent=1))
    if os.environ.get("SCHERBELBERG_SOAK_REPORT"):
        with open(os.environ["SCHERBELBERG_SOAK_REPORT"], "w") as f:
            json.dump(summary, f, indent=1)
    assert summary["hung"] == 0, summary
    assert summary["failed unclearly"] == 0, summary
    assert summary["wrong results"] == 0, summary
    assert summary["resources leaked"] == 0, summary
    # Faults are retried and failed boots replaced: giving up is the rare exception.
    assert counts["succeeded"] >= LIFECYCLES - max(1, LIFECYCLES // 10), summary
