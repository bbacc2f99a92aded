"""Faults while an autonomous cluster's controller scales and deletes: API errors and
failed boots leave nothing behind, and nothing hangs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dask.config
import pytest
from distributed import Client, fire_and_forget

from scherbelberg_dask import HetznerCluster
from scherbelberg_dask.emulator import Emulator
from tests.cluster.conftest import assert_nothing_left, count_left
from tests.cluster.test_autonomous import _controller_logs, _wait_for, _workers

pytestmark = pytest.mark.faults


async def test_controller_scales_and_deletes_through_faults(
    hetzner_emulator_env: Emulator,
) -> None:
    emulator = hetzner_emulator_env
    with dask.config.set({"scherbelberg.controller.interval": 0.2}):
        cluster = await HetznerCluster(
            workers=0, prefix="rough", autonomous=True, idle_timeout="2s", asynchronous=True
        )
    await cluster.adapt(minimum=0, maximum=3, interval="200ms", wait_count=5)
    emulator.faults.fail_next_boots(2)  # the controller's first servers fail to boot
    emulator.faults.set_api_error_kinds(["server_error", "unavailable", "rate_limit_exceeded"])
    emulator.faults.set_api_error_rate(0.05)  # and the API fails now and then
    try:
        async with Client(cluster, asynchronous=True) as client:
            futures = client.map(time.sleep, [0.3] * 20, pure=False)
            fire_and_forget(futures)
            seen: set[str] = set()

            def scaled() -> bool:
                seen.update(_workers(emulator, "rough"))
                return len(seen) >= 2  # the failed boots, or their replacements

            await _wait_for(scaled, cloud=emulator)
            assert await asyncio.wait_for(client.gather(futures), 180) == [None] * 20
        await cluster.detach()
        await _wait_for(lambda: count_left(emulator, "rough") == 0, 240, emulator)
    except BaseException:
        print(_controller_logs(emulator))
        raise
    finally:
        emulator.faults.set_api_error_rate(0.0)
    injected: dict[str, Any] = emulator.faults.to_dict()
    assert injected["failed_boots"] >= 1, injected
    assert_nothing_left(emulator, "rough")
