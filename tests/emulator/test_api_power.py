"""Server power actions and what they do to the emulated machine."""

from __future__ import annotations

import socket

import hcloud
import pytest
from conftest import EmulatorFactory, make_client, server_state, wait_until
from hcloud.images import Image
from hcloud.server_types import ServerType

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator


def listening(ip: str, port: int) -> bool:
    """True if something accepts TCP connections on ``ip:port``."""
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


def _running_server(emulator: Emulator, client: hcloud.Client) -> hcloud.servers.BoundServer:
    response = client.servers.create(
        name="power", server_type=ServerType(name="cx23"), image=Image(name=EMULATOR_IMAGE_NAME)
    )
    response.action.wait_until_finished()
    for action in response.next_actions:
        action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    wait_until(lambda: listening(server.public_net.ipv4.ip, emulator.ssh_port), what="SSH up")
    return server


def _status(client: hcloud.Client, server_id: int) -> str:
    return str(client.servers.get_by_id(server_id).status)


def test_poweroff_and_poweron(emulator: Emulator, client: hcloud.Client) -> None:
    server = _running_server(emulator, client)
    ip = server.public_net.ipv4.ip
    action = server.power_off()
    assert action.command == "stop_server"
    action.wait_until_finished()
    assert _status(client, server.id) == "off"
    assert not listening(ip, emulator.ssh_port)
    # Idempotent: powering off an off server succeeds.
    server.power_off().wait_until_finished()

    action = server.power_on()
    assert action.command == "start_server"
    action.wait_until_finished()
    assert _status(client, server.id) == "running"
    wait_until(lambda: listening(ip, emulator.ssh_port), what="SSH back")
    server.power_on().wait_until_finished()
    assert _status(client, server.id) == "running"


def test_shutdown_goes_off_when_the_guest_is_down(
    emulator: Emulator, client: hcloud.Client
) -> None:
    server = _running_server(emulator, client)
    action = server.shutdown()
    assert action.command == "shutdown_server"
    action.wait_until_finished()
    wait_until(lambda: _status(client, server.id) == "off", what="status off")
    assert not listening(server.public_net.ipv4.ip, emulator.ssh_port)


@pytest.mark.parametrize("verb", ["reboot", "reset"])
def test_reboot_and_reset_keep_running(
    emulator: Emulator, client: hcloud.Client, verb: str
) -> None:
    server = _running_server(emulator, client)
    action = getattr(server, verb)()
    assert action.command == f"{verb}_server"
    action.wait_until_finished()
    assert _status(client, server.id) == "running"
    wait_until(lambda: listening(server.public_net.ipv4.ip, emulator.ssh_port), what="SSH back")


def test_reset_powers_on_an_off_server(emulator: Emulator, client: hcloud.Client) -> None:
    server = _running_server(emulator, client)
    server.power_off().wait_until_finished()
    server.reset().wait_until_finished()
    assert _status(client, server.id) == "running"


def test_delete_ends_the_machine(emulator: Emulator, client: hcloud.Client) -> None:
    server = _running_server(emulator, client)
    server.delete().wait_until_finished()
    assert server_state(emulator, server.id) is None
    assert not listening(server.public_net.ipv4.ip, emulator.ssh_port)


def test_concurrent_actions_are_locked(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(profile="realistic", time_scale=0.2)
    client = make_client(emulator)
    response = client.servers.create(
        name="busy", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    server = response.server
    for verb in ("reboot", "power_off", "power_on", "shutdown"):
        with pytest.raises(hcloud.APIException) as info:
            getattr(server, verb)()
        assert info.value.code == "locked", verb
    # Deleting is always possible; it cancels the running creation.
    delete = server.delete()
    delete.wait_until_finished()
    create = client.actions.get_by_id(response.action.id)
    assert create.status == "error"
    assert create.error["code"] == "action_failed"


def test_server_status_passes_through_the_lifecycle(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(profile="realistic", time_scale=0.1)
    client = make_client(emulator)
    server = client.servers.create(
        name="life", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    ).server
    seen: list[str] = []

    def reaches(target: str) -> bool:
        status = _status(client, server.id)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == target

    wait_until(lambda: reaches("running"), what="running")
    assert seen[0] == "initializing"
    assert "starting" in seen
    server.shutdown()
    seen.clear()
    wait_until(lambda: reaches("off"), what="off")
    assert seen[0] == "running"
    assert "stopping" in seen
