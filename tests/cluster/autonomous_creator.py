"""A creating process for the autonomous-cluster tests: the test kills it with SIGKILL.

It creates an autonomous cluster of prefix ``argv[1]`` with no workers, hands
``adapt(minimum=0, maximum=3)`` to its controller, leaves work with ``fire_and_forget``,
says ``ready`` and waits to be killed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from distributed import Client, fire_and_forget

from scherbelberg_dask import HetznerCluster


def work(i: int) -> int:
    time.sleep(0.5)  # the work itself: something for the cluster to scale up for
    return i


def _known_tasks(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def main(prefix: str) -> None:
    cluster = HetznerCluster(workers=0, prefix=prefix, autonomous=True, idle_timeout="3s")
    cluster.adapt(minimum=0, maximum=3, interval="200ms", wait_count=5, target_duration="1s")
    client = Client(cluster)
    fire_and_forget(client.map(work, range(24), pure=False))
    # The work reached the scheduler (the client sends it in the background).
    while client.run_on_scheduler(_known_tasks) < 24:
        time.sleep(0.05)
    print("ready", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
