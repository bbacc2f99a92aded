"""Test-wide isolation: only the Debian tier sees this machine's prepared Debian images.

Everywhere else a ``debian-12`` server is the emulator's own machine, whether or not
this machine has built the image: the API tests stay fast and mean the same on every
host, and a Debian tier that ran first cannot turn them into container boots.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from scherbelberg_dask.emulator.debian.images import cache_root

#: This machine's Debian image cache, as it was before the tests hid it.
IMAGE_CACHE = cache_root()
_VARIABLE = "SCHERBELBERG_EMULATOR_IMAGES"
_empty_key = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_empty_key] = tempfile.mkdtemp(prefix="sb-no-images-")
    os.environ[_VARIABLE] = config.stash[_empty_key]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash.get(_empty_key, ""), ignore_errors=True)
