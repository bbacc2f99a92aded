"""SSH keys, placement groups and images (system images and snapshots)."""

from __future__ import annotations

import base64
import hashlib

import hcloud
import pytest
from conftest import Raw, server_state, wait_until
from hcloud.images import Image
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator


def _md5(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def test_ssh_keys(client: hcloud.Client, public_key: str, raw: Raw) -> None:
    key = client.ssh_keys.create(name="k1", public_key=public_key, labels={"c": "x"})
    assert key.fingerprint == _md5(public_key)
    assert client.ssh_keys.get_by_fingerprint(key.fingerprint).id == key.id
    assert client.ssh_keys.get_by_name("k1").public_key == public_key
    assert [k.id for k in client.ssh_keys.get_all(label_selector="c")] == [key.id]
    with pytest.raises(hcloud.APIException) as info:
        client.ssh_keys.create(name="k2", public_key=public_key)
    assert info.value.code == "uniqueness_error"
    assert info.value.details["fields"][0]["name"] == "public_key"
    answer = raw("POST", "/ssh_keys", json={"name": "k1", "public_key": "ssh-ed25519 AAAA"})
    assert answer.json()["error"]["code"] == "invalid_input"
    updated = key.update(name="renamed", labels={})
    assert updated.name == "renamed"
    assert key.delete() is True
    assert client.ssh_keys.get_all() == []


def test_placement_groups(client: hcloud.Client, raw: Raw) -> None:
    group = client.placement_groups.create(name="pg", type="spread", labels={"a": "b"})
    assert group.action is None
    pg = group.placement_group
    assert client.placement_groups.get_by_name("pg").id == pg.id
    assert [g.id for g in client.placement_groups.get_all(label_selector="a=b")] == [pg.id]
    listed = raw("GET", "/placement_groups", params={"type": "spread"}).json()
    assert [g["id"] for g in listed["placement_groups"]] == [pg.id]
    server = client.servers.create(
        name="member",
        server_type=ServerType(name="cx23"),
        image=Image(name="debian-12"),
        start_after_create=False,
    )
    server.action.wait_until_finished()
    bound = client.servers.get_by_id(server.server.id)
    bound.add_to_placement_group(pg).wait_until_finished()
    assert client.placement_groups.get_by_id(pg.id).servers == [bound.id]
    assert raw("DELETE", f"/placement_groups/{pg.id}").json()["error"]["code"] == "resource_in_use"
    bound.remove_from_placement_group().wait_until_finished()
    pg.update(name="renamed")
    assert pg.delete() is True
    answer = raw("POST", "/placement_groups", json={"name": "x", "type": "cluster"})
    assert answer.status_code == 422


def test_add_to_group_needs_a_stopped_server(client: hcloud.Client) -> None:
    pg = client.placement_groups.create(name="pg", type="spread").placement_group
    response = client.servers.create(
        name="on", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    for action in [response.action, *response.next_actions]:
        action.wait_until_finished()
    with pytest.raises(hcloud.APIException) as info:
        client.servers.get_by_id(response.server.id).add_to_placement_group(pg)
    assert info.value.code == "server_not_stopped"


def test_system_images(client: hcloud.Client, raw: Raw) -> None:
    for architecture in ("x86", "arm"):
        for name in ("ubuntu-24.04", "debian-12", "debian-13", EMULATOR_IMAGE_NAME):
            image = client.images.get_by_name_and_architecture(name, architecture)
            assert image is not None, (name, architecture)
            assert image.type == "system" and image.architecture == architecture
    listed = {i.name for i in client.images.get_all(type=["system"])}
    assert "ubuntu-20.04" not in listed
    with_old = {i.name for i in client.images.get_all(type=["system"], include_deprecated=True)}
    assert "ubuntu-20.04" in with_old
    system = client.images.get_by_name_and_architecture("debian-12", "x86")
    assert raw("DELETE", f"/images/{system.id}").status_code == 403
    answer = raw("GET", "/images", params={"name": "debian-12", "sort": "id:desc"}).json()
    ids = [i["id"] for i in answer["images"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2


def test_snapshot_of_an_emulator_server_executes(
    emulator: Emulator, client: hcloud.Client, raw: Raw
) -> None:
    response = client.servers.create(
        name="origin", server_type=ServerType(name="cx23"), image=Image(name=EMULATOR_IMAGE_NAME)
    )
    for action in [response.action, *response.next_actions]:
        action.wait_until_finished()
    origin = client.servers.get_by_id(response.server.id)
    snapshot = origin.create_image(description="env-abc", labels={"env": "abc"})
    assert snapshot.action.command == "create_image"
    assert snapshot.image.status == "creating" and snapshot.image.name is None
    snapshot.action.wait_until_finished()
    image = client.images.get_by_id(snapshot.image.id)
    assert image.status == "available"
    assert image.type == "snapshot"
    assert image.created_from.id == origin.id
    assert image.architecture == "x86"
    assert [i.id for i in client.images.get_all(label_selector="env=abc")] == [image.id]
    assert {a.command for a in client.images.actions.get_all()} == {"create_image"}
    # Its labels are replaced whole by PUT, validated as everywhere.
    marked = {"env": "abc", "scherbelberg/unusable": "ssh-failed"}
    assert client.images.update(image, labels=marked).labels == marked
    assert client.images.get_by_id(image.id).labels == marked
    bad = raw("PUT", f"/images/{image.id}", json={"labels": {"env": "no spaces"}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    assert client.images.get_by_id(image.id).labels == marked

    clone = client.servers.create(
        name="clone", server_type=ServerType(name="cx33"), image=Image(id=image.id)
    )
    for action in [clone.action, *clone.next_actions]:
        action.wait_until_finished()
    state = wait_until(lambda: (s := server_state(emulator, clone.server.id)) and s["ssh_up"] and s)
    assert state["executes"] is True

    image.update(description="renamed")
    image.change_protection(delete=True).wait_until_finished()
    with pytest.raises(hcloud.APIException) as info:
        image.delete()
    assert info.value.code == "protected"
    image.change_protection(delete=False).wait_until_finished()
    assert image.delete() is True
    assert client.images.get_all(type=["snapshot"]) == []


def test_snapshot_of_another_image_does_not_execute(
    emulator: Emulator, client: hcloud.Client
) -> None:
    response = client.servers.create(
        name="plain", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04")
    )
    for action in [response.action, *response.next_actions]:
        action.wait_until_finished()
    snapshot = client.servers.get_by_id(response.server.id).create_image()
    snapshot.action.wait_until_finished()
    clone = client.servers.create(
        name="clone", server_type=ServerType(name="cx23"), image=Image(id=snapshot.image.id)
    )
    state = server_state(emulator, clone.server.id)
    assert state is not None and state["executes"] is False
