"""Query parameters of the list calls: undocumented ones are ignored, documented ones checked.

The real API ignores query parameters an endpoint does not document (hcloud-go and the
``hcloud`` CLI send ``sort``, ``page`` and ``per_page`` everywhere) and validates the
documented ones.  These tests hold the emulator to that, endpoint by endpoint, against
the OpenAPI description, and drive every list call of hcloud-python the emulator serves.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from typing import Any

import hcloud
import pytest
from conftest import SPEC_PATH, Raw, wait_until
from hcloud.core.client import ResourceClientBase
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.networks import NetworkRoute, NetworkSubnet
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator.api.listing import DOCUMENTED_PARAMETERS

#: Parameters the emulator reads beyond the OpenAPI description, with the reason:
#: Hetzner's notes give the sort fields of ``/actions`` and the CLI sorts its polls.
BEYOND_SPEC = {"/v1/actions": {"sort"}}


def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())  # type: ignore[no-any-return]


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _query_parameters(spec: dict[str, Any], template: str) -> dict[str, dict[str, Any]]:
    """The documented query parameters of ``GET template``, by name (schema resolved)."""
    item = spec["paths"][template[len("/v1") :]]
    result = {}
    for parameter in item.get("parameters", []) + item["get"].get("parameters", []):
        parameter = _resolve(spec, parameter)
        if parameter["in"] == "query":
            result[parameter["name"]] = _resolve(spec, parameter["schema"])
    return result


def _sort_enum(spec: dict[str, Any], template: str) -> list[str] | None:
    """The ``sort`` values documented for ``GET template`` (``None``: no ``sort``)."""
    if template == "/v1/actions":  # BEYOND_SPEC: the action fields of the family lists
        template = "/v1/servers/actions"
    schema = _query_parameters(spec, template).get("sort")
    if schema is None:
        return None
    return list(_resolve(spec, schema["items"])["enum"])


def _populate(raw: Raw) -> dict[str, int]:
    """One server, network and firewall; the ids that fill ``{id}`` and ``?id=``."""
    server = raw(
        "POST", "/servers", json={"name": "q1", "server_type": "cx23", "image": "debian-12"}
    )
    assert server.status_code == 201
    network = raw("POST", "/networks", json={"name": "n", "ip_range": "127.128.0.0/16"})
    assert network.status_code == 201
    firewall = raw("POST", "/firewalls", json={"name": "f"})
    assert firewall.status_code == 201
    image = raw("GET", "/images", params={"name": "debian-12", "architecture": "x86"})

    def settled() -> bool:
        families = ("servers", "networks", "firewalls", "images")
        pending = [raw("GET", f"/{f}/actions", params={"status": "running"}) for f in families]
        return all(answer.json()["actions"] == [] for answer in pending)

    # Answers are compared across calls below: let every action finish first.
    wait_until(settled, what="actions finished")
    return {
        "servers": server.json()["server"]["id"],
        "networks": network.json()["network"]["id"],
        "firewalls": firewall.json()["firewall"]["id"],
        "images": image.json()["images"][0]["id"],
        "action": server.json()["action"]["id"],
    }


def _call(raw: Raw, template: str, ids: dict[str, int], params: list[tuple[str, Any]]) -> Any:
    family = template.split("/")[2]
    path = template.replace("{id}", str(ids.get(family, 0)))[len("/v1") :]
    if template == "/v1/actions":
        params = [("id", ids["action"]), *params]
    return raw("GET", path, params=params)


def _assert_invalid(answer: Any, field: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"]
    assert [f["name"] for f in error["details"]["fields"]] == [field]


def test_parameter_table_matches_the_spec() -> None:
    spec = _spec()
    for template, documented in DOCUMENTED_PARAMETERS.items():
        expected = set(_query_parameters(spec, template)) | BEYOND_SPEC.get(template, set())
        assert set(documented) == expected, template


def test_each_list_route_follows_its_spec(raw: Raw) -> None:
    spec = _spec()
    ids = _populate(raw)
    for template, documented in DOCUMENTED_PARAMETERS.items():
        plain = _call(raw, template, ids, [])
        assert plain.status_code == 200, (template, plain.text)
        key = next(k for k in plain.json() if k not in ("meta", "recommendation"))
        unknown = _call(raw, template, ids, [("foo", "bar"), ("sort_by", "x")])
        assert unknown.status_code == 200 and unknown.json() == plain.json(), template

        enum = _sort_enum(spec, template)
        if enum is None:
            ignored = _call(raw, template, ids, [("sort", "bogus"), ("sort", "name:desc")])
            assert ignored.status_code == 200, template
            assert ignored.json()[key] == plain.json()[key], template
        else:
            for value in enum:
                assert _call(raw, template, ids, [("sort", value)]).status_code == 200, value
            for bad in ("bogus", "id:sideways", "stats.size"):
                _assert_invalid(_call(raw, template, ids, [("sort", bad)]), "sort")

        if "per_page" in documented:
            for name, bad in (("per_page", "abc"), ("per_page", "0"), ("page", "x")):
                _assert_invalid(_call(raw, template, ids, [(name, bad)]), name)
            paged = _call(raw, template, ids, [("page", 1), ("per_page", 1)]).json()
            pagination = paged["meta"]["pagination"]
            assert pagination["page"] == 1 and pagination["per_page"] == 1
            assert len(paged[key]) == min(1, pagination["total_entries"]), template
        else:
            ignored = _call(raw, template, ids, [("page", "x"), ("per_page", "abc")])
            assert ignored.status_code == 200 and ignored.json() == plain.json(), template


def test_sort_where_the_endpoint_does_not_document_it(raw: Raw) -> None:
    types = raw("GET", "/server_types", params={"per_page": 50}).json()["server_types"]
    for sort in ("id", "name:desc"):
        answer = raw("GET", "/server_types", params={"per_page": 50, "sort": sort})
        assert answer.status_code == 200
        assert answer.json()["server_types"] == types
    pricing = raw("GET", "/pricing")
    answer = raw("GET", "/pricing", params={"sort": "id", "per_page": "abc"})
    assert answer.status_code == 200 and answer.json() == pricing.json()
    isos = raw("GET", "/isos", params=[("sort", "name"), ("sort", "id:desc")])
    assert isos.status_code == 200 and isos.json()["isos"] == []


def test_sort_where_the_endpoint_documents_it(raw: Raw) -> None:
    by_name = raw("GET", "/locations", params={"sort": "name"})
    assert by_name.status_code == 200
    names = [loc["name"] for loc in by_name.json()["locations"]]
    assert names == sorted(names) and len(names) == 6
    by_id = raw("GET", "/datacenters", params={"sort": "id"})
    assert by_id.status_code == 200
    dc_ids = [dc["id"] for dc in by_id.json()["datacenters"]]
    assert dc_ids == sorted(dc_ids) and len(dc_ids) == 6
    desc = raw("GET", "/datacenters", params={"sort": "name:desc"}).json()["datacenters"]
    assert [dc["name"] for dc in desc] == sorted((dc["name"] for dc in desc), reverse=True)
    # primary_ips sorts by id and created only.
    _assert_invalid(raw("GET", "/primary_ips", params={"sort": "name"}), "sort")


def test_undocumented_parameters_on_servers(raw: Raw) -> None:
    for name in ("b", "a"):
        raw("POST", "/servers", json={"name": name, "server_type": "cx23", "image": "debian-12"})
    plain = raw("GET", "/servers").json()
    answer = raw("GET", "/servers", params={"foo": "bar"})
    assert answer.status_code == 200 and answer.json() == plain
    assert [s["name"] for s in plain["servers"]] == ["b", "a"]
    # Filters of other endpoints are not filters here: fingerprint, type, id.
    other = raw("GET", "/servers", params={"fingerprint": "x", "type": "snapshot", "id": "nope"})
    assert other.status_code == 200 and other.json() == plain
    by_name = raw("GET", "/servers", params={"sort": "name:desc"}).json()["servers"]
    assert [s["name"] for s in by_name] == ["b", "a"]
    by_name = raw("GET", "/servers", params={"sort": "name"}).json()["servers"]
    assert [s["name"] for s in by_name] == ["a", "b"]


def test_documented_parameters_keep_their_validation(raw: Raw) -> None:
    _assert_invalid(raw("GET", "/servers", params={"sort": "bogus"}), "sort")
    _assert_invalid(raw("GET", "/servers", params={"per_page": "abc"}), "per_page")
    _assert_invalid(raw("GET", "/servers", params={"status": "asleep"}), "status")
    _assert_invalid(raw("GET", "/servers", params={"label_selector": "=("}), "label_selector")
    _assert_invalid(raw("GET", "/server_types", params={"per_page": "abc"}), "per_page")
    _assert_invalid(raw("GET", "/server_types", params={"page": "0"}), "page")
    _assert_invalid(
        raw("GET", "/images", params={"include_deprecated": "maybe"}), "include_deprecated"
    )
    _assert_invalid(raw("GET", "/volumes", params={"sort": "size"}), "sort")
    _assert_invalid(raw("GET", "/certificates", params={"label_selector": "a b"}), "label_selector")
    # The same names where they are not documented are ignored.
    assert raw("GET", "/server_types", params={"label_selector": "=("}).status_code == 200
    assert raw("GET", "/locations", params={"status": "asleep"}).status_code == 200


def test_actions_batch_reads_only_id_and_sort(raw: Raw) -> None:
    created = raw(
        "POST", "/servers", json={"name": "a", "server_type": "cx23", "image": "debian-12"}
    )
    body = created.json()
    ids = [body["action"]["id"], body["next_actions"][0]["id"]]
    wait_until(
        lambda: all(
            raw("GET", f"/actions/{i}").json()["action"]["status"] == "success" for i in ids
        ),
        what="actions done",
    )
    # status, page and per_page are not documented for /actions: no filter, no error.
    answer = raw(
        "GET",
        "/actions",
        params=[("id", i) for i in ids]
        + [("status", "error"), ("status", "bogus"), ("page", "x"), ("per_page", "abc")]
        + [("sort", "id:desc")],
    )
    assert answer.status_code == 200
    assert [a["id"] for a in answer.json()["actions"]] == sorted(ids, reverse=True)
    # What the hcloud CLI sends while waiting.
    cli = raw(
        "GET",
        "/actions",
        params=[("id", i) for i in ids] + [("page", 1), ("sort", "status"), ("sort", "id")],
    )
    assert [a["id"] for a in cli.json()["actions"]] == sorted(ids)
    _assert_invalid(raw("GET", "/actions", params={"id": ids[0], "sort": "bogus"}), "sort")
    _assert_invalid(raw("GET", "/actions", params={"id": "x"}), "id")
    # On a family list, status is documented and filters; a query id is not on /{id}/actions.
    server_id = body["server"]["id"]
    running = raw("GET", f"/servers/{server_id}/actions", params={"status": "running"})
    assert running.status_code == 200 and running.json()["actions"] == []
    ignored = raw("GET", f"/servers/{server_id}/actions", params={"id": "abc"})
    assert ignored.status_code == 200 and len(ignored.json()["actions"]) == 2


#: hcloud-python clients whose collections the emulator does not serve at all.
UNSERVED_CLIENTS = {"storage_boxes", "storage_box_types", "zones"}
#: Clients whose action lists the emulator serves (``/v1/<name>/actions``).
ACTION_FAMILIES = {"servers", "networks", "firewalls", "images"}


def _resource_clients(client: hcloud.Client) -> dict[str, ResourceClientBase]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # datacenters is deprecated
        return {
            name: value
            for name in dir(client)
            if not name.startswith("_")
            and isinstance(value := getattr(client, name), ResourceClientBase)
        }


def _get_all(function: Callable[..., list[Any]], sort: list[str]) -> tuple[list[Any], bool]:
    """Call ``function`` with ``sort`` if it accepts one; return the result and whether."""
    sortable = "sort" in inspect.signature(function).parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return (function(sort=sort) if sortable else function()), sortable


def test_every_hcloud_python_list_call(client: hcloud.Client, public_key: str) -> None:
    client.ssh_keys.create(name="k", public_key=public_key)
    network = client.networks.create(
        name="net",
        ip_range="127.128.0.0/16",
        subnets=[NetworkSubnet(type="cloud", network_zone="eu-central", ip_range="127.128.0.0/24")],
    )
    subnet = NetworkSubnet(type="cloud", network_zone="eu-central", ip_range="127.128.1.0/24")
    network.add_subnet(subnet).wait_until_finished()
    route = NetworkRoute(destination="127.129.0.0/24", gateway="127.128.0.10")
    network.add_route(route).wait_until_finished()
    firewall = client.firewalls.create(
        name="fw",
        rules=[FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0"])],
    ).firewall
    client.placement_groups.create(name="pg", type="spread")
    servers = []
    for name in ("s1", "s2"):
        response = client.servers.create(
            name=name,
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            networks=[network],
            firewalls=[firewall],
        )
        response.action.wait_until_finished()
        for action in response.next_actions:
            action.wait_until_finished()
        servers.append(response.server)
    snapshot = client.servers.get_by_id(servers[0].id).create_image(description="snap")
    snapshot.action.wait_until_finished()

    resource_clients = _resource_clients(client)
    # /actions without ids was removed from the API (410), so ActionsClient.get_all is out.
    driven = set(resource_clients) - UNSERVED_CLIENTS - {"actions"}
    assert driven >= {"servers", "server_types", "locations", "datacenters", "images", "isos"}
    for name in sorted(driven):
        items, sortable = _get_all(resource_clients[name].get_all, ["id:desc"])
        ids = [item.id for item in items]
        assert len(set(ids)) == len(ids), name
        if sortable:
            assert ids == sorted(ids, reverse=True), name
        if name in {"servers", "networks", "firewalls", "ssh_keys", "placement_groups"}:
            assert ids, name
    assert len(client.servers.get_all()) == 2
    assert len(client.server_types.get_all()) > 0
    assert len(client.locations.get_all()) == 6

    bound: dict[str, Any] = {
        "servers": client.servers.get_by_id(servers[0].id),
        "networks": client.networks.get_by_id(network.id),
        "firewalls": client.firewalls.get_by_id(firewall.id),
        "images": client.images.get_by_id(snapshot.image.id),
    }
    for name in sorted(ACTION_FAMILIES):
        family = resource_clients[name].actions  # type: ignore[attr-defined]
        actions, sortable = _get_all(family.get_all, ["id:desc"])
        assert sortable and actions, name
        assert [a.id for a in actions] == sorted((a.id for a in actions), reverse=True), name
        commands, _ = _get_all(family.get_all, ["command:asc", "id:desc"])
        assert [a.command for a in commands] == sorted(a.command for a in commands), name
        own, sortable = _get_all(bound[name].get_actions, ["started:desc"])
        assert sortable and own, name
        assert [a.started for a in own] == sorted((a.started for a in own), reverse=True)
        assert {a.id for a in own} <= {a.id for a in actions}, name


def test_hcloud_python_lists_all_actions_only_to_be_refused(client: hcloud.Client) -> None:
    # Why ActionsClient.get_all is not driven above: it sends no id, which the API refuses.
    with pytest.raises(hcloud.APIException) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.actions.get_all(sort=["id"])
    assert info.value.code == "deprecated_api_endpoint"
