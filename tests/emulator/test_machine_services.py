"""Services on emulated machines, driven through ``servicectl`` over SSH."""

from __future__ import annotations

import re
from pathlib import Path

from machine_helpers import Key, MachineFactory, TestMachine, env_of, pid_alive, wait_for

from scherbelberg_dask.emulator.machine import MachineEvent

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


class Ctl:
    """Runs servicectl on a node as one user."""

    def __init__(self, node: TestMachine, key: Key, user: str = "root") -> None:
        self.node, self.key, self.user = node, key, user

    async def __call__(self, args: str) -> tuple[int, str, str]:
        result = await self.node.run(self.key, f"servicectl {args}", user=self.user)
        return result.exit_status, result.stdout, result.stderr

    async def field(self, name: str, key: str) -> str:
        _, out, _ = await self(f"status {name}")
        for line in out.splitlines():
            if line.strip().startswith(f"{key}:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no {key!r} in status of {name}: {out!r}")

    async def state(self, name: str) -> str:
        _, out, _ = await self(f"is-active {name}")
        return out.strip()


async def test_restart_on_failure_with_timestamped_logs(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    ctl = Ctl(node, key)
    rc, _, err = await ctl("enable --now crashy -- sh -c 'echo attempt; echo oops >&2; exit 3'")
    assert rc == 0, err

    async def restarted_twice() -> bool:
        return int(await ctl.field("crashy", "restarts")) >= 2

    await wait_for(restarted_twice, timeout=15, what="two restarts")
    assert await ctl.field("crashy", "last exit") == "status 3"
    assert await ctl.field("crashy", "restart policy") == "on-failure"

    rc, out, _ = await ctl("logs crashy")
    assert rc == 0
    lines = out.splitlines()
    assert all(STAMP.match(line) for line in lines), lines
    assert sum(line.endswith(" attempt") for line in lines) >= 2
    assert sum(line.endswith(" oops") for line in lines) >= 2
    assert any("exited with status 3; restarting" in line for line in lines)
    log_file = node.root / "var" / "log" / "services" / "crashy.log"
    assert log_file.read_text().splitlines()[0] == lines[0]

    rc, out, _ = await ctl("logs --lines 2 crashy")
    assert rc == 0 and len(out.splitlines()) == 2

    rc, _, _ = await ctl("stop crashy")
    assert rc == 0
    assert await ctl.state("crashy") == "inactive"


async def test_enabled_service_survives_reboot(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    ctl = Ctl(node, key)
    rc, out, err = await ctl("enable --now --restart always web -- sleep 300")
    assert rc == 0, err
    assert out.startswith("web: active")
    rc, out, _ = await ctl("status web")
    assert rc == 0 and out.startswith("web: active")
    first_pid = int(await ctl.field("web", "pid"))
    assert env_of(first_pid)["SCHERBELBERG_EMULATOR_SERVICE"] == "web"
    definition = node.root / "etc" / "services" / "web.json"
    assert definition.is_file()

    await node.machine.halt()
    assert not pid_alive(first_pid)
    assert node.tagged_pids() == []
    await node.machine.boot(node.public_ip, [])

    async def active_again() -> bool:
        return await ctl.state("web") == "active"

    await wait_for(active_again, what="service active after boot")
    assert int(await ctl.field("web", "pid")) != first_pid
    rc, out, _ = await ctl("list")
    assert rc == 0
    assert re.search(r"^web\s+active\s+yes\s+\d+\s+0$", out, re.MULTILINE), out


async def test_status_semantics_and_verbs(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    ctl = Ctl(node, key)
    assert (await ctl("status nothing"))[0] == 4
    rc, out, _ = await ctl("is-active nothing")
    assert (rc, out) == (3, "inactive\n")

    assert (await ctl("enable --restart no once -- sh -c 'exit 0'"))[0] == 0
    assert await ctl.state("once") == "inactive"  # enabled, not started
    assert (await ctl("start once"))[0] == 0

    async def finished() -> bool:
        return await ctl.field("once", "last exit") == "status 0"

    await wait_for(finished, what="one-shot service finished")
    rc, out, _ = await ctl("status once")
    assert rc == 3 and out.startswith("once: inactive")

    assert (await ctl("enable --restart no broken -- sh -c 'exit 9'"))[0] == 0
    assert (await ctl("start broken"))[0] == 0

    async def failed() -> bool:
        return await ctl.state("broken") == "failed"

    await wait_for(failed, what="service failed")
    rc, out, _ = await ctl("is-active broken")
    assert (rc, out) == (3, "failed\n")

    assert (await ctl("enable --now svc -- sleep 300"))[0] == 0
    pid = int(await ctl.field("svc", "pid"))
    rc, out, _ = await ctl("restart svc")
    assert rc == 0 and out.startswith("svc: active")
    assert int(await ctl.field("svc", "pid")) != pid
    assert not pid_alive(pid)

    rc, out, _ = await ctl("disable --now svc")
    assert rc == 0
    assert await ctl.state("svc") == "inactive"
    assert await ctl.field("svc", "enabled") == "no"
    await node.machine.halt()
    await node.machine.boot(node.public_ip, [])
    assert await ctl.state("svc") == "inactive"  # disabled: not started at boot

    rc, _, _ = await ctl("remove svc")
    assert rc == 0
    assert (await ctl("status svc"))[0] == 4
    assert not (node.root / "etc" / "services" / "svc.json").exists()

    rc, _, err = await ctl("enable ghost")
    assert rc != 0 and "after '--'" in err
    rc, _, err = await ctl("enable --restart sometimes x -- true")
    assert rc != 0 and "invalid choice" in err


async def test_stop_ends_forked_daemons(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    ctl = Ctl(node, key)
    rc, _, err = await ctl(
        "enable --now forker -- sh -c "
        "'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid; exec sleep 600'"
    )
    assert rc == 0, err
    pid_file = node.root / "root" / "daemon.pid"
    await wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid")
    daemon = int(pid_file.read_text())
    assert pid_alive(daemon)
    assert (await ctl("stop forker"))[0] == 0
    assert not pid_alive(daemon)
    assert node.tagged_pids() == []


async def test_user_environment_and_permissions(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key("root", "alice")
    root = Ctl(node, key)
    alice = Ctl(node, key, "alice")
    rc, _, err = await root(
        "enable --now --user alice --env GREETING=hi --env EMPTY= whoami -- "
        "sh -c 'echo \"$USER $HOME $PWD $GREETING [$EMPTY] $SCHERBELBERG_NODE_NAME\"; sleep 300'"
    )
    assert rc == 0, err
    home = node.root / "home" / "alice"

    async def logged() -> bool:
        return "alice" in (await root("logs whoami"))[1]

    await wait_for(logged, what="service output")
    line = [ln for ln in (await root("logs whoami"))[1].splitlines() if "[supervisor]" not in ln]
    assert line[0].split(" ", 1)[1] == f"alice {home} {home} hi [] {node.spec.name}"

    rc, _, err = await alice("enable --now --user root evil -- true")
    assert rc == 1 and "permission denied" in err
    rc, _, err = await alice("enable --now mine -- sleep 300")
    assert rc == 0, err
    assert await alice.field("mine", "user") == "alice"
    assert (await alice("stop whoami"))[0] == 0  # her own (root made it run as alice)
    rc, _, err = await alice("poweroff")
    assert rc == 1 and "permission denied" in err
    rc, _, _ = await root("stop mine")
    assert rc == 0


async def test_poweroff_from_inside(machines: MachineFactory) -> None:
    node, key = await machines.create_with_key()
    async with await node.connect(key) as conn:
        process = await conn.create_process("servicectl poweroff")
        assert await process.stdout.readline() == "powering off\n"
    await wait_for(lambda: not node.machine.running, what="machine off")
    await wait_for(lambda: bool(machines.events), what="shutdown event")
    assert machines.events == [(node.spec.server_id, MachineEvent.SHUTDOWN_COMPLETE)]


async def test_long_root_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    factory = MachineFactory(deep)
    try:
        node, key = await factory.create_with_key()
        assert len(str(node.root / "run" / "control.sock")) > 108
        ctl = Ctl(node, key)
        rc, _out, err = await ctl("enable --now long -- sleep 300")
        assert rc == 0, err
        assert await ctl.state("long") == "active"
    finally:
        await factory.close()
