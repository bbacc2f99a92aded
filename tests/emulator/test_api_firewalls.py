"""Firewalls: rules, application to servers and label selectors, and their actions."""

from __future__ import annotations

import hcloud
import pytest
from conftest import Raw
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.servers import BoundServer

SSH_IN = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0", "::/0"])


def _server(client: hcloud.Client, name: str, labels: dict[str, str]) -> BoundServer:
    return client.servers.create(
        name=name, server_type=ServerType(name="cx23"), image=Image(name="debian-12"), labels=labels
    ).server


def _firewall_ids(client: hcloud.Client, server: BoundServer) -> list[int]:
    return [f.firewall.id for f in client.servers.get_by_id(server.id).public_net.firewalls]


def test_create_with_rules_and_targets(client: hcloud.Client) -> None:
    web = _server(client, "web", {"role": "web"})
    db = _server(client, "db", {"role": "db"})
    response = client.firewalls.create(
        name="fw",
        labels={"scherbelberg/cluster": "x"},
        rules=[
            SSH_IN,
            FirewallRule(
                direction="out", protocol="icmp", destination_ips=["10.0.0.0/8"], description="ping"
            ),
        ],
        resources=[
            FirewallResource(type="server", server=web),
            FirewallResource(
                type="label_selector", label_selector=FirewallResourceLabelSelector("role=db")
            ),
        ],
    )
    commands = [a.command for a in response.actions]
    assert commands == ["set_firewall_rules", "apply_firewall", "apply_firewall"]
    for action in response.actions:
        action.wait_until_finished()
    firewall = client.firewalls.get_by_id(response.firewall.id)
    assert [r.port for r in firewall.rules] == ["22", None]
    assert firewall.rules[0].source_ips == ["0.0.0.0/0", "::/0"]
    assert firewall.rules[1].destination_ips == ["10.0.0.0/8"]
    assert firewall.rules[1].description == "ping"
    selector = next(t for t in firewall.applied_to if t.type == "label_selector")
    assert [r.server.id for r in selector.applied_to_resources] == [db.id]
    assert _firewall_ids(client, web) == [firewall.id]
    assert _firewall_ids(client, db) == [firewall.id]
    assert [f.id for f in client.firewalls.get_all(label_selector="scherbelberg/cluster=x")] == [
        firewall.id
    ]


def test_set_rules_apply_remove_delete(client: hcloud.Client) -> None:
    server = _server(client, "s", {})
    firewall = client.firewalls.create(name="fw").firewall
    actions = firewall.set_rules([SSH_IN])
    assert [a.command for a in actions] == ["set_firewall_rules"]
    assert len(client.firewalls.get_by_id(firewall.id).rules) == 1

    actions = firewall.apply_to_resources([FirewallResource(type="server", server=server)])
    assert [a.command for a in actions] == ["apply_firewall"]
    for action in actions:
        action.wait_until_finished()
    assert _firewall_ids(client, server) == [firewall.id]
    with pytest.raises(hcloud.APIException) as info:
        firewall.apply_to_resources([FirewallResource(type="server", server=server)])
    assert info.value.code == "firewall_already_applied"
    with pytest.raises(hcloud.APIException) as info:
        firewall.delete()
    assert info.value.code == "resource_in_use"

    actions = firewall.remove_from_resources([FirewallResource(type="server", server=server)])
    assert [a.command for a in actions] == ["remove_firewall"]
    assert _firewall_ids(client, server) == []
    assert firewall.set_rules([])[0].command == "set_firewall_rules"
    assert client.firewalls.get_by_id(firewall.id).rules == []
    firewall.update(name="renamed", labels={"a": "b"})
    assert client.firewalls.get_by_name("renamed").labels == {"a": "b"}
    assert firewall.delete() is True
    assert client.firewalls.get_all() == []
    assert {a.command for a in client.firewalls.actions.get_all()} >= {"apply_firewall"}


def test_rule_validation(raw: Raw) -> None:
    bad_rules = [
        {"direction": "sideways", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "tcp", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "icmp", "port": "22", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "tcp", "port": "70000", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["10.0.0.1/8"]},
        {"direction": "in", "protocol": "tcp", "port": "22"},
    ]
    for rule in bad_rules:
        answer = raw("POST", "/firewalls", json={"name": "fw", "rules": [rule]})
        assert answer.status_code == 422, rule
        assert answer.json()["error"]["code"] == "invalid_input"
    answer = raw(
        "POST",
        "/firewalls",
        json={"name": "fw", "apply_to": [{"type": "server", "server": {"id": 1}}]},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "firewall_resource_not_found"
    answer = raw("POST", "/firewalls", json={"name": "fw"})
    assert answer.status_code == 201
    assert (
        raw("POST", "/firewalls", json={"name": "fw"}).json()["error"]["code"] == "uniqueness_error"
    )
