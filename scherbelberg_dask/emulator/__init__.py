"""A local Hetzner Cloud: an API server speaking Hetzner Cloud API v1 plus emulated servers.

Start one with ``python -m scherbelberg_dask emulator``, the :class:`Emulator` (async or
sync context manager), or the pytest fixtures ``hetzner_emulator`` and
``hetzner_emulator_env``.
"""

from .core import DEFAULT_NETWORK_RANGE, Emulator
from .faults import API_ERROR_KINDS, Faults
from .machine.interface import EMULATOR_IMAGE_NAME
from .settings import PROFILES, TimingProfile

__all__ = [
    "API_ERROR_KINDS",
    "DEFAULT_NETWORK_RANGE",
    "EMULATOR_IMAGE_NAME",
    "PROFILES",
    "Emulator",
    "Faults",
    "TimingProfile",
]
