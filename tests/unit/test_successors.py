"""Retired server types resolve to their successors; deprecated images name the current one.

The catalog is the emulator's, read through the API as the cluster reads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import dask.config
import pytest
import yaml

from scherbelberg_dask.cloud.catalog import Catalog
from scherbelberg_dask.cloud.client import CloudClient
from scherbelberg_dask.cloud.errors import CatalogError
from scherbelberg_dask.cloud.successors import resolve_server_type, successor_chain, successors
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.emulator import Emulator

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    """The emulator's catalog as the API serves it (deprecated types and images too)."""

    async def fetch(emulator: Emulator) -> Catalog:
        cloud = CloudClient(emulator.token, emulator.endpoint)
        try:
            return await cloud.catalog()
        finally:
            await cloud.close()

    with Emulator() as emulator:
        yield asyncio.run(fetch(emulator))


def test_chains_follow_the_generations() -> None:
    assert successor_chain("cx11") == ["cx22", "cx23"]
    assert successor_chain("ccx52") == ["ccx53"]
    assert successor_chain("cpx11") == ["cpx12"]
    assert successor_chain("cx23") == []
    assert successor_chain("nonsense") == []


def test_every_retired_type_of_the_catalog_has_an_orderable_successor(catalog: Catalog) -> None:
    retired = {
        (t.name, loc)
        for t in catalog.server_types.values()
        for loc, reason in t.unavailable.items()
        if reason is not None and reason.startswith("retired")
    }
    assert {name for name, _ in retired} >= {"cx11", "cx22", "cpx11", "ccx12", "ccx52"}
    for name, location in retired:
        resolution = resolve_server_type(catalog, name, location)
        assert resolution.replaced
        new = resolution.server_type
        assert new.orderable_in(location)
        old = catalog.server_types[name]
        # A successor is the same kind of machine with at least the memory of the old one.
        assert (new.architecture, new.cpu_type) == (old.architecture, old.cpu_type)
        assert new.memory_gb >= old.memory_gb, (name, new.name)
    # Successors are types the API knows; no current type is listed as retired.
    for old, new in successors().items():
        assert new in catalog.server_types, (old, new)
        assert any(r is not None for r in catalog.server_types[old].unavailable.values())


def test_the_mission_type_resolves_with_one_line_naming_both(catalog: Catalog) -> None:
    resolution = resolve_server_type(catalog, "ccx52", "fsn1")
    assert resolution.server_type.name == "ccx53"
    line = resolution.warning("worker_type")
    assert "\n" not in line
    assert "worker_type ccx52 (32 cores, 128 GB) is retired" in line
    assert "successor ccx53 (32 cores, 128 GB)" in line
    old, new = catalog.server_types["ccx52"], catalog.server_types["ccx53"]
    saving = old.prices["fsn1"].monthly_net - new.prices["fsn1"].monthly_net
    assert f"({saving:.2f} EUR/month) less" in line
    hourly = old.prices["fsn1"].hourly_net - new.prices["fsn1"].hourly_net
    assert f"{hourly:.4f} EUR/h" in line


def test_a_chain_skips_to_the_newest_orderable_type(catalog: Catalog) -> None:
    resolution = resolve_server_type(catalog, "cx11", "fsn1")
    assert resolution.server_type.name == "cx23"
    line = resolution.warning("scheduler_type")
    assert "cx11 (1 core, 2 GB)" in line and "cx23 (2 cores, 4 GB)" in line
    assert "EUR/month) more" in line


def test_a_type_the_api_no_longer_lists_resolves_by_the_table(catalog: Catalog) -> None:
    # Hetzner drops types from the API some time after they became unavailable.
    gone = dataclasses.replace(
        catalog,
        server_types={n: t for n, t in catalog.server_types.items() if n not in ("cx11", "cx22")},
    )
    resolution = resolve_server_type(gone, "cx11", "fsn1")
    assert resolution.server_type.name == "cx23"
    assert resolution.warning("worker_type").startswith(
        "worker_type cx11 is no longer listed by the API; using its successor cx23 (2 cores"
    )


def test_an_orderable_type_is_itself(catalog: Catalog) -> None:
    resolution = resolve_server_type(catalog, "ccx53", "fsn1")
    assert resolution.server_type.name == "ccx53"
    assert not resolution.replaced


def test_error_policy_names_the_successor(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match=r"'ccx52' is retired.*successor is ccx53 \(32 cores"):
        resolve_server_type(catalog, "ccx52", "fsn1", "error")


def test_a_successor_not_offered_in_the_location_fails_with_the_nearest(
    catalog: Catalog,
) -> None:
    # cx23 is sold in Europe only: in Ashburn, the nearest by cores and memory come first.
    with pytest.raises(CatalogError) as info:
        resolve_server_type(catalog, "cx11", "ash")
    message = str(info.value)
    assert "cx22 → cx23 cannot be ordered in ash either" in message
    nearest = re.search(r"nearest: (\w+) \(1 core, 2 GB\)", message)
    assert nearest and nearest.group(1) == "cpx12", message
    assert "valid server types in ash:" in message


def test_a_type_without_successor_fails_with_the_nearest(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match=r"'cax11' is not offered in ash; nearest: cpx22 \(2"):
        resolve_server_type(catalog, "cax11", "ash")
    with pytest.raises(CatalogError, match=r"unknown server type 'cx99'; nearest: cx\d3 "):
        resolve_server_type(catalog, "cx99", "fsn1")


def test_deprecated_images_name_the_current_one(catalog: Catalog) -> None:
    with pytest.raises(
        CatalogError, match=r"'ubuntu-20.04' is deprecated.*ubuntu image is ubuntu-24"
    ):
        catalog.image("ubuntu-20.04", "x86")
    with pytest.raises(CatalogError, match=r"'debian-11' is deprecated.*debian image is debian-13"):
        catalog.image("debian-11", "arm")
    # Gone from the API entirely: still named by its family.
    with pytest.raises(CatalogError, match=r"unknown image 'ubuntu-18.04'.*ubuntu-24.04"):
        catalog.image("ubuntu-18.04", "x86")
    assert catalog.image("ubuntu-24.04", "x86").name == "ubuntu-24.04"


def test_retired_types_setting() -> None:
    assert ClusterSettings.resolve().retired_types == "successor"
    assert ClusterSettings.resolve(retired_types="error").retired_types == "error"
    with dask.config.set({"scherbelberg.retired-types": "error"}):
        assert ClusterSettings.resolve().retired_types == "error"
    with pytest.raises(ValueError, match=r"retired_types must be 'successor' .* or 'error'"):
        ClusterSettings.resolve(retired_types="newest")


def test_the_docs_list_every_successor_with_its_source() -> None:
    page = (DOCS / "catalog.md").read_text()
    text = resources.files("scherbelberg_dask.cloud").joinpath("successors.yaml").read_text()
    table = yaml.safe_load(text)["server_types"]
    for old, entry in table.items():
        row = re.search(
            rf"^\| {old} \| {entry['successor']} \| .*\b{entry['source']}\b", page, re.M
        )
        assert row, f"docs/catalog.md has no row for {old} → {entry['successor']}"
        assert re.search(rf"^\| {entry['source']} \| <https://", page, re.M), entry["source"]
    assert "catalog\n" in (DOCS / "index.md").read_text().split("```{toctree}")[1]
