"""Servers through the official hcloud client: create, read, update, delete, validation."""

from __future__ import annotations

import ipaddress

import hcloud
import pytest
from conftest import Raw, server_state, wait_until
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.placement_groups import PlacementGroup
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator


def _network(client: hcloud.Client, name: str = "net") -> hcloud.networks.BoundNetwork:
    return client.networks.create(
        name=name,
        ip_range="127.128.0.0/16",
        subnets=[NetworkSubnet(type="cloud", ip_range="127.128.0.0/24", network_zone="eu-central")],
    )


def test_create_with_everything(emulator: Emulator, client: hcloud.Client, public_key: str) -> None:
    key = client.ssh_keys.create(name="key", public_key=public_key)
    network = _network(client)
    firewall = client.firewalls.create(
        name="fw",
        rules=[FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0"])],
    ).firewall
    group = client.placement_groups.create(name="pg", type="spread").placement_group
    image = client.images.get_by_name_and_architecture(EMULATOR_IMAGE_NAME, "x86")
    response = client.servers.create(
        name="node-1",
        server_type=ServerType(name="cx23"),
        image=image,
        location=Location(name="nbg1"),
        ssh_keys=[key],
        networks=[network],
        firewalls=[firewall],
        placement_group=group,
        labels={"scherbelberg/cluster": "abc", "role": "worker"},
        user_data="#cloud-config\nruncmd: [echo hi]\n",
    )
    # The answer comes before anything happened: creation is an action.
    assert response.server.status == "initializing"
    assert response.action.command == "create_server"
    assert response.action.status == "running"
    assert [a.command for a in response.next_actions] == ["start_server"]
    assert response.root_password is None
    response.action.wait_until_finished()
    for action in response.next_actions:
        action.wait_until_finished()

    server = client.servers.get_by_id(response.server.id)
    assert server.status == "running"
    assert server.name == "node-1"
    assert server.location.name == "nbg1"
    assert server.server_type.name == "cx23"
    assert server.image.name == EMULATOR_IMAGE_NAME
    assert server.labels == {"scherbelberg/cluster": "abc", "role": "worker"}
    ipv4 = ipaddress.IPv4Address(server.public_net.ipv4.ip)
    assert ipv4 in ipaddress.IPv4Network("127.32.0.0/11")
    ipv6 = ipaddress.IPv6Network(server.public_net.ipv6.ip)
    assert ipv6.prefixlen == 64 and ipv6.subnet_of(ipaddress.IPv6Network("2001:db8::/32"))
    assert [(p.network.id, p.ip) for p in server.private_net] == [(network.id, "127.128.0.2")]
    assert [f.firewall.id for f in server.public_net.firewalls] == [firewall.id]
    assert server.placement_group.id == group.id
    assert client.placement_groups.get_by_id(group.id).servers == [server.id]
    assert client.networks.get_by_id(network.id).servers[0].id == server.id

    state = wait_until(
        lambda: (s := server_state(emulator, server.id)) and s["ssh_up"] and s, what="SSH up"
    )
    assert state["executes"] is True
    assert state["public_ipv4"] == str(ipv4)


def test_root_password_only_without_keys(client: hcloud.Client) -> None:
    response = client.servers.create(
        name="nokey", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
    )
    assert isinstance(response.root_password, str) and len(response.root_password) >= 16


def test_other_images_boot_but_do_not_execute(emulator: Emulator, client: hcloud.Client) -> None:
    response = client.servers.create(
        name="ubuntu", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    response.action.wait_until_finished()
    state = wait_until(
        lambda: (s := server_state(emulator, response.server.id)) and s["ssh_up"] and s
    )
    assert state["executes"] is False


def test_start_after_create_false(client: hcloud.Client) -> None:
    response = client.servers.create(
        name="cold",
        server_type=ServerType(name="cx23"),
        image=Image(name="ubuntu-24.04"),
        start_after_create=False,
    )
    assert response.next_actions == []
    response.action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    assert server.status == "off"
    server.power_on().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "running"


def test_image_name_follows_architecture(client: hcloud.Client) -> None:
    arm = client.servers.create(
        name="arm", server_type=ServerType(name="cax11"), image=Image(name=EMULATOR_IMAGE_NAME)
    ).server
    x86 = client.servers.create(
        name="x86", server_type=ServerType(name="cx23"), image=Image(name=EMULATOR_IMAGE_NAME)
    ).server
    assert arm.image.architecture == "arm"
    assert x86.image.architecture == "x86"
    assert arm.image.id != x86.image.id


def test_get_list_update_delete(client: hcloud.Client) -> None:
    created = [
        client.servers.create(
            name=f"s{i}",
            server_type=ServerType(name="cx23"),
            image=Image(name="ubuntu-24.04"),
            labels={"group": "a" if i < 2 else "b"},
        )
        for i in range(3)
    ]
    for response in created:
        response.action.wait_until_finished()
    assert {s.name for s in client.servers.get_all(label_selector="group=a")} == {"s0", "s1"}
    assert [s.name for s in client.servers.get_all(name="s2")] == ["s2"]
    assert client.servers.get_by_name("s1").id == created[1].server.id
    assert len(client.servers.get_all(status=["running"])) == 3

    server = client.servers.get_by_name("s0")
    updated = server.update(name="renamed", labels={"x": "y"})
    assert updated.name == "renamed" and updated.labels == {"x": "y"}

    action = updated.delete()
    assert action.command == "delete_server"
    action.wait_until_finished()
    with pytest.raises(hcloud.APIException) as info:
        client.servers.get_by_id(updated.id)
    assert info.value.code == "not_found"
    assert {s.name for s in client.servers.get_all()} == {"s1", "s2"}


def test_deleted_server_gives_back_its_addresses(emulator: Emulator, client: hcloud.Client) -> None:
    network = _network(client)
    for name in ("a", "b"):  # b gets the address a had
        server = client.servers.create(
            name=name,
            server_type=ServerType(name="cx23"),
            image=Image(name="ubuntu-24.04"),
            networks=[network],
        ).server
        assert server.private_net[0].ip == "127.128.0.2"
        server.delete().wait_until_finished()


def _error(raw: Raw, body: dict[str, object]) -> dict[str, object]:
    answer = raw("POST", "/servers", json=body)
    assert answer.headers["Content-Type"].startswith("application/json")
    return {"status": answer.status_code, **answer.json()["error"]}


def test_validation_errors(raw: Raw, client: hcloud.Client) -> None:
    base = {"name": "ok", "server_type": "cx23", "image": "ubuntu-24.04"}
    error = _error(raw, {**base, "name": "bad_name!"})
    assert error["status"] == 422 and error["code"] == "invalid_input"
    assert error["details"]["fields"][0]["name"] == "name"  # type: ignore[index]

    error = _error(raw, {"name": "x"})
    fields = {f["name"] for f in error["details"]["fields"]}  # type: ignore[index]
    assert {"server_type", "image"} <= fields

    error = _error(raw, {**base, "labels": {"bad key!": "v"}})
    assert error["code"] == "invalid_input"
    error = _error(raw, {**base, "user_data": "x" * (32 * 1024 + 1)})
    assert error["code"] == "invalid_input"
    assert error["details"]["fields"][0]["name"] == "user_data"  # type: ignore[index]
    assert _error(raw, {**base, "location": "fsn1", "datacenter": "fsn1-dc14"})["status"] == 422
    assert _error(raw, {**base, "image": "no-such-image"})["code"] == "invalid_input"
    x86_image = client.images.get_by_name_and_architecture("ubuntu-24.04", "x86")
    assert _error(raw, {**base, "server_type": "cax11", "image": x86_image.id})["status"] == 422
    assert _error(raw, {**base, "server_type": "cx23", "location": "ash"})["status"] == 422
    assert _error(raw, {**base, "ssh_keys": ["missing"]})["code"] == "invalid_input"
    assert _error(raw, {**base, "networks": [999]})["code"] == "invalid_input"

    # Exactly 32 KiB is fine.
    answer = raw("POST", "/servers", json={**base, "user_data": "x" * (32 * 1024)})
    assert answer.status_code == 201


def test_name_uniqueness(raw: Raw) -> None:
    body = {"name": "dup", "server_type": "cx23", "image": "ubuntu-24.04"}
    assert raw("POST", "/servers", json=body).status_code == 201
    answer = raw("POST", "/servers", json=body)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "uniqueness_error"


def test_deprecated_server_type_is_refused(raw: Raw) -> None:
    for name in ("cx11", "cx22", "cpx11", "ccx12"):
        answer = raw(
            "POST", "/servers", json={"name": "old", "server_type": name, "image": "debian-12"}
        )
        assert answer.status_code == 422, name
        assert "deprecated" in answer.json()["error"]["message"]


def test_protection_blocks_delete(client: hcloud.Client) -> None:
    server = client.servers.create(
        name="precious", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
    ).server
    server.change_protection(delete=True).wait_until_finished()
    with pytest.raises(hcloud.APIException) as info:
        server.delete()
    assert info.value.code == "protected"
    server.change_protection(delete=False).wait_until_finished()
    server.delete().wait_until_finished()


def test_unsupported_server_action(raw: Raw) -> None:
    server = raw(
        "POST", "/servers", json={"name": "u", "server_type": "cx23", "image": "debian-12"}
    )
    answer = raw("POST", f"/servers/{server.json()['server']['id']}/actions/rebuild", json={})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "unsupported_error"


def test_placement_group_holds_at_most_ten(client: hcloud.Client) -> None:
    group = client.placement_groups.create(name="spread", type="spread").placement_group
    for i in range(10):
        client.servers.create(
            name=f"g{i}",
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            placement_group=PlacementGroup(id=group.id),
        )
    with pytest.raises(hcloud.APIException) as info:
        client.servers.create(
            name="g10",
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            placement_group=PlacementGroup(id=group.id),
        )
    assert info.value.code == "placement_error"
