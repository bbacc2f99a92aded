"""Networks: loopback ranges, subnets, routes, private IP assignment, attach/detach."""

from __future__ import annotations

import hcloud
import pytest
from conftest import Raw, server_state, wait_until
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import Network, NetworkRoute, NetworkSubnet
from hcloud.server_types import ServerType
from test_api_power import listening

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator

ZONE = "eu-central"


def _net(client: hcloud.Client, name: str, ip_range: str = "127.128.0.0/16") -> Network:
    return client.networks.create(
        name=name,
        ip_range=ip_range,
        subnets=[NetworkSubnet(type="cloud", ip_range=None, network_zone=ZONE)],
    )


def _server(
    client: hcloud.Client, name: str, type_name: str = "cx23", **kwargs: object
) -> hcloud.servers.BoundServer:
    response = client.servers.create(
        name=name,
        server_type=ServerType(name=type_name),
        image=Image(name=EMULATOR_IMAGE_NAME),
        **kwargs,  # type: ignore[arg-type]
    )
    for action in [response.action, *response.next_actions]:
        action.wait_until_finished()
    return client.servers.get_by_id(response.server.id)


def test_create_get_update_delete(client: hcloud.Client) -> None:
    network = client.networks.create(
        name="net",
        ip_range="127.128.0.0/16",
        subnets=[NetworkSubnet(type="cloud", ip_range=None, network_zone=ZONE)],
        routes=[NetworkRoute(destination="127.129.0.0/24", gateway="127.128.0.10")],
        labels={"k": "v"},
    )
    assert network.ip_range == "127.128.0.0/16"
    assert [s.ip_range for s in network.subnets] == ["127.128.0.0/24"]
    assert network.subnets[0].gateway == "127.128.0.1"
    assert network.routes[0].gateway == "127.128.0.10"
    assert client.networks.get_by_name("net").id == network.id
    assert [n.id for n in client.networks.get_all(label_selector="k=v")] == [network.id]
    updated = network.update(name="renamed", labels={})
    assert updated.name == "renamed" and updated.labels == {}
    network.delete()
    assert client.networks.get_all() == []


def test_ranges_must_be_on_loopback(raw: Raw) -> None:
    for ip_range in ("10.0.0.0/16", "127.0.0.0/16", "127.32.0.0/16", "127.128.0.0/28"):
        answer = raw("POST", "/networks", json={"name": "n", "ip_range": ip_range})
        assert answer.status_code == 422, ip_range
        error = answer.json()["error"]
        assert error["code"] == "invalid_input"
        assert error["details"]["fields"][0]["name"] == "ip_range"
    message = raw("POST", "/networks", json={"name": "n", "ip_range": "10.0.0.0/8"}).json()
    assert "127.0.0.0/8" in message["error"]["message"]
    assert (
        raw("POST", "/networks", json={"name": "n", "ip_range": "127.200.0.0/16"}).status_code
        == 201
    )
    assert (
        raw("POST", "/networks", json={"name": "n", "ip_range": "127.201.0.0/16"}).status_code
        == 409
    )


def test_subnet_and_route_actions(client: hcloud.Client, raw: Raw) -> None:
    network = client.networks.create(name="net", ip_range="127.128.0.0/16")
    network.add_subnet(
        NetworkSubnet(type="cloud", ip_range=None, network_zone=ZONE)
    ).wait_until_finished()
    network.add_subnet(
        NetworkSubnet(type="cloud", ip_range="127.128.5.0/24", network_zone="us-east")
    ).wait_until_finished()
    network = client.networks.get_by_id(network.id)
    assert [s.ip_range for s in network.subnets] == ["127.128.0.0/24", "127.128.5.0/24"]
    with pytest.raises(hcloud.APIException) as info:
        network.add_subnet(
            NetworkSubnet(type="cloud", ip_range="127.128.5.0/25", network_zone=ZONE)
        )
    assert info.value.code == "invalid_input"
    network.delete_subnet(network.subnets[1]).wait_until_finished()
    route = NetworkRoute(destination="127.140.0.0/16", gateway="127.128.0.5")
    network.add_route(route).wait_until_finished()
    assert len(client.networks.get_by_id(network.id).routes) == 1
    network.delete_route(route).wait_until_finished()
    network.change_ip_range("127.128.0.0/15").wait_until_finished()
    assert client.networks.get_by_id(network.id).ip_range == "127.128.0.0/15"
    with pytest.raises(hcloud.APIException):
        network.change_ip_range("127.128.0.0/16")
    assert {a.command for a in client.networks.actions.get_all()} >= {
        "add_subnet",
        "delete_subnet",
        "add_route",
        "delete_route",
        "change_ip_range",
    }
    answer = raw("GET", f"/networks/{network.id}/actions").json()
    assert len(answer["actions"]) == 6


def test_private_ips_are_unique_across_networks(emulator: Emulator, client: hcloud.Client) -> None:
    # Two clusters choose the same range: their servers still get distinct addresses.
    first = _net(client, "cluster-a")
    second = _net(client, "cluster-b")
    a = _server(client, "a", networks=[first])
    b = _server(client, "b", networks=[second])
    c = _server(client, "c", networks=[first])
    ips = [s.private_net[0].ip for s in (a, b, c)]
    assert ips == ["127.128.0.2", "127.128.0.3", "127.128.0.4"]
    wait_until(lambda: all(listening(ip, emulator.ssh_port) for ip in ips), what="private SSH")


def test_attach_and_detach_while_running(emulator: Emulator, client: hcloud.Client) -> None:
    network = _net(client, "net")
    server = _server(client, "s")
    wait_until(lambda: server_state(emulator, server.id)["ssh_up"], what="SSH up")  # type: ignore[index]
    action = server.attach_to_network(network, ip="127.128.0.7")
    assert {r["type"] for r in action.resources} == {"server", "network"}
    action.wait_until_finished()
    server = client.servers.get_by_id(server.id)
    assert [p.ip for p in server.private_net] == ["127.128.0.7"]
    assert listening("127.128.0.7", emulator.ssh_port)
    with pytest.raises(hcloud.APIException) as info:
        server.attach_to_network(network)
    assert info.value.code == "server_already_attached"

    server.detach_from_network(network).wait_until_finished()
    assert client.servers.get_by_id(server.id).private_net == []
    wait_until(lambda: not listening("127.128.0.7", emulator.ssh_port), what="IP released")


def test_assignment_errors(client: hcloud.Client) -> None:
    network = _net(client, "net")
    taken = _server(client, "owner", networks=[network])
    other = _server(client, "other")
    with pytest.raises(hcloud.APIException) as info:
        other.attach_to_network(network, ip=taken.private_net[0].ip)
    assert info.value.code == "ip_not_available"
    far = _server(client, "far", "cpx22", location=Location(name="ash"))
    with pytest.raises(hcloud.APIException) as info:
        far.attach_to_network(network)
    assert info.value.code == "no_subnet_available"


def test_delete_detaches_servers(emulator: Emulator, client: hcloud.Client) -> None:
    network = _net(client, "net")
    server = _server(client, "s", networks=[network])
    ip = server.private_net[0].ip
    wait_until(lambda: listening(ip, emulator.ssh_port), what="private SSH")
    network.delete()
    assert client.servers.get_by_id(server.id).private_net == []
    wait_until(lambda: not listening(ip, emulator.ssh_port), what="private address gone")
