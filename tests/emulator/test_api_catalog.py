"""The catalog: server types per location, deprecation, locations, datacenters, pricing."""

from __future__ import annotations

import hcloud
from conftest import Raw


def test_default_type_is_orderable_in_europe(client: hcloud.Client) -> None:
    cx23 = client.server_types.get_by_name("cx23")
    assert cx23.architecture == "x86" and cx23.cpu_type == "shared"
    offers = {o.location.name: o for o in cx23.locations}
    for name in ("fsn1", "nbg1", "hel1"):
        assert offers[name].available is True
        assert offers[name].recommended is True
        assert offers[name].deprecation is None
    assert {p["location"] for p in cx23.prices} == set(offers)


def test_families_and_architectures(client: hcloud.Client) -> None:
    types = {t.name: t for t in client.server_types.get_all()}
    for name in ("cx23", "cx33", "cx43", "cx53", "cpx12", "cpx22", "cpx62", "ccx13", "ccx63"):
        assert types[name].architecture == "x86", name
    for name in ("cax11", "cax21", "cax31", "cax41"):
        assert types[name].architecture == "arm", name
    assert types["ccx13"].cpu_type == "dedicated"
    assert {o.location.name for o in types["cpx22"].locations} >= {"ash", "hil", "sin"}


def test_old_generations_are_flagged(client: hcloud.Client, raw: Raw) -> None:
    for name in ("cx11", "cx22", "cx52", "cpx11", "cpx51", "ccx12", "ccx62"):
        server_type = client.server_types.get_by_name(name)
        assert server_type is not None, name
        for offer in server_type.locations:
            assert offer.available is False, name
            assert offer.deprecation is not None
            assert offer.deprecation.unavailable_after > offer.deprecation.announced
        body = raw("GET", "/server_types", params={"name": name}).json()["server_types"][0]
        assert body["deprecated"] is True and body["deprecation"] is not None


def test_server_types_ignore_sort(raw: Raw) -> None:
    # /server_types documents no sort: the parameter is ignored, not refused.
    listed = raw("GET", "/server_types", params={"per_page": 50}).json()
    unsorted = [t["id"] for t in listed["server_types"]]
    for sort in ("name", "name:desc", "bogus"):
        answer = raw("GET", "/server_types", params={"per_page": 50, "sort": sort})
        assert answer.status_code == 200, sort
        assert [t["id"] for t in answer.json()["server_types"]] == unsorted
    assert listed["meta"]["pagination"]["total_entries"] == len(listed["server_types"])
    one = listed["server_types"][0]
    assert raw("GET", f"/server_types/{one['id']}").json()["server_type"] == one


def test_locations_and_datacenters(client: hcloud.Client, raw: Raw) -> None:
    locations = {loc.name: loc for loc in client.locations.get_all()}
    assert set(locations) == {"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}
    assert {locations[n].network_zone for n in ("fsn1", "nbg1", "hel1")} == {"eu-central"}
    assert locations["ash"].network_zone == "us-east"
    assert client.locations.get_by_name("hel1").country == "FI"
    by_name_desc = raw("GET", "/locations", params={"sort": "name:desc"}).json()["locations"]
    assert [loc["name"] for loc in by_name_desc] == sorted(locations, reverse=True)

    answer = raw("GET", "/datacenters").json()
    assert answer["recommendation"] in {dc["id"] for dc in answer["datacenters"]}
    fsn = next(dc for dc in answer["datacenters"] if dc["location"]["name"] == "fsn1")
    cx23 = client.server_types.get_by_name("cx23")
    cx22 = client.server_types.get_by_name("cx22")
    assert cx23.id in fsn["server_types"]["available"]
    assert cx22.id in fsn["server_types"]["supported"]
    assert cx22.id not in fsn["server_types"]["available"]
    assert raw("GET", f"/datacenters/{fsn['id']}").json()["datacenter"]["name"] == fsn["name"]


def test_pricing_matches_server_types(raw: Raw) -> None:
    pricing = raw("GET", "/pricing").json()["pricing"]
    assert pricing["currency"] == "EUR"
    types = raw("GET", "/server_types", params={"per_page": 50}).json()["server_types"]
    by_id = {t["id"]: t["prices"] for t in types}
    for entry in pricing["server_types"]:
        assert entry["prices"] == by_id[entry["id"]]
    cx23 = next(t for t in types if t["name"] == "cx23")
    fsn1 = next(p for p in cx23["prices"] if p["location"] == "fsn1")
    net = float(fsn1["price_monthly"]["net"])
    gross = float(fsn1["price_monthly"]["gross"])
    assert 0 < net < gross and abs(gross - net * 1.19) < 1e-6
