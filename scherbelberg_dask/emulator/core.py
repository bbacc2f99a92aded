"""The :class:`Emulator`: a local Hetzner Cloud (API server plus emulated machines).

Use it as an async context manager, or synchronously (it then runs its own event loop
in a daemon thread)::

    async with Emulator() as emulator:
        client = hcloud.Client(emulator.token, api_endpoint=emulator.endpoint)

    with Emulator(profile="realistic", time_scale=0.1) as emulator:
        os.environ.update(emulator.env())
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import os
import random
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .api import build_app
from .api.addresses import RESERVED, AddressBook
from .api.context import Context, ResponseRecord
from .api.engine import Engine, MachineFactory
from .api.introspection import snapshot as build_snapshot
from .api.ratelimit import TokenBucket
from .faults import Faults
from .machine.interface import EMULATOR_IMAGE_NAME, MachineInterface, MachineSpec
from .machine.processes import kill_tagged
from .offerings import Offerings
from .settings import TimingProfile, get_profile
from .store import Store

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_NETWORK_RANGE", "Emulator"]

T = TypeVar("T")

#: Private network range handed out to clusters (inside 127/8, outside the pool).
DEFAULT_NETWORK_RANGE = "127.128.0.0/16"
_START_TIMEOUT = 60.0
#: Bound on a start that first builds Debian images.
_PREPARE_TIMEOUT = 1800.0
_STOP_TIMEOUT = 120.0


def _machine_factory(package_cache: bool) -> MachineFactory:
    """Machines by image: containers for Debian images where the host can, else ours."""
    binds: tuple[tuple[Path, str], ...] | None = None

    def build(spec: MachineSpec, on_event: Callable[[str], None]) -> MachineInterface:
        nonlocal binds
        from .debian import DEBIAN_IMAGES, container_machine, package_cache_binds
        from .machine.machine import Machine

        if not spec.executes and spec.os_image in DEBIAN_IMAGES:
            if binds is None:
                binds = package_cache_binds() if package_cache else ()
            machine = container_machine(spec, on_event, binds)
            if machine is not None:
                return machine
        return Machine(spec, on_event=on_event)

    return build


_OWNER_FILE = "owner"


def _process_identity(pid: int) -> str | None:
    """``pid`` and its start time (tells a reused pid apart), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{pid} {fields[19]}"


def _sweep_stale_directories() -> None:
    """Remove directories of emulators that died without stopping (``kill -9``).

    Their servers' processes and containers died with them; their files (container
    disks can be large) would otherwise stay until the next reboot.
    """
    for directory in Path(tempfile.gettempdir()).glob("sbemu-*"):
        try:
            owner = (directory / _OWNER_FILE).read_text().strip()
        except OSError:
            continue
        pid = owner.split(" ", 1)[0]
        if pid.isdigit() and _process_identity(int(pid)) != owner:
            logger.info("removing %s, left by an emulator that did not stop", directory)
            shutil.rmtree(directory, ignore_errors=True)


def _random_token(length: int = 64) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _network_range(pool: str) -> str:
    """A private range for this emulator: a random /16 of 127.128.0.0/9 clear of the pool.

    Emulators share the host's loopback, so each picks its own /16: the clusters of two
    emulators running side by side (a user's and a test run's) then never get the same
    private addresses, while within one emulator allocation stays Hetzner-like.
    """
    public = ipaddress.IPv4Network(pool, strict=False)
    region = ipaddress.IPv4Network(DEFAULT_NETWORK_RANGE).supernet(new_prefix=9)
    candidates = [
        candidate
        for candidate in region.subnets(new_prefix=16)
        if not candidate.overlaps(public) and not candidate.overlaps(RESERVED)
    ]
    if candidates:
        return str(random.SystemRandom().choice(candidates))
    raise ValueError(f"public pool {pool} leaves no /16 in 127.0.0.0/8 for private networks")


