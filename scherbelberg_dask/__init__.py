"""scherbelberg-dask: Dask clusters on Hetzner Cloud, and a local Hetzner Cloud emulator.

Public API
----------
HetznerCluster
    A Dask ``SpecCluster`` whose scheduler and workers are Hetzner servers.
HetznerScheduler, HetznerWorker
    Its ``ProcessInterface``s (one server each).
Node
    A node as seen from the client (IPs, labels, ``run``, ``ping_ssh``).
nuke, nuke_async
    Remove every labelled resource of a cluster prefix.
Emulator
    The local Hetzner Cloud emulator (API and emulated servers).
"""

from scherbelberg_dask import config as _config  # noqa: F401  (registers the defaults)
from scherbelberg_dask._version import __version__
from scherbelberg_dask.cluster.cluster import HetznerCluster
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.nuke import nuke, nuke_async
from scherbelberg_dask.cluster.processes import HetznerScheduler, HetznerWorker
from scherbelberg_dask.emulator import Emulator

__all__ = [
    "Emulator",
    "HetznerCluster",
    "HetznerScheduler",
    "HetznerWorker",
    "Node",
    "__version__",
    "nuke",
    "nuke_async",
]
