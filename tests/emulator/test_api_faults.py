"""Fault injection: API errors, failed boots, SSH refusals, crashes."""

from __future__ import annotations

import socket
import time

import hcloud
import pytest
from conftest import EmulatorFactory, Raw, make_client, server_state, wait_until
from hcloud.images import Image
from hcloud.server_types import ServerType
from test_api_power import listening

from scherbelberg_dask.emulator import EMULATOR_IMAGE_NAME, Emulator, Faults


def _dropped(ip: str, port: int, patience: float = 1.0) -> bool:
    """True if the SSH server closes a fresh connection within ``patience`` seconds.

    A healthy server sends its banner and then waits for the client's version.
    """
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.settimeout(patience)
        try:
            while sock.recv(256):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True


def _running(
    emulator: Emulator, client: hcloud.Client, name: str = "s"
) -> hcloud.servers.BoundServer:
    response = client.servers.create(
        name=name, server_type=ServerType(name="cx23"), image=Image(name=EMULATOR_IMAGE_NAME)
    )
    for action in [response.action, *response.next_actions]:
        action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    wait_until(lambda: listening(server.public_net.ipv4.ip, emulator.ssh_port), what="SSH up")
    return server


def test_api_errors_per_endpoint(emulator: Emulator, raw: Raw) -> None:
    emulator.faults.set_api_error_kinds(["server_error"])
    emulator.faults.set_api_error_rate(1.0, "GET /v1/locations")
    answer = raw("GET", "/locations")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "server_error"
    assert "RateLimit-Limit" in answer.headers
    assert raw("GET", "/server_types").status_code == 200
    emulator.faults.set_api_error_kinds(["unavailable"])
    assert raw("GET", "/locations").status_code == 503
    emulator.faults.set_api_error_kinds(["conflict"])
    assert raw("GET", "/locations").json()["error"]["code"] == "conflict"
    emulator.faults.set_api_error_rate(0.0, "GET /v1/locations")
    assert raw("GET", "/locations").status_code == 200
    assert emulator.faults.to_dict()["injected_api_errors"] == 3


def test_global_error_rate_spares_introspection(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(api_error_rate=1.0, seed=1)
    raw = Raw(emulator, emulator.token)
    statuses = {raw("GET", "/locations").status_code for _ in range(20)}
    assert statuses <= {500, 503, 429, 409} and len(statuses) > 1
    assert raw("GET", "/_emulator/state").status_code == 200
    # The settings read back (counters included) are accepted as they are.
    settings = {**raw("GET", "/_emulator/faults").json(), "api_error_rate": 0}
    assert raw("PUT", "/_emulator/faults", json=settings).status_code == 200
    assert raw("GET", "/locations").status_code == 200


def test_seeded_decisions_repeat() -> None:
    def decisions(seed: int) -> list[str | None]:
        faults = Faults(api_error_rate=0.5, boot_failure_rate=0.5, seed=seed)
        picks = [faults.pick_api_error("GET /v1/servers") for _ in range(30)]
        boots = [faults.next_boot_fails() for _ in range(30)]
        return [p.code if p else None for p in picks] + [str(b) for b in boots]

    assert decisions(7) == decisions(7)
    assert decisions(7) != decisions(8)
    with pytest.raises(ValueError):
        Faults(api_error_rate=1.5)
    with pytest.raises(ValueError):
        Faults().set_api_error_kinds(["nonsense"])


def test_failed_boot(emulator: Emulator, client: hcloud.Client) -> None:
    emulator.faults.fail_next_boots(1)
    response = client.servers.create(
        name="broken", server_type=ServerType(name="cx23"), image=Image(name=EMULATOR_IMAGE_NAME)
    )
    with pytest.raises(hcloud.actions.ActionFailedException):
        response.action.wait_until_finished()
    failed = client.actions.get_by_id(response.action.id)
    assert failed.status == "error" and failed.error["code"] == "action_failed"
    assert client.actions.get_by_id(response.next_actions[0].id).status == "error"
    server = client.servers.get_by_id(response.server.id)
    assert server.status == "off"
    with pytest.raises(hcloud.actions.ActionFailedException):
        server.power_on().wait_until_finished()
    state = server_state(emulator, server.id)
    assert state is not None and state["ssh_up"] is False
    assert not listening(server.public_net.ipv4.ip, emulator.ssh_port)
    # Only the next boot failed, and it was counted.
    _running(emulator, client, "healthy")
    assert emulator.faults.to_dict()["failed_boots"] == 1


def test_boot_failure_rate(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(boot_failure_rate=1.0)
    client = make_client(emulator)
    response = client.servers.create(
        name="doomed", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    with pytest.raises(hcloud.actions.ActionFailedException):
        response.action.wait_until_finished()


def test_refuse_ssh_window(emulator: Emulator, client: hcloud.Client) -> None:
    server = _running(emulator, client)
    ip = server.public_net.ipv4.ip
    assert not _dropped(ip, emulator.ssh_port)
    emulator.faults.refuse_ssh(server.id, 2.0)
    assert _dropped(ip, emulator.ssh_port)
    wait_until(lambda: not _dropped(ip, emulator.ssh_port, 0.3), what="SSH again")


def test_crash_now_and_later(emulator: Emulator, client: hcloud.Client) -> None:
    server = _running(emulator, client)
    emulator.faults.crash_server(server.id)
    wait_until(lambda: client.servers.get_by_id(server.id).status == "off", what="crashed")
    assert not listening(server.public_net.ipv4.ip, emulator.ssh_port)

    other = _running(emulator, client, "later")
    scheduled = time.monotonic()
    emulator.faults.crash_server(other.id, after=1.0)
    assert client.servers.get_by_id(other.id).status == "running"
    wait_until(lambda: client.servers.get_by_id(other.id).status == "off", what="late crash")
    assert time.monotonic() - scheduled >= 1.0
    with pytest.raises(KeyError):
        emulator.faults.crash_server(424242)


def test_faults_need_a_running_emulator() -> None:
    with pytest.raises(RuntimeError):
        Emulator().faults.crash_server(1)
