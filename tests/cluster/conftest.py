"""Fixtures for cluster tests: an emulator and the environment that points at it."""

from __future__ import annotations

from typing import Any

import pytest

from scherbelberg_dask.emulator import Emulator

KINDS = ("servers", "networks", "firewalls", "ssh_keys")


@pytest.fixture
def cloud(hetzner_emulator_env: Emulator) -> Emulator:
    """A running emulator the test's config and environment point at (the public fixture)."""
    return hetzner_emulator_env


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


def count_left(emulator: Emulator, prefix: str) -> int:
    """How many resources of cluster ``prefix`` the emulator still holds."""
    return sum(len(items) for items in resources(emulator, prefix).values())


def assert_nothing_left(emulator: Emulator, prefix: str | None = None) -> None:
    left = {kind: items for kind, items in resources(emulator, prefix).items() if items}
    assert not left, f"cloud resources left behind: {left}"
