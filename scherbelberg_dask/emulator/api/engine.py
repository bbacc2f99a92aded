"""The emulated cloud's moving parts: actions over time, server power states, machines.

Handlers validate a request, create the action(s) and hand them here; the engine runs
them as tasks on the event loop, moves server status along
(``initializing`` -> ``off`` -> ``starting`` -> ``running``, ``stopping``, ``deleting``)
and drives each server's emulated machine through :class:`MachineInterface`:
``boot`` once the server is running (after the profile's ``ssh_ready`` delay),
``halt`` on power off, reset and crash, ``shutdown`` on an ACPI shutdown, and
``destroy`` on delete and when the emulator stops.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ..cloudinit import parse_user_data
from ..machine.interface import LoginUser, MachineEvent, MachineInterface, MachineSpec
from ..machine.machine import copy_tree, disk_usage_gb
from ..machine.paths import MachinePaths
from ..settings import TimingProfile
from ..store import Action, Image, PrivateNet, Server, Store
from .addresses import AddressBook

logger = logging.getLogger(__name__)

__all__ = ["ActionFailed", "Engine", "MachineFactory"]

T = TypeVar("T")

#: Builds a machine for a spec; the callback receives :class:`MachineEvent` names.
MachineFactory = Callable[[MachineSpec, Callable[[str], None]], MachineInterface]


class ActionFailed(Exception):
    """Raised inside an action's task to end it with ``status: error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Engine:
    """Runs actions and server lifecycles of one emulator.

    Parameters
    ----------
    store
        The project's resources.
    addresses
        Address book (IPs go back to it when servers and attachments go away).
    profile
        Scaled timing profile.
    time_scale
        Scale for fault durations given in seconds (SSH refusal, crash delay).
    machine_factory
        Creates the machine behind each server.
    root
        Directory under which machines and snapshot files live.
    emulator_id
        Identifies this emulator in machine tags.
    ssh_port
        SSH port of every machine.
    """

    def __init__(
        self,
        *,
        store: Store,
        addresses: AddressBook,
        profile: TimingProfile,
        time_scale: float,
        machine_factory: MachineFactory,
        root: Path,
        emulator_id: str,
        ssh_port: int,
    ) -> None:
        self.store = store
        self.addresses = addresses
        self.profile = profile
        self.time_scale = time_scale
        self.machine_factory = machine_factory
        self.root = root
        self.emulator_id = emulator_id
        self.ssh_port = ssh_port
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- plumbing -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a tracked task (cancelled when the emulator stops)."""
        self._loop = asyncio.get_running_loop()
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``; with 0, still yield one loop turn (``instant`` profile)."""
        await asyncio.sleep(max(seconds, 0.0))

    def run_action(
        self,
        actions: list[Action],
        work: Callable[[], Awaitable[None]],
        *,
        server: Server | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> asyncio.Task[Any]:
        """Carry out ``work`` for ``actions`` in a task.

        ``work`` marks actions successful itself (some succeed before the work ends);
        any action still running when it returns succeeds then.  ``ActionFailed``,
        cancellation or a crash fail the actions still running.  With ``server``, the
        task is that server's exclusive task (see :meth:`locked_by`).
        """

        async def runner() -> None:
            try:
                await work()
            except ActionFailed as exc:
                self._fail(actions, exc.code, exc.message, on_failure)
            except asyncio.CancelledError as exc:
                reason = str(exc.args[0]) if exc.args else "the action was cancelled"
                self._fail(actions, "action_failed", reason, on_failure)
                raise
            except Exception:
                logger.exception("action %s failed inside the emulator", actions[0].command)
                self._fail(actions, "action_failed", "internal emulator error", on_failure)
            else:
                for action in actions:
                    action.succeed()

        def cancelled_early(task: asyncio.Task[Any]) -> None:
            # A task cancelled before its first step never enters ``runner``'s try.
            if task.cancelled() and any(action.running for action in actions):
                self._fail(actions, "action_failed", "the action was cancelled", on_failure)

        task = self.spawn(runner())
        task.add_done_callback(cancelled_early)
        if server is not None:
            server.busy = actions[0]
            server.task = task
        return task

    @staticmethod
    def _fail(
        actions: list[Action], code: str, message: str, on_failure: Callable[[], None] | None
    ) -> None:
        for action in actions:
            action.fail(code, message)
        if on_failure is not None:
            on_failure()

    def locked_by(self, server: Server, *, force: bool = False) -> str | None:
        """Why a new state-changing action on ``server`` must wait, or ``None``.

        A guest that is shutting down locks the server too, except for ``force``
        (hard power off and delete cut it short).
        """
        if server.status == "deleting":
            return f"server {server.id} is being deleted"
        guest = server.guest_task
        if not force and guest is not None and not guest.done():
            return f"server {server.id} is shutting down, retry when it is off"
        if server.task is not None and not server.task.done():
            busy = server.busy
            if busy is not None:
                return (
                    f"server {server.id} is locked by action {busy.id} ({busy.command}), "
                    "retry when it has finished"
                )
            return f"server {server.id} is locked by a running action"
        return None

    def simple(
        self,
        command: str,
        resources: list[tuple[int, str]],
        seconds: float,
        effect: Callable[[], None] | None = None,
    ) -> Action:
        """Start and return a ``command`` action on ``resources`` that just takes time.

        After ``seconds`` it applies ``effect`` (if any) and succeeds.
        """
        action = self.store.new_action(command, resources, expected=seconds)

        async def work() -> None:
            await self.pause(seconds)
            if effect is not None:
                effect()

        self.run_action([action], work)
        return action

    # -- machines -----------------------------------------------------------------------

    def make_machine(
        self, server: Server, image: Image, user_data: str | None, root_keys: list[str]
    ) -> MachineInterface:
        """Build the machine behind a new server from its image and cloud-init."""
        config = parse_user_data(user_data)
        if config.problem:
            logger.warning(
                "server %s (%d): %s; booting with a generated host key",
                server.name,
                server.id,
                config.problem,
            )
        if config.ignored:
            logger.debug("server %s: ignoring cloud-init keys %s", server.name, config.ignored)
        root = LoginUser("root", [*root_keys, *config.root_keys])
        users = []
        for user in config.users:
            if user.name == "root":
                root.authorized_keys.extend(user.authorized_keys)
            else:
                users.append(user)
        if not config.disable_root:
            users.insert(0, root)
        root_dir = self.root / f"m{server.id}"
        root_dir.mkdir(parents=True, exist_ok=True)
        if image.executes:
            # The emulator's machines start from a copy of their snapshot's files; a new
            # instance gets new host keys, as cloud-init makes them on first boot.
            for layer in image.layers:
                copy_tree(layer, root_dir)
            if image.layers:
                shutil.rmtree(MachinePaths(root_dir).ssh_dir, ignore_errors=True)
        spec = MachineSpec(
            server_id=server.id,
            name=server.name,
            image_name=image.name or image.origin_name or image.description,
            executes=image.executes,
            root_dir=root_dir,
            ssh_port=self.ssh_port,
            host_keys=config.host_keys,
            users=users,
            tag=f"{self.emulator_id}/{server.id}",
            os_image=image.origin_name or image.name or "",
            user_data=user_data,
            root_keys=list(root_keys),
            layers=() if image.executes else image.layers,
        )
        server_id = server.id

        def on_event(event: str) -> None:
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            loop.call_soon_threadsafe(self._machine_event, server_id, event)

        return self.machine_factory(spec, on_event)

    def _machine_event(self, server_id: int, event: str) -> None:
        server = self.store.servers.get(server_id)
        if server is None:
            return
        # A guest that powered itself off (``poweroff`` inside) is off, as on Hetzner.
        if event == MachineEvent.SHUTDOWN_COMPLETE and server.status in ("stopping", "running"):
            self._cancel(server.boot_task, "the guest powered off")
            server.status = "off"
            server.machine_ips = None
            logger.info("server %s is off after its guest shut down", server.name)

    def _cancel(self, task: asyncio.Task[Any] | None, reason: str) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel(reason)

    def _schedule_boot(self, server: Server) -> None:
        self._cancel(server.boot_task, "rebooting")
        server.boot_task = self.spawn(self._boot(server))

    async def _boot(self, server: Server) -> None:
        await self.pause(self.profile.ssh_ready)
        if server.status != "running" or server.machine is None:
            return
        ips = server.private_ips()
        try:
            await _shielded(server.machine.boot(server.public_ipv4 or "", ips))
        except OSError as exc:
            server.machine_error = f"boot failed: {exc}"
            logger.warning("machine of server %s did not boot: %s", server.name, exc)
            return
        server.machine_error = None
        server.machine_ips = set(ips)
        await self.reconcile_addresses(server)

    async def reconcile_addresses(self, server: Server) -> None:
        """Make a running machine listen on exactly the server's private addresses."""
        machine = server.machine
        if machine is None or server.machine_ips is None:
            return
        wanted = set(server.private_ips())
        for ip in sorted(wanted - server.machine_ips):
            try:
                await _shielded(machine.add_address(ip))
            except OSError as exc:
                server.machine_error = f"cannot listen on {ip}: {exc}"
                logger.warning("server %s cannot listen on %s: %s", server.name, ip, exc)
                continue
            server.machine_ips.add(ip)
        for ip in sorted(server.machine_ips - wanted):
            await _shielded(machine.remove_address(ip))
            server.machine_ips.discard(ip)

    async def _halt(self, server: Server, reason: str) -> None:
        self._cancel(server.boot_task, reason)
        self._cancel(server.guest_task, reason)
        if server.machine is not None:
            await _shielded(server.machine.halt())
        server.machine_ips = None

    # -- server lifecycle ---------------------------------------------------------------

    def create_server(
        self, server: Server, create: Action, start: Action | None, fail: bool
    ) -> None:
        """``create_server`` (and ``start_server`` if requested) for a new server."""
        actions = [create] if start is None else [create, start]

        async def work() -> None:
            await self.pause(self.profile.create_server)
            if fail:
                server.broken = True
                server.status = "off"
                raise ActionFailed("action_failed", "the server failed to boot")
            create.succeed()
            server.status = "off"
            if start is not None:
                server.busy = start
                await self._power_on(server, start)

        self.run_action(actions, work, server=server)

    async def _power_on(self, server: Server, action: Action) -> None:
        if server.broken:
            raise ActionFailed("action_failed", "the server failed to boot")
        server.status = "starting"
        await self.pause(self.profile.start_server)
        server.status = "running"
        action.succeed()
        self._schedule_boot(server)

    def power_on(self, server: Server, action: Action) -> None:
        """``start_server``: ``off`` -> ``starting`` -> ``running`` (no-op if running)."""
        if server.status == "running":
            self.run_action([action], self._nothing, server=server)
            return
        self.run_action([action], lambda: self._power_on(server, action), server=server)

    async def _nothing(self) -> None:
        await self.pause(0)

    def power_off(self, server: Server, action: Action) -> None:
        """``stop_server``: hard power off (processes die at once)."""

        async def work() -> None:
            if server.status == "off":
                return
            await self._halt(server, "powered off")
            server.status = "stopping"
            await self.pause(self.profile.stop_server)
            server.status = "off"

        self.run_action([action], work, server=server)

    def shutdown(self, server: Server, action: Action) -> None:
        """``shutdown_server``: succeeds once the ACPI signal is delivered.

        The guest then stops its services and powers off (status ``stopping``, then
        ``off`` when the machine reports :attr:`MachineEvent.SHUTDOWN_COMPLETE`).
        """

        async def work() -> None:
            await self.pause(self.profile.shutdown_signal)
            if server.status != "running":
                return
            action.succeed()
            server.status = "stopping"
            server.guest_task = self.spawn(self._guest_shutdown(server))

        self.run_action([action], work, server=server)

    async def _guest_shutdown(self, server: Server) -> None:
        await self.pause(self.profile.shutdown_guest)
        self._cancel(server.boot_task, "shutting down")
        machine = server.machine
        if machine is not None:
            if server.machine_ips is not None:
                await _shielded(machine.shutdown())
            else:
                await _shielded(machine.halt())
        if server.status == "stopping":
            server.status = "off"
            server.machine_ips = None

    def reboot(self, server: Server, action: Action, hard: bool) -> None:
        """``reboot_server`` (ACPI) or ``reset_server`` (hard): the server stays running.

        A reboot of an ``off`` server does nothing; a reset powers it on.
        """

        async def work() -> None:
            if server.status != "running":
                if hard:
                    await self._power_on(server, action)
                return
            await self._halt(server, "rebooting")
            await self.pause(self.profile.reboot)
            action.succeed()
            self._schedule_boot(server)

        self.run_action([action], work, server=server)

    def delete(self, server: Server, action: Action, forget: Callable[[], None]) -> None:
        """``delete_server``: ``deleting``, machine destroyed, then gone (404)."""
        self._cancel(server.task, "the server was deleted")
        for task in list(server.crash_tasks):
            self._cancel(task, "the server was deleted")
        server.status = "deleting"

        async def work() -> None:
            await self._halt(server, "the server was deleted")
            if server.machine is not None:
                await _shielded(server.machine.destroy())
            await self.pause(self.profile.delete_server)
            forget()

        self.run_action([action], work, server=server)

    def attach(self, server: Server, action: Action, entry: PrivateNet) -> None:
        """``attach_to_network``: the addresses are reserved; they go live on success."""

        async def work() -> None:
            await self.pause(self.profile.network_change)
            server.private_net.append(entry)
            await self.reconcile_addresses(server)

        def release() -> None:
            self.addresses.release([entry.ip, *entry.alias_ips])

        self.run_action([action], work, server=server, on_failure=release)

    def detach(self, server: Server, action: Action, network_id: int) -> None:
        """``detach_from_network``: the machine stops listening on those addresses."""

        async def work() -> None:
            await self.pause(self.profile.network_change)
            gone = [net for net in server.private_net if net.network_id == network_id]
            server.private_net = [net for net in server.private_net if net.network_id != network_id]
            await self.reconcile_addresses(server)
            self.addresses.release(ip for net in gone for ip in (net.ip, *net.alias_ips))

        self.run_action([action], work, server=server)

    def create_image(self, server: Server, action: Action, image: Image) -> None:
        """``create_image``: the snapshot is ``creating`` until the action succeeds.

        The machine copies its disk (servers that run nothing have none to copy); new
        servers made from the snapshot start with it.
        """

        async def work() -> None:
            await self.pause(self.profile.create_image)
            size = server.server_type.disk * 0.05
            if server.machine is not None:
                target = self.root / "images" / str(image.id)
                image.layers = await server.machine.snapshot(target)
                if image.layers:
                    size = max(await asyncio.to_thread(disk_usage_gb, target), 0.01)
            image.status = "available"
            image.image_size = round(size, 2)

        def mark_unavailable() -> None:
            image.status = "unavailable"

        self.run_action([action], work, server=server, on_failure=mark_unavailable)

    # -- faults -------------------------------------------------------------------------

    def crash(self, server: Server, after: float) -> None:
        """Hard power loss now or after ``after`` seconds (time-scaled)."""

        async def crash() -> None:
            await self.pause(after * self.time_scale)
            if server.id not in self.store.servers or server.status == "deleting":
                return
            self._cancel(server.task, "the server crashed")
            await self._halt(server, "the server crashed")
            server.status = "off"
            logger.info("server %s crashed (fault injection)", server.name)

        task = self.spawn(crash())
        server.crash_tasks.add(task)
        task.add_done_callback(server.crash_tasks.discard)

    def refuse_ssh(self, server: Server, seconds: float) -> None:
        """Refuse new SSH connections for ``seconds`` (time-scaled)."""
        if server.machine is not None:
            server.machine.refuse_ssh(seconds * self.time_scale)

    # -- shutdown -----------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel every task and destroy every machine (the emulator stops)."""
        for task in list(self._tasks):
            task.cancel("the emulator is stopping")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        machines = [s.machine for s in self.store.servers.values() if s.machine is not None]
        results = await asyncio.gather(
            *(machine.destroy() for machine in machines), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("a machine failed to stop cleanly: %r", result)


async def _shielded(call: Awaitable[T]) -> T:
    """Await a machine call that cancellation of the caller does not interrupt.

    A machine call cut short (say, ``boot`` while it writes files in a thread) would
    leave the machine half done; shielded, it completes, and the machine's own lock
    orders it before whatever comes next (``halt``, ``destroy``).
    """
    inner = asyncio.ensure_future(call)
    inner.add_done_callback(_log_machine_failure)
    return await asyncio.shield(inner)


def _log_machine_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("machine call failed: %r", task.exception())
