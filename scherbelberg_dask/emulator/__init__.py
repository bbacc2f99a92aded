"""A local Hetzner Cloud: an API server speaking Hetzner Cloud API v1 plus emulated servers.

Start one with ``python -m scherbelberg_dask emulator``, the :class:`Emulator` (async or
sync context manager), or the pytest fixtures ``hetzner_emulator`` and
``hetzner_emulator_env``.

The names below are imported on first use, so that importing this package (as the pytest
plugin does in every test run of an environment that has scherbelberg-dask) loads
neither the API server nor aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import DEFAULT_NETWORK_RANGE, Emulator
    from .faults import API_ERROR_KINDS, Faults
    from .machine.interface import EMULATOR_IMAGE_NAME
    from .settings import PROFILES, TimingProfile

_EXPORTS = {
    "API_ERROR_KINDS": ".faults",
    "DEFAULT_NETWORK_RANGE": ".core",
    "EMULATOR_IMAGE_NAME": ".machine.interface",
    "PROFILES": ".settings",
    "Emulator": ".core",
    "Faults": ".faults",
    "TimingProfile": ".settings",
}

__all__ = [
    "API_ERROR_KINDS",
    "DEFAULT_NETWORK_RANGE",
    "EMULATOR_IMAGE_NAME",
    "PROFILES",
    "Emulator",
    "Faults",
    "TimingProfile",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
