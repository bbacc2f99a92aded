"""pytest fixtures for testing against the local Hetzner Cloud emulator.

Registered as a ``pytest11`` plugin, so every project that installs scherbelberg-dask
can use them; they are synchronous and need no pytest-asyncio:

``hetzner_emulator``
    A started :class:`~scherbelberg_dask.emulator.Emulator` (``instant`` profile, a free
    SSH port), stopped after the test.  Use ``emulator.endpoint`` and
    ``emulator.token`` with any Hetzner client, ``emulator.faults`` to inject faults and
    ``emulator.snapshot()`` to look at the emulated project.
``hetzner_emulator_env``
    The same emulator, with its environment bundle (``HCLOUD_ENDPOINT``,
    ``HCLOUD_TOKEN``, ``DASK_SCHERBELBERG__*``) set in ``os.environ`` and its
    :meth:`~scherbelberg_dask.emulator.Emulator.dask_config` applied to
    ``dask.config`` for the duration of the test.

Example::

    def test_cluster(hetzner_emulator_env):
        with HetznerCluster(workers=1) as cluster:
            ...
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # Only the fixtures need the emulator: pytest loads this plugin in every test run of
    # an environment that has the package, and must not import the API server there.
    from .core import Emulator

logger = logging.getLogger(__name__)

__all__ = ["free_port", "hetzner_emulator", "hetzner_emulator_env"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hetzner_emulator() -> Iterator[Emulator]:
    """A running emulator (instant profile, free SSH port), stopped after the test."""
    from .core import Emulator

    emulator = Emulator(profile="instant", ssh_port=free_port())
    emulator.start_sync()
    try:
        yield emulator
    finally:
        emulator.stop_sync()


@pytest.fixture
def hetzner_emulator_env(
    hetzner_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Emulator]:
    """``hetzner_emulator`` with its bundle in ``os.environ`` and ``dask.config``.

    Cluster state (keys, certificates) goes to a temporary directory of the test, never
    to the user's own data directory.
    """
    import dask.config

    for name, value in hetzner_emulator.env().items():
        monkeypatch.setenv(name, value)
    state_dir = tmp_path / "scherbelberg-state"
    with dask.config.set(
        {**hetzner_emulator.dask_config(), "scherbelberg.state-dir": str(state_dir)}
    ):
        yield hetzner_emulator
