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

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scherbelberg_dask import config as _config  # noqa: F401  (registers the defaults)
from scherbelberg_dask._version import __version__

if TYPE_CHECKING:
    from scherbelberg_dask.cluster.cluster import HetznerCluster
    from scherbelberg_dask.cluster.node import Node
    from scherbelberg_dask.cluster.nuke import nuke, nuke_async
    from scherbelberg_dask.cluster.processes import HetznerScheduler, HetznerWorker
    from scherbelberg_dask.emulator import Emulator

# Imported on first use, so that `import scherbelberg_dask.<layer>` stays light.
_EXPORTS = {
    "Emulator": "scherbelberg_dask.emulator",
    "HetznerCluster": "scherbelberg_dask.cluster.cluster",
    "HetznerScheduler": "scherbelberg_dask.cluster.processes",
    "HetznerWorker": "scherbelberg_dask.cluster.processes",
    "Node": "scherbelberg_dask.cluster.node",
    "nuke": "scherbelberg_dask.cluster.nuke",
    "nuke_async": "scherbelberg_dask.cluster.nuke",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scherbelberg_dask' has no attribute {name!r}")
