"""Fixtures for cluster tests: an emulator and the environment that points at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest

from scherbelberg_dask.emulator import Emulator

KINDS = ("servers", "networks", "firewalls", "ssh_keys")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Emulator]:
    """A running emulator; the test process's config and environment point at it.

    The fixture also gives every test its own state directory.
    """
    with Emulator(profile="instant", ssh_port=_free_port()) as emulator:
        env = emulator.env()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with dask.config.set(
                {**emulator.dask_config(), "scherbelberg.state-dir": str(tmp_path / "state")}
            ):
                yield emulator
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def resources(emulator: Emulator, prefix: str | None = None) -> dict[str, list[Any]]:
    """The emulator's resources of each kind (of cluster ``prefix`` if given)."""
    snapshot = emulator.snapshot()
    found: dict[str, list[Any]] = {}
    for kind in KINDS:
        items = snapshot[kind]
        if prefix is not None:
            items = [i for i in items if i["labels"].get("scherbelberg/cluster") == prefix]
        found[kind] = items
    return found


def assert_nothing_left(emulator: Emulator, prefix: str | None = None) -> None:
    left = {kind: items for kind, items in resources(emulator, prefix).items() if items}
    assert not left, f"cloud resources left behind: {left}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
