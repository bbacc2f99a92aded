"""Actions: batched polling, per-resource lists, progress and timestamps."""

from __future__ import annotations

from datetime import datetime

import hcloud
from conftest import EmulatorFactory, Raw, make_client, wait_until
from hcloud.images import Image
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator import Emulator


def _create(raw: Raw, name: str) -> dict[str, object]:
    answer = raw(
        "POST", "/servers", json={"name": name, "server_type": "cx23", "image": "debian-12"}
    )
    assert answer.status_code == 201
    return answer.json()  # type: ignore[no-any-return]


def test_batched_get_and_unknown_ids(raw: Raw) -> None:
    first = _create(raw, "a")
    second = _create(raw, "b")
    ids = [first["action"]["id"], second["action"]["id"], second["next_actions"][0]["id"]]  # type: ignore[index]
    answer = raw(
        "GET", "/actions", params=[("id", i) for i in [*ids, 99999]] + [("sort", "id:desc")]
    )
    assert answer.status_code == 200
    got = answer.json()["actions"]
    assert [a["id"] for a in got] == sorted(ids, reverse=True)
    single = raw("GET", f"/actions/{ids[0]}").json()["action"]
    assert single["command"] == "create_server"
    assert raw("GET", "/actions/99999").status_code == 404


def test_listing_all_actions_is_refused(raw: Raw) -> None:
    answer = raw("GET", "/actions")
    assert answer.status_code == 410
    error = answer.json()["error"]
    assert error["code"] == "deprecated_api_endpoint"
    assert error["details"]["announcement"].startswith("https://")


def test_resource_action_lists(emulator: Emulator, client: hcloud.Client) -> None:
    responses = [
        client.servers.create(
            name=f"n{i}", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
        )
        for i in range(2)
    ]
    for response in responses:
        response.action.wait_until_finished()
        for action in response.next_actions:
            action.wait_until_finished()
    server = client.servers.get_by_id(responses[0].server.id)
    server.reboot().wait_until_finished()

    own = server.get_actions()
    assert sorted(a.command for a in own) == ["create_server", "reboot_server", "start_server"]
    family = client.servers.actions.get_all()
    assert len(family) == 5
    assert {a.status for a in family} == {"success"}
    assert client.servers.actions.get_by_id(own[0].id).id == own[0].id
    sorted_desc = client.servers.actions.get_all(sort=["id:desc"])
    assert [a.id for a in sorted_desc] == sorted((a.id for a in family), reverse=True)


def test_resource_action_filters(raw: Raw) -> None:
    created = _create(raw, "f")
    server_id = created["server"]["id"]  # type: ignore[index]
    create_id = created["action"]["id"]  # type: ignore[index]
    wait_until(lambda: raw("GET", f"/actions/{create_id}").json()["action"]["status"] == "success")
    answer = raw(
        "GET", f"/servers/{server_id}/actions", params={"status": "success", "sort": "command"}
    )
    commands = [a["command"] for a in answer.json()["actions"]]
    assert commands == sorted(commands) and "create_server" in commands
    assert raw("GET", f"/servers/{server_id}/actions/{create_id}").status_code == 200
    assert (
        raw("GET", f"/servers/{server_id}/actions", params={"status": "bogus"}).status_code == 422
    )
    assert raw("GET", "/networks/actions").json()["actions"] == []
    assert raw("GET", f"/networks/actions/{create_id}").status_code == 404
    assert raw("GET", "/servers/424242/actions").status_code == 404


def test_action_shape_over_time(emulator_factory: EmulatorFactory) -> None:
    # Realistic timing, scaled down: the action is observably running with progress.
    emulator = emulator_factory(profile="realistic", time_scale=0.25)
    client = make_client(emulator)
    response = client.servers.create(
        name="slow", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    action = response.action
    assert action.status == "running" and action.progress == 0
    assert action.finished is None and action.error is None
    seen_running = wait_until(
        lambda: (
            (a := client.actions.get_by_id(action.id)).status == "running"
            and 0 < a.progress < 100
            and a
        ),
        what="progress between 0 and 100",
    )
    assert seen_running.finished is None
    action.wait_until_finished()
    done = client.actions.get_by_id(action.id)
    assert done.status == "success" and done.progress == 100
    assert isinstance(done.started, datetime) and isinstance(done.finished, datetime)
    assert done.finished >= done.started