class Emulator:
    """A local Hetzner Cloud: API under ``/v1`` plus one emulated machine per server.

    Parameters
    ----------
    host, port
        Where the API listens (``port=0``: any free port).
    ssh_port
        SSH port of every emulated server (on its own loopback address).
    profile
        Timing profile: ``"instant"`` or ``"realistic"``.
    time_scale
        Factor on every duration of the profile (and on fault durations).
    rate_limit
        Requests per hour (``RateLimit-Limit``); the budget refills at
        ``rate_limit / 3600`` per second.
    rate_limit_capacity
        Burst size of the budget (default: ``rate_limit``).
    api_error_rate, boot_failure_rate, seed
        Initial fault injection (see :class:`~scherbelberg_dask.emulator.faults.Faults`).
    public_pool
        Loopback range of public IPv4 addresses (never inside 127.0.0.0/16).
    machine_factory
        Builds the machine behind each server (default: a container for Debian images
        where the host can run them, else the emulator's own ``Machine``).
    prepare_images
        Debian images to build (if not cached yet) before the API starts serving, e.g.
        ``("debian-12",)``; see :func:`scherbelberg_dask.emulator.debian.prepare`.
    package_cache
        Share uv's download cache between Debian servers (a host directory in the
        image cache); it changes nothing the setup does but saves repeated downloads.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssh_port: int = 2222,
        profile: str = "instant",
        time_scale: float = 1.0,
        rate_limit: int = 3600,
        rate_limit_capacity: int | None = None,
        api_error_rate: float = 0.0,
        boot_failure_rate: float = 0.0,
        seed: int | None = None,
        public_pool: str = "127.32.0.0/11",
        machine_factory: MachineFactory | None = None,
        prepare_images: Sequence[str] = (),
        package_cache: bool = True,
    ) -> None:
        self.host = host
        self.ssh_port = ssh_port
        self.time_scale = time_scale
        self.profile: TimingProfile = get_profile(profile, time_scale)
        self.id = secrets.token_hex(4)
        self.faults = Faults(
            api_error_rate=api_error_rate, boot_failure_rate=boot_failure_rate, seed=seed
        )
        self.catalog = Offerings.load()
        self.network_range = _network_range(public_pool)
        self._port = port
        self._public_pool = public_pool
        self._seed = seed
        self._bucket = TokenBucket(rate_limit, rate_limit_capacity)
        # Validate the pool now, so that a bad value fails at construction.
        AddressBook(public_pool, ssh_port, random.Random(seed))
        self._machine_factory = machine_factory or _machine_factory(package_cache)
        self._prepare_images = tuple(prepare_images)
        self._token = _random_token()
        self._readonly_token = _random_token()
        self._observers: list[Callable[[ResponseRecord], None]] = []
        self._ctx: Context | None = None
        self._runner: web.AppRunner | None = None
        self._tmp: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._thread: threading.Thread | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The API's TCP port (known once started)."""
        return self._port

    @property
    def endpoint(self) -> str:
        """API endpoint for clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.host}:{self._port}/v1"

    @property
    def token(self) -> str:
        """API token of this emulator's project (64 characters, random per instance)."""
        return self._token

    @property
    def readonly_token(self) -> str:
        """A read-only token (non-GET requests get 401 ``token_readonly``)."""
        return self._readonly_token

    @property
    def directory(self) -> Path | None:
        """The emulator's temporary directory (machines' files), while running."""
        return self._tmp if self._runner is not None else None

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._runner is not None

    def env(self) -> dict[str, str]:
        """Environment bundle that points scherbelberg-dask and hcloud at this emulator."""
        return {
            "HCLOUD_ENDPOINT": self.endpoint,
            "HCLOUD_TOKEN": self.token,
            "DASK_SCHERBELBERG__IMAGE": EMULATOR_IMAGE_NAME,
            "DASK_SCHERBELBERG__SSH_PORT": str(self.ssh_port),
            "DASK_SCHERBELBERG__NETWORK__IP_RANGE": self.network_range,
        }

    def dask_config(self) -> dict[str, Any]:
        """The same bundle as dotted keys for ``dask.config.set`` (other settings stay)."""
        return {
            "scherbelberg.image": EMULATOR_IMAGE_NAME,
            "scherbelberg.ssh-port": self.ssh_port,
            "scherbelberg.network.ip-range": self.network_range,
            "scherbelberg.api.endpoint": self.endpoint,
            "scherbelberg.api.token": self.token,
        }

    # -- start / stop (async) -----------------------------------------------------------

    async def start(self) -> None:
        """Start serving the API (on the running event loop)."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        if self._prepare_images:
            from .debian import prepare

            for name in self._prepare_images:
                await asyncio.to_thread(prepare, name)
        await asyncio.to_thread(_sweep_stale_directories)
        self._tmp = Path(tempfile.mkdtemp(prefix="sbemu-"))
        (self._tmp / _OWNER_FILE).write_text(f"{_process_identity(os.getpid())}\n")
        rng = random.Random(self._seed)
        store = Store(self.catalog.system_images)
        addresses = AddressBook(self._public_pool, self.ssh_port, rng)
        engine = Engine(
            store=store,
            addresses=addresses,
            profile=self.profile,
            time_scale=self.time_scale,
            machine_factory=self._machine_factory,
            root=self._tmp,
            emulator_id=self.id,
            ssh_port=self.ssh_port,
        )
        self._ctx = Context(
            emulator_id=self.id,
            token=self._token,
            readonly_token=self._readonly_token,
            store=store,
            catalog=self.catalog,
            addresses=addresses,
            engine=engine,
            faults=self.faults,
            profile=self.profile,
            bucket=self._bucket,
            observers=self._observers,
        )
        runner = web.AppRunner(build_app(self._ctx), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]
        self.faults.attach(self._server_fault)
        logger.info(
            "Hetzner Cloud emulator %s listening on %s (profile %s, SSH port %d, dir %s)",
            self.id,
            self.endpoint,
            self.profile.name,
            self.ssh_port,
            self._tmp,
        )

    async def stop(self) -> None:
        """Stop: end every machine and process, remove the temporary directory."""
        runner, ctx, tmp = self._runner, self._ctx, self._tmp
        if runner is None or ctx is None:
            return
        self.faults.attach(None)
        self._runner = None
        await runner.cleanup()
        await ctx.engine.close()
        killed = await asyncio.to_thread(kill_tagged, f"{self.id}/")
        if killed:
            logger.warning("killed %d leftover processes of emulator %s", killed, self.id)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("Hetzner Cloud emulator %s stopped", self.id)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- start / stop (sync, own loop thread) -------------------------------------------

    def start_sync(self) -> None:
        """Start on a private event loop in a daemon thread (for synchronous callers)."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name=f"hetzner-emulator-{self.id}", daemon=True)
        thread.start()
        ready.wait()
        try:
            timeout = _PREPARE_TIMEOUT if self._prepare_images else _START_TIMEOUT
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._thread = thread

    def stop_sync(self) -> None:
        """Stop an emulator started with :meth:`start_sync` (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(_STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._thread = None

    def __enter__(self) -> Emulator:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()

    # -- inspection ---------------------------------------------------------------------

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the emulator's loop thread and return its result."""
        loop = self._loop
        if loop is None or self._ctx is None:
            raise RuntimeError("the emulator is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or (
            threading.get_ident() == self._loop_thread_id and not loop.is_running()
        ):
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return future.result(_START_TIMEOUT)

    def _context(self) -> Context:
        if self._ctx is None:
            raise RuntimeError("the emulator is not running")
        return self._ctx

    def snapshot(self) -> dict[str, Any]:
        """Plain dict of the current resources (servers with status and IPs, ...)."""
        return self._in_loop(lambda: build_snapshot(self._context()))

    def counters(self) -> dict[str, dict[str, int]]:
        """Requests by ``"METHOD /v1/route-template"`` and by status."""
        return self._context().counters.to_dict()

    def reset_counters(self) -> None:
        """Forget the request counters and refill the rate-limit budget."""
        self._context().counters.reset()
        self._bucket.reset()

    def add_observer(self, observer: Callable[[ResponseRecord], None]) -> None:
        """Call ``observer`` with every answered ``/v1`` request (on the loop thread)."""
        self._observers.append(observer)

    def remove_observer(self, observer: Callable[[ResponseRecord], None]) -> None:
        """Stop calling ``observer``."""
        self._observers.remove(observer)

    def _server_fault(self, kind: str, server_id: int, seconds: float) -> None:
        def apply() -> None:
            ctx = self._context()
            server = ctx.store.servers.get(server_id)
            if server is None:
                raise KeyError(f"no server with ID {server_id}")
            if kind == "crash":
                ctx.engine.crash(server, seconds)
            else:
                ctx.engine.refuse_ssh(server, seconds)

        self._in_loop(apply)
