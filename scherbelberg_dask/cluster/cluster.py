"""``HetznerCluster``: a Dask cluster of Hetzner servers, driven by Dask's SpecCluster."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status
from distributed.deploy.cluster import Cluster
from distributed.deploy.spec import SpecCluster
from distributed.utils import Log, Logs

from scherbelberg_dask import config
from scherbelberg_dask.cloud.errors import CatalogError
from scherbelberg_dask.cluster.context import ClusterContext
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.nuke import nuke as _nuke
from scherbelberg_dask.cluster.plan import ClusterPlan, plan_cluster
from scherbelberg_dask.cluster.processes import HetznerScheduler, HetznerWorker
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.ssh import SSHConnection, connect
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)

#: Settings remembered in the local state so that ``from_existing`` rebuilds the spec.
_REMEMBERED = (
    "scheduler_type",
    "worker_type",
    "image",
    "location",
    "retired_types",
    "ssh_port",
    "network_ip_range",
    "allowed_cidrs",
    "packages",
    "env_vars",
    "worker_options",
    "scheduler_options",
)


class HetznerCluster(SpecCluster):
    """A Dask cluster on Hetzner Cloud: one server for the scheduler, one per worker.

    Every server is a Dask ``ProcessInterface``, so ``Client(cluster)``,
    ``cluster.scale(8)`` and ``cluster.adapt(minimum=0, maximum=20)`` work as with any
    Dask cluster.  All Dask traffic uses mutual TLS from a per-cluster CA; nodes talk over
    a private network; a firewall lets in only SSH and the scheduler's TLS port.

    Parameters
    ----------
    workers
        Number of workers to start with (0: none, e.g. to ``adapt`` from nothing).
    prefix
        Name of the cluster; its resources are labelled with it.  Default ``cluster``.
    scheduler_type, worker_type
        Hetzner server types (validated against the live catalog).
    image, location
        Server image and location.  A deprecated image fails before anything is made,
        naming the current image of its family.
    retired_types
        What a server type that Hetzner retired (or that cannot be ordered in the
        location) does: ``"successor"`` (default; config ``scherbelberg.retired-types``)
        uses the newest orderable type of its published successors, e.g. ``ccx52`` →
        ``ccx53``, with one warning naming both types, their cores, memory and prices;
        ``"error"`` fails before anything is created.  A type without a usable
        successor always fails, naming the nearest types by cores and memory.
    ssh_port
        The servers' SSH port.
    scheduler_port, dashboard_port, nanny_port
        Dask ports on every node (defaults 9753, 9756, 9759).
    allowed_cidrs
        Networks that may reach SSH and the scheduler port.
    packages
        Extra pip requirement specifiers installed on every node.
    env_vars
        Environment variables for the Dask processes.
    worker_options, scheduler_options
        Extra keyword arguments for Dask's ``Nanny``/``Worker`` and ``Scheduler``.
    security
        Must be True: mutual TLS is always on (plain TCP is refused).
    shutdown_on_close
        Close (and delete) the cluster when the Python process exits.
    asynchronous
        Use ``async with`` / ``await`` instead of blocking calls.
    token, api_endpoint
        Hetzner Cloud API token and endpoint (default: ``HCLOUD_TOKEN``,
        ``HCLOUD_ENDPOINT``).  The token is never stored or logged.
    timeouts
        Overrides of the bounded waits (keys ``server``, ``ssh``, ``bootstrap``, ``dask``,
        ``delete``; seconds).
    network_ip_range, state_dir
        The private network's range and the base directory for local state.

    Examples
    --------
    >>> from dask.distributed import Client
    >>> with HetznerCluster(workers=8, worker_type="ccx53") as cluster:  # doctest: +SKIP
    ...     client = Client(cluster)
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        prefix: str | None = None,
        scheduler_type: str | None = None,
        worker_type: str | None = None,
        image: str | None = None,
        location: str | None = None,
        retired_types: str | None = None,
        ssh_port: int | None = None,
        scheduler_port: int | None = None,
        dashboard_port: int | None = None,
        nanny_port: int | None = None,
        allowed_cidrs: list[str] | None = None,
        packages: list[str] | None = None,
        env_vars: dict[str, str] | None = None,
        worker_options: dict[str, Any] | None = None,
        scheduler_options: dict[str, Any] | None = None,
        security: bool = True,
        shutdown_on_close: bool = True,
        asynchronous: bool = False,
        token: str | None = None,
        api_endpoint: str | None = None,
        timeouts: dict[str, float] | None = None,
        network_ip_range: str | None = None,
        state_dir: str | None = None,
        loop: Any = None,
        _attach: bool = False,
    ) -> None:
        if security is not True:
            raise ValueError(
                "security must be True: scherbelberg-dask always uses mutual TLS between "
                "client, scheduler and workers (plain TCP is refused)"
            )
        self.settings = ClusterSettings.resolve(
            workers=workers,
            prefix=prefix,
            scheduler_type=scheduler_type,
            worker_type=worker_type,
            image=image,
            location=location,
            retired_types=retired_types,
            ssh_port=ssh_port,
            scheduler_port=scheduler_port,
            dashboard_port=dashboard_port,
            nanny_port=nanny_port,
            allowed_cidrs=allowed_cidrs,
            packages=packages,
            env_vars=env_vars,
            worker_options=worker_options,
            scheduler_options=scheduler_options,
            timeouts=timeouts,
            network_ip_range=network_ip_range,
            state_dir=state_dir,
        )
        self.context = ClusterContext(self.settings, token=token, endpoint=api_endpoint)
        self._attached = _attach
        self._tunnel_conn: SSHConnection | None = None
        #: Worker name → how many workers in a row failed to boot for its slot.
        self._boot_attempts: dict[str, int] = {}
        self._dashboard_port: int | None = None
        worker = {"cls": HetznerWorker, "options": {"context": self.context}}
        initial = (
            {}
            if _attach
            else {
                self._new_worker_name(i): {
                    "cls": HetznerWorker,
                    "options": {"context": self.context},
                }
                for i in range(self.settings.workers)
            }
        )
        try:
            super().__init__(
                scheduler={"cls": HetznerScheduler, "options": {"context": self.context}},
                worker=worker,
                workers=initial,
                asynchronous=asynchronous,
                loop=loop,
                name=self.settings.prefix,
                shutdown_on_close=shutdown_on_close,
            )
        except BaseException:
            # A synchronous start failed: our _start already removed what it made; stop
            # the event loop thread SpecCluster started for us.
            runner = getattr(self, "_loop_runner", None)
            if runner is not None and not asynchronous:
                runner.stop()
            raise

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def from_existing(
        cls, prefix: str | None = None, *, asynchronous: bool = False, **kwargs: Any
    ) -> HetznerCluster:
        """Attach to a running cluster created by another process (on this machine, or
        on another that shared it with ``scherbelberg-dask share``/``attach``).

        The worker spec is rebuilt from the labelled servers, so ``scale`` and ``adapt``
        keep working.  ``close()`` leaves the cluster running; ``destroy()`` removes it.
        """
        prefix, remembered = _remembered_settings(prefix, kwargs.get("state_dir"))
        merged = {**remembered, **kwargs}
        return cls(prefix=prefix, asynchronous=asynchronous, _attach=True, **merged)

    @classmethod
    async def dry_run_async(
        cls,
        workers: int | None = None,
        *,
        token: str | None = None,
        api_endpoint: str | None = None,
        **kwargs: Any,
    ) -> ClusterPlan:
        """What ``HetznerCluster(workers, **kwargs)`` would create, and its price.

        Every check a real create makes before it creates anything runs against the live
        catalog (server types, with retired ones resolved to their successors, image,
        location, and that the prefix is free) and fails the same way.  Nothing is
        created: the API is only read.  Takes the constructor's keyword arguments.

        Returns
        -------
        ClusterPlan
            The servers (with the resolved types) and shared resources a create would
            make, with hourly and monthly net prices.
        """
        for key in ("security", "shutdown_on_close", "asynchronous", "loop"):
            kwargs.pop(key, None)  # how a cluster runs, not what it is made of
        settings = ClusterSettings.resolve(workers=workers, **kwargs)
        return await plan_cluster(settings, token=token, endpoint=api_endpoint)

    @classmethod
    def dry_run(cls, workers: int | None = None, **kwargs: Any) -> ClusterPlan:
        """Synchronous :meth:`dry_run_async` (also inside a running event loop)."""
        from scherbelberg_dask.cluster.nuke import run_sync

        return run_sync(cls.dry_run_async(workers, **kwargs))

    @classmethod
    async def attach_context(
        cls,
        prefix: str | None = None,
        *,
        token: str | None = None,
        api_endpoint: str | None = None,
        state_dir: str | None = None,
    ) -> ClusterContext:
        """Find a running cluster's nodes without connecting to its Dask scheduler.

        For looking at a cluster whose Dask processes may be down (the CLI's ``ls``,
        ``ssh``, ``logs``, ``destroy``): returns the attached
        :class:`~scherbelberg_dask.cluster.context.ClusterContext` (``nodes``, ``cloud``,
        ``state``, ``profile``).  Nothing in the cloud changes; release its API client
        with ``await context.close()``.

        Raises
        ------
        ClusterNotFoundError
            No cluster of this prefix (or no local state for it on this machine).
        """
        prefix, remembered = _remembered_settings(prefix, state_dir)
        settings = ClusterSettings.resolve(prefix=prefix, state_dir=state_dir, **remembered)
        context = ClusterContext(settings, token=token, endpoint=api_endpoint)
        try:
            await context.attach()
        except BaseException:
            await context.close()
            raise
        return context

    # -- SpecCluster hooks -------------------------------------------------------------

    def _new_worker_name(self, worker_number: int) -> str:
        return f"worker{worker_number:03d}"

    def new_worker_spec(self) -> dict[str, dict[str, Any]]:
        """The next worker's name and spec; names are never reused within a cluster.

        A reused name would be a reused server name, and the old server may still be
        being deleted.

        Raises
        ------
        CatalogError
            Attached to a cluster whose worker type was retired since and cannot be
            replaced: ``scale`` fails before anything is made.
        """
        if "worker" in self.context.type_errors:
            raise self.context.type_errors["worker"]
        while True:
            name = self._new_worker_name(self._i)
            self._i += 1
            if name not in self.worker_spec and name not in self.workers:
                return {name: dict(self.new_spec)}

    async def _start(self) -> None:
        if self.status != Status.created:
            return await super()._start()
        ctx = self.context
        try:
            if self._attached:
                await self._attach_existing()
            else:
                await ctx.create()
                await asyncio.to_thread(self._remember_settings)
                self._i = max(self._i, len(self.worker_spec))
                for name in self.worker_spec:  # start worker servers alongside the scheduler
                    ctx.provision(name, "worker")
            self._advertise_resources()
            self.security = await asyncio.to_thread(ctx.state.dask_security)
        except BaseException:
            self.status = Status.failed
            await self._release_cloud()
            raise
        await super()._start()
        if self.status == Status.running:
            await self._open_dashboard_tunnel()

    async def _attach_existing(self) -> None:
        servers = await self.context.attach()
        numbers = []
        for name, node in self.context.nodes.items():
            if node.role == "worker":
                self.worker_spec[name] = {
                    "cls": HetznerWorker,
                    "options": {"context": self.context},
                }
                if name.startswith("worker") and name[6:].isdigit():
                    numbers.append(int(name[6:]))
        self._i = max(numbers, default=-1) + 1
        logger.info(
            "Attached to cluster %s (%d servers, %d workers).",
            self.context.prefix,
            len(servers),
            len(self.worker_spec),
        )

    def _remember_settings(self) -> None:
        settings = {}
        for key in _REMEMBERED:
            value = getattr(self.settings, key)
            value = list(value) if isinstance(value, tuple) else value
            try:
                json.dumps(value)
            except TypeError:
                continue
            settings[key] = value
        ports = self.settings.ports
        settings.update(
            scheduler_port=ports.scheduler, dashboard_port=ports.dashboard, nanny_port=ports.nanny
        )
        self.context.state.write_metadata(
            {"prefix": self.context.prefix, "image": self.settings.image, "settings": settings}
        )

    def _advertise_resources(self) -> None:
        """Let ``scale(cores=...)``/``scale(memory=...)`` know what one worker brings."""
        try:
            options = self.context.node_options("worker")
        except CatalogError:
            return  # attached, and its retired worker type has no successor: no new workers
        for spec in (self.new_spec, *self.worker_spec.values()):
            spec["options"] = {
                **spec["options"],
                "nthreads": options["nthreads"],
                "memory_limit": options["memory_limit"],
            }

    async def _release_cloud(self) -> None:
        """Delete what this process owns (after a failed start or on close); free the API."""
        try:
            if self.context.owner:
                await self.context.destroy()
        finally:
            await self.context.close()

    async def _open_dashboard_tunnel(self) -> None:
        from scherbelberg_dask.state.access import DASK, access_of

        node = self.context.nodes.get("scheduler")
        if node is None or node.private_ip is None:
            return
        if await asyncio.to_thread(access_of, self.context.state) == DASK:
            logger.info("Dask-only access: no dashboard tunnel (it needs the SSH key).")
            return
        try:
            self._tunnel_conn = await connect(node.ssh, timeout=30)
            forward = await self._tunnel_conn.forward_local(
                node.private_ip, self.settings.ports.dashboard
            )
            self._dashboard_port = forward.local_port
        except Exception as exc:  # the cluster works without a dashboard
            logger.warning("Could not open the dashboard tunnel: %s", exc)

    async def _close(self) -> None:
        if self.status == Status.closed:
            return
        if self._tunnel_conn is not None:
            await self._tunnel_conn.close()
            self._tunnel_conn = None
        if not self.context.owner:
            # Attached: leave the cluster running for whoever else uses it.
            await self.context.close()
            await Cluster._close(self)
            return
        try:
            await super()._close()
        except OSError as exc:
            # The scheduler is gone (destroyed elsewhere, crashed): nothing to retire to.
            logger.warning("Scheduler unreachable while closing (%s); deleting servers.", exc)
            await Cluster._close(self)
        finally:
            await self._release_cloud()

    # -- public API --------------------------------------------------------------------

    @property
    def dashboard_link(self) -> str:
        """The scheduler's dashboard, through an SSH tunnel on this machine."""
        if self._dashboard_port is None:
            return ""
        return f"http://127.0.0.1:{self._dashboard_port}/status"

    @property
    def prefix(self) -> str:
        return self.context.prefix

    @property
    def scheduler_node(self) -> Node | None:
        """The scheduler's :class:`~scherbelberg_dask.cluster.node.Node`."""
        return self.context.nodes.get("scheduler")

    @property
    def worker_nodes(self) -> list[Node]:
        """The workers' nodes, by name."""
        nodes = self.context.nodes
        return [nodes[name] for name in sorted(nodes) if nodes[name].role == "worker"]

    @property
    def failures(self) -> dict[str, Exception]:
        """Nodes that failed to come up, with the error (naming the node, with its log)."""
        return dict(self.context.failures)

    def get_client(self) -> Any:
        """A ``distributed.Client`` connected to this cluster (sync or async as the cluster)."""
        from distributed import Client

        return Client(self, asynchronous=self.asynchronous)

    async def _get_logs(
        self, cluster: bool = True, scheduler: bool = True, workers: Any = True
    ) -> Logs:
        """Dask's logs, plus each node's setup and service log (``"<node> (node)"``)."""
        logs = await super()._get_logs(cluster=cluster, scheduler=scheduler, workers=workers)
        names = [
            n
            for n, node in self.context.nodes.items()
            if (scheduler if node.role == "scheduler" else workers)
        ]
        tails = await asyncio.gather(
            *(self.context.node_log(name) for name in names), return_exceptions=True
        )
        for name, tail in zip(names, tails, strict=True):
            logs[f"{name} (node)"] = Log(str(tail))
        return logs

    def destroy(self) -> Any:
        """Delete the whole cluster, also when attached with :meth:`from_existing`.

        Raises
        ------
        AccessError
            This machine has Dask-only access to the cluster (an access bundle).
        """
        self._require_operator("destroy")
        self.context.owner = True
        return self.close()

    def scale(self, n: int = 0, memory: str | None = None, cores: int | None = None) -> None:
        """Scale to ``n`` workers (or enough for ``memory``/``cores``), as Dask's.

        Raises
        ------
        AccessError
            This machine has Dask-only access to the cluster (an access bundle).
        """
        self._require_operator("scale")
        super().scale(n, memory=memory, cores=cores)

    def adapt(self, *args: Any, **kwargs: Any) -> Any:
        """Dask's adaptive scaling (needs operator access, as :meth:`scale`)."""
        self._require_operator("adapt")
        return super().adapt(*args, **kwargs)

    def _require_operator(self, action: str) -> None:
        """Refuse ``action`` on a machine with Dask-only access (our guard, see
        :mod:`scherbelberg_dask.state.access`)."""
        from scherbelberg_dask.state.access import OPERATOR, require

        require(self.context.state, OPERATOR, action)

    def detach(self) -> Any:
        """Close this handle but leave the cluster running (``from_existing`` finds it).

        For a process that creates a cluster for others to use, e.g. the CLI's ``create``.
        """
        self.context.owner = False
        return self.close()

    @classmethod
    def nuke(cls, prefix: str | None = None, **kwargs: Any) -> dict[str, int]:
        """Delete every labelled resource of cluster ``prefix`` (see :func:`nuke`)."""
        return _nuke(prefix, **kwargs)

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """Dask's bookkeeping, plus: a worker whose server died is replaced.

        When the scheduler loses a worker, SpecCluster waits
        ``distributed.deploy.lost-worker-timeout`` for it to come back (a rebooting
        server's service restarts and re-registers under the same name) and then closes
        it, which deletes its server.  If that worker is still wanted by the spec (it was
        lost, not scaled away), a new worker takes its place, so the cluster keeps the
        size it was asked for.
        """
        name = None
        if op == "remove":
            name = self.scheduler_info["workers"].get(msg, {}).get("name")
        super()._update_worker_status(op, msg)
        if name is None or (self.context.owner is False and not self._attached):
            return
        delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
        asyncio.get_running_loop().call_later(delay, self._replace_if_lost, name)

    def _replace_if_lost(self, name: str) -> None:
        if self.status != Status.running or name not in self.worker_spec:
            return  # scaled away or closing: nothing to replace
        if name in self.workers:
            return  # it came back (e.g. after a reboot)
        del self.worker_spec[name]
        error = self.context.type_errors.get("worker")
        if error is not None:
            logger.error("Worker %s was lost and cannot be replaced: %s", name, error)
            return
        logger.warning("Worker %s was lost; starting a replacement.", name)
        self.worker_spec.update(self.new_worker_spec())
        self._correct_state()

    async def _correct_state_internal(self) -> None:
        """Make the running workers match the spec (SpecCluster's reconciliation).

        Our own version, for three reasons:

        - Workers to remove are retired *by name* under the lock, so their data moves
          away before their servers go, also when a scale-down arrives while a
          scale-up is still starting workers.  They exit cleanly (``close_workers``),
          which the node's service manager does not restart.
        - A worker that fails to come up does not fail the others: its server is
          already deleted; it is reported (logged, kept in :attr:`failures`) and, if the
          cloud was at fault, replaced by a new worker, at most
          ``scherbelberg.boot-retries`` times in a row.
        """
        async with self._lock:
            self._correct_state_waiting = None
            to_close = sorted(set(self.workers) - set(self.worker_spec))
            if to_close:
                await self._retire(to_close)
                # Dask's lost-worker handling may have closed some meanwhile.
                closing = [self.workers.pop(name) for name in to_close if name in self.workers]
                await asyncio.gather(*(worker.close() for worker in closing))
            to_open = [name for name in self.worker_spec if name not in self.workers]
            starting = {name: self._new_worker(name) for name in to_open}
            results = await asyncio.gather(
                *(_started(worker) for worker in starting.values()), return_exceptions=True
            )
            retry = False
            for (name, worker), result in zip(starting.items(), results, strict=True):
                if isinstance(result, BaseException):
                    worker.status = Status.failed
                    retry |= self._replace_failed(name, result)
                else:
                    self.workers[name] = worker
                    worker._cluster = weakref.ref(self)
        if retry:
            self._correct_state()

    def _new_worker(self, name: str) -> Any:
        spec = self.worker_spec[name]
        assert self.scheduler is not None
        address = getattr(self.scheduler, "contact_address", None) or self.scheduler.address
        worker = spec["cls"](address, **{**spec.get("options", {}), "name": name})
        self._created.add(worker)
        return worker

    async def _retire(self, names: list[str]) -> None:
        """Move the data of workers ``names`` to the others and let them exit."""
        if self.scheduler_comm is None or self.scheduler is None:
            return
        if self.scheduler.status != Status.running:
            return
        retired = await self.scheduler_comm.retire_workers(
            names=names, close_workers=True, remove=True
        )
        gone = {info.get("name") for info in (retired or {}).values()}
        kept = [name for name in names if name not in gone]
        if kept:
            logger.info("Workers %s were already retired; deleting their servers.", kept)

    def _replace_failed(self, name: str, error: BaseException) -> bool:
        """Report a worker that failed to start; queue a replacement if worth it."""
        self.worker_spec.pop(name, None)
        attempt = self._boot_attempts.pop(name, 1)
        transient = getattr(error, "transient", False)
        if (
            transient
            and attempt <= int(config.get("boot-retries"))
            and self.status == Status.running
        ):
            replacement = self.new_worker_spec()
            new_name = next(iter(replacement))
            self._boot_attempts[new_name] = attempt + 1
            self.worker_spec.update(replacement)
            logger.error(
                "Worker %s failed to start; replacing it with %s: %s", name, new_name, error
            )
            return True
        logger.error("Worker %s failed to start: %s", name, error)
        return False


async def _started(process: Any) -> Any:
    """Await a ProcessInterface (its ``__await__`` starts it)."""
    return await process


def _remembered_settings(prefix: str | None, state_dir: str | None) -> tuple[str, dict[str, Any]]:
    """The validated prefix and the settings its creator stored in the local state."""
    base = ClusterSettings.resolve(prefix=prefix, state_dir=state_dir)
    state = StateDir(base.prefix, base=base.state_dir)
    remembered = state.read_metadata().get("settings", {}) if state.exists() else {}
    return base.prefix, dict(remembered)
