"""``HetznerCluster``: a Dask cluster of Hetzner servers, driven by Dask's SpecCluster.

The cluster holds Dask's concerns only: the spec, ``scale``, ``adapt``, retiring workers
by name, and replacing lost ones.  Everything that touches the cloud is the
:class:`~scherbelberg_dask.cluster.provisioner.Provisioner`'s (docs/design.md,
"Cluster").
"""

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
from scherbelberg_dask.cluster import dask_config_shipping
from scherbelberg_dask.cluster.cloudprovider_compat import apply_keywords
from scherbelberg_dask.cluster.node import Node
from scherbelberg_dask.cluster.nuke import nuke as _nuke
from scherbelberg_dask.cluster.plan import ClusterPlan, plan_cluster
from scherbelberg_dask.cluster.processes import HetznerScheduler, HetznerWorker
from scherbelberg_dask.cluster.provisioner import Ownership, Provisioner
from scherbelberg_dask.cluster.settings import ClusterSettings
from scherbelberg_dask.errors import SettingsError
from scherbelberg_dask.ssh import SSHConnection, connect
from scherbelberg_dask.state.statedir import StateDir

logger = logging.getLogger(__name__)

#: ``set_timeouts``: leave this one as it is.
_KEEP: Any = object()


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
    autonomous
        Run the adaptive policy and the deletion in a controller service on the scheduler
        node, so the cluster adapts and deletes itself with this process gone
        (docs/autonomous.md).  Keeps the API token on the scheduler node, readable only
        by the controller's system user.  ``adapt`` then hands its settings to the
        controller; ``scale`` takes control back from it.
    idle_timeout
        An autonomous cluster deletes itself after this long without work and without
        a connected client (``"30m"``, seconds; ``None`` → config; ``"off"``: never).
    max_lifetime
        An autonomous cluster deletes itself this long after its creation, busy or not.
    network_ip_range, state_dir
        The private network's range and the base directory for local state.
    boot_retries
        How often in a row a new server is tried for a node whose server failed to come
        up for a reason of the cloud's (default ``scherbelberg.boot-retries``, 2).
    snapshot
        Snapshot the node environment in the background once the first node is up, and
        boot later nodes of the same environment from the newest matching snapshot
        (default ``scherbelberg.snapshot``, on; docs/snapshots.md).
    snapshot_close_wait
        How long ``close`` waits, once the nodes are deleted, for a snapshot still being
        made before it stops it (``"10m"``, seconds; ``None`` → config
        ``scherbelberg.snapshot-close-wait``, 10m; ``0`` or ``"off"``: stop it at once).
        ``destroy``, a failed start and an interrupted close stop it at once.
    **cloudprovider
        dask-cloudprovider's ``HetznerCluster`` keywords: ``n_workers`` (``workers``),
        ``server_type`` (both roles, unless ``scheduler_type``/``worker_type`` say
        otherwise) and ``debug`` work as there; ``docker_image``, ``docker_args`` and
        ``extra_bootstrap`` fail with what to use instead (see "Coming from
        dask-cloudprovider").

    Notes
    -----
    The client's non-default Dask configuration at construction (YAML, ``DASK_*``
    variables, ``dask.config.set``) reaches every scheduler and worker, also those
    that ``scale`` and ``adapt`` add later, minus secrets and the ``scherbelberg`` and
    ``cloudprovider`` sections (``scherbelberg.dask-config.*`` tunes this).

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
        boot_retries: int | None = None,
        autonomous: bool | None = None,
        idle_timeout: str | float | None = None,
        max_lifetime: str | float | None = None,
        snapshot: bool | None = None,
        snapshot_close_wait: str | float | None = None,
        loop: Any = None,
        _attach: bool = False,
        **cloudprovider: Any,
    ) -> None:
        workers, scheduler_type, worker_type = apply_keywords(
            cloudprovider, workers=workers, scheduler_type=scheduler_type, worker_type=worker_type
        )
        # The settings keywords above, as given: ClusterSettings resolves and checks them.
        given = {k: v for k, v in locals().items() if k in ClusterSettings.argument_names()}
        if security is not True:
            raise SettingsError(
                "security must be True: scherbelberg-dask always uses mutual TLS between "
                "client, scheduler and workers (plain TCP is refused)"
            )
        self.settings = ClusterSettings.resolve(**given)
        # The client's Dask configuration, as of now, for every node (an attached
        # cluster's nodes keep what its creator shipped: the provisioner reads it back).
        shipped = {} if _attach else dask_config_shipping.capture(secrets=[config.api_token(token)])
        self.provisioner = Provisioner(
            self.settings, token=token, endpoint=api_endpoint, dask_config=shipped
        )
        self._start_by_attaching = _attach
        #: Stop a snapshot under way at close instead of waiting for it (destroy).
        self._stop_snapshot = False
        #: An autonomous cluster: whether its controller drives scaling (not this handle).
        self._controller_drives = self.settings.autonomous
        self._start_failed_early = False
        self._tunnel_conn: SSHConnection | None = None
        self._dashboard_port: int | None = None
        worker = {"cls": HetznerWorker, "options": {"provisioner": self.provisioner}}
        initial = (
            {}
            if _attach
            else {self._new_worker_name(i): dict(worker) for i in range(self.settings.workers)}
        )
        try:
            super().__init__(
                scheduler={"cls": HetznerScheduler, "options": {"provisioner": self.provisioner}},
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
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in ClusterSettings.argument_names()}
        # What is left are dask-cloudprovider's keywords, translated as the constructor does.
        workers, ours["scheduler_type"], ours["worker_type"] = apply_keywords(
            kwargs,
            workers=workers,
            scheduler_type=ours.get("scheduler_type"),
            worker_type=ours.get("worker_type"),
        )
        settings = ClusterSettings.resolve(workers=workers, **ours)
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
    ) -> Provisioner:
        """Find a running cluster's nodes without connecting to its Dask scheduler.

        For looking at a cluster whose Dask processes may be down (the CLI's ``ls``,
        ``ssh``, ``logs``, ``destroy``): returns the attached
        :class:`~scherbelberg_dask.cluster.provisioner.Provisioner` (``nodes``, ``cloud``,
        ``state``, ``settings``, ``node_log``, ``destroy``).  Nothing in the cloud changes;
        release its API client with ``await provisioner.close()``.

        Raises
        ------
        ClusterNotFoundError
            No cluster of this prefix (or no local state for it on this machine).
        """
        prefix, remembered = _remembered_settings(prefix, state_dir)
        settings = ClusterSettings.resolve(prefix=prefix, state_dir=state_dir, **remembered)
        provisioner = Provisioner(settings, token=token, endpoint=api_endpoint)
        try:
            await provisioner.attach()
        except BaseException:
            await provisioner.close()
            raise
        return provisioner

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
        if "worker" in self.provisioner.type_errors:
            raise self.provisioner.type_errors["worker"]
        while True:
            name = self._new_worker_name(self._i)
            self._i += 1
            if name not in self.worker_spec and name not in self.workers:
                return {name: dict(self.new_spec)}

    async def _start(self) -> None:
        if self.status != Status.created:
            return await super()._start()
        provisioner = self.provisioner
        try:
            if self._start_by_attaching:
                await self._attach_existing()
            else:
                await provisioner.create()
                self._i = max(self._i, len(self.worker_spec))
                for name in self.worker_spec:  # start worker servers alongside the scheduler
                    provisioner.provision(name, "worker")
            self._advertise_resources()
            self.security = await asyncio.to_thread(provisioner.state.dask_security)
        except BaseException:
            self.status = Status.failed
            self._start_failed_early = True
            await provisioner.release()
            raise
        await super()._start()
        if self.status == Status.running:
            await self._open_dashboard_tunnel()
            if self._controller_drives:
                self._forget_workers()

    async def _attach_existing(self) -> None:
        servers = await self.provisioner.attach()
        numbers = []
        for name, node in self.provisioner.nodes.items():
            if node.role == "worker":
                self.worker_spec[name] = dict(self.new_spec)
                if name.startswith("worker") and name[6:].isdigit():
                    numbers.append(int(name[6:]))
        self._i = max(numbers, default=-1) + 1
        logger.info(
            "Attached to cluster %s (%d servers, %d workers).",
            self.prefix,
            len(servers),
            len(self.worker_spec),
        )

    def _advertise_resources(self) -> None:
        """Let ``scale(cores=...)``/``scale(memory=...)`` know what one worker brings."""
        try:
            options = self.provisioner.node_options("worker")
        except CatalogError:
            return  # attached, and its retired worker type has no successor: no new workers
        for spec in (self.new_spec, *self.worker_spec.values()):
            spec["options"] = {
                **spec["options"],
                "nthreads": options["nthreads"],
                "memory_limit": options["memory_limit"],
            }

    async def _open_dashboard_tunnel(self) -> None:
        from scherbelberg_dask.state.access import DASK, access_of

        node = self.provisioner.nodes.get("scheduler")
        if node is None or node.private_ip is None:
            return
        if await asyncio.to_thread(access_of, self.provisioner.state) == DASK:
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
        if self._start_failed_early:
            # Nothing of SpecCluster ran (no scheduler, no workers); what was made is gone.
            await Cluster._close(self)
            return
        if self.provisioner.ownership is not Ownership.OWNED:
            # Not SpecCluster's close: it scales to zero, which would retire the workers
            # of a cluster that runs for others (or of one this process never made).
            await Cluster._close(self)
            await self.provisioner.release(finish_snapshot=not self._stop_snapshot)
            return
        if self.settings.autonomous and self._controller_drives:
            await self._stop_controller()
        closed = False
        try:
            await super()._close()
            closed = True
        except OSError as exc:
            # The scheduler is gone (destroyed elsewhere, crashed): nothing to retire to.
            logger.warning("Scheduler unreachable while closing (%s); deleting servers.", exc)
            await Cluster._close(self)
            closed = True
        finally:
            # The nodes are gone now; a snapshot under way is waited for (not by destroy,
            # nor after a failed close), then the network, firewall and key go.
            await self.provisioner.release(finish_snapshot=closed and not self._stop_snapshot)

    def close(self, timeout: float | None = None) -> Any:
        """Close the cluster: delete its servers if this handle owns it.

        Once the nodes are deleted, a snapshot of the node environment still being made
        is waited for, at most ``snapshot_close_wait`` (docs/snapshots.md), then the
        network, firewall and SSH key go.  A close with a ``timeout`` (such as Dask's at
        interpreter exit) does not wait for it: the snapshot is stopped.
        """
        if timeout is not None:
            self._stop_snapshot = True
        return super().close(timeout=timeout)

    # -- public API --------------------------------------------------------------------

    @property
    def dashboard_link(self) -> str:
        """The scheduler's dashboard, through an SSH tunnel on this machine."""
        if self._dashboard_port is None:
            return ""
        return f"http://127.0.0.1:{self._dashboard_port}/status"

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    @property
    def ownership(self) -> Ownership:
        """What closing this handle does: delete the cluster (``OWNED``) or leave it."""
        return self.provisioner.ownership

    @property
    def scheduler_node(self) -> Node | None:
        """The scheduler's :class:`~scherbelberg_dask.cluster.node.Node`."""
        return self.provisioner.nodes.get("scheduler")

    @property
    def worker_nodes(self) -> list[Node]:
        """The workers' nodes, by name."""
        nodes = self.provisioner.nodes
        return [nodes[name] for name in sorted(nodes) if nodes[name].role == "worker"]

    @property
    def failures(self) -> dict[str, Exception]:
        """Nodes that failed to come up, with the last error (naming the node, with its log).

        A node whose server was replaced and then came up stays listed.
        """
        return dict(self.provisioner.failures)

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
            for n, node in self.provisioner.nodes.items()
            if (scheduler if node.role == "scheduler" else workers)
        ]
        tails = await asyncio.gather(
            *(self.provisioner.node_log(name) for name in names), return_exceptions=True
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
        self.provisioner.ownership = Ownership.OWNED
        self._stop_snapshot = True  # at once: a snapshot under way is stopped
        return self.close()

    def scale(self, n: int = 0, memory: str | None = None, cores: int | None = None) -> Any:
        """Scale to ``n`` workers (or enough for ``memory``/``cores``), as Dask's.

        Raises
        ------
        AccessError
            This machine has Dask-only access to the cluster (an access bundle).
        """
        self._require_operator("scale")
        if self._controller_drives and self.status == Status.running:
            # An autonomous cluster: take control from its controller first.
            if self.asynchronous:
                return asyncio.ensure_future(self._take_control_and_scale(n, memory, cores))
            self.sync(self._take_control)
        super().scale(n, memory=memory, cores=cores)
        return None

    async def _take_control_and_scale(self, n: int, memory: str | None, cores: int | None) -> None:
        await self._take_control()
        super().scale(n, memory=memory, cores=cores)

    def adapt(self, *args: Any, **kwargs: Any) -> Any:
        """Dask's adaptive scaling (needs operator access, as :meth:`scale`).

        On an autonomous cluster the settings go to its controller, which runs Dask's
        adaptive policy on the scheduler node, also once this process is gone; the call
        returns once the controller took them (an awaitable when asynchronous).
        """
        self._require_operator("adapt")
        if not self.settings.autonomous or self.status != Status.running:
            return super().adapt(*args, **kwargs)
        if args:
            raise SettingsError("adapt on an autonomous cluster takes keyword arguments only")
        try:
            json.dumps(kwargs)
        except (TypeError, ValueError):
            raise SettingsError(
                "adapt on an autonomous cluster takes plain data (numbers, strings such as "
                "interval='2s'): its controller runs on the scheduler node"
            ) from None
        if self._adaptive is not None:
            self._adaptive.stop()
        if self.asynchronous:
            return asyncio.ensure_future(self._hand_to_controller(kwargs))
        return self.sync(self._hand_to_controller, kwargs)

    # -- an autonomous cluster's controller (docs/autonomous.md) -------------------------

    def _forget_workers(self) -> None:
        """Leave the workers to the controller: this handle neither retires nor replaces
        them (the cloud's servers stay; :meth:`_take_control` finds them again)."""
        self.worker_spec.clear()
        self.workers.clear()

    def _fallback_directive(self) -> Any:
        from scherbelberg_dask.controller.spec import Directive

        s = self.settings
        return Directive(generation=0, idle_timeout=s.idle_timeout, max_lifetime=s.max_lifetime)

    async def _direct(self, **changes: Any) -> dict[str, Any]:
        from scherbelberg_dask.controller import handoff

        if not self.settings.autonomous:
            raise SettingsError(f"cluster {self.prefix!r} is not autonomous (autonomous=True)")
        assert self.scheduler_comm is not None
        return await handoff.direct(
            self.scheduler_comm,
            fallback=self._fallback_directive(),
            timeout=float(config.get("controller.handoff-timeout")),
            **changes,
        )

    async def _hand_to_controller(self, adapt: dict[str, Any]) -> None:
        from scherbelberg_dask.controller.spec import CONTROLLER

        async with self._lock:  # a correction under way ends first
            self._controller_drives = True
            self._forget_workers()
        await self._direct(driver=CONTROLLER, adapt=adapt)
        logger.info("The controller of %s adapts with %s.", self.prefix, adapt)

    async def _take_control(self) -> None:
        """Stop the controller's adaptive loop; find the workers it left; drive."""
        from scherbelberg_dask.controller.spec import CLIENT

        await self._direct(driver=CLIENT, adapt=None)
        names = await self.provisioner.refresh_workers()
        self.worker_spec.clear()
        self.worker_spec.update({name: dict(self.new_spec) for name in names})
        numbers = [int(n[6:]) for n in names if n.startswith("worker") and n[6:].isdigit()]
        self._i = max([self._i - 1, *numbers]) + 1
        self._controller_drives = False
        logger.info("This client drives %s now (%d workers).", self.prefix, len(names))

    async def _stop_controller(self) -> None:
        """Before deleting an autonomous cluster: its controller stops adapting (best
        effort: the deletion catches servers it makes meanwhile)."""
        from scherbelberg_dask.controller.spec import CLIENT

        try:
            await asyncio.wait_for(self._direct(driver=CLIENT, adapt=None), 15)
        except Exception as exc:  # the deletion goes ahead anyway
            logger.info("The controller did not confirm it stopped adapting: %s", exc)
        self._controller_drives = False

    def set_timeouts(self, idle_timeout: Any = _KEEP, max_lifetime: Any = _KEEP) -> Any:
        """Change or cancel an autonomous cluster's deletion timeouts.

        Parameters
        ----------
        idle_timeout, max_lifetime
            A time span (``"2h"``, seconds), or ``None`` to cancel it; left out: unchanged.

        Returns
        -------
        dict
            The controller's status acknowledging the change (an awaitable when
            asynchronous).
        """
        from scherbelberg_dask.cluster.settings import duration

        self._require_operator("set_timeouts")
        changes = {}
        if idle_timeout is not _KEEP:
            changes["idle_timeout"] = duration("idle_timeout", idle_timeout)
        if max_lifetime is not _KEEP:
            changes["max_lifetime"] = duration("max_lifetime", max_lifetime)
        return self.sync(self._direct, **changes)

    def autonomy(self) -> Any:
        """The controller's status: who drives, the adaptive settings, the timeouts, idle
        since, when the cluster deletes itself (``None`` before its first report)."""
        from scherbelberg_dask.controller import handoff

        async def read() -> Any:
            assert self.scheduler_comm is not None
            return await handoff.status(self.scheduler_comm)

        return self.sync(read)

    def _require_operator(self, action: str) -> None:
        """Refuse ``action`` on a machine with Dask-only access (our guard, see
        :mod:`scherbelberg_dask.state.access`)."""
        from scherbelberg_dask.state.access import OPERATOR, require

        require(self.provisioner.state, OPERATOR, action)

    def detach(self) -> Any:
        """Close this handle but leave the cluster running (``from_existing`` finds it).

        For a process that creates a cluster for others to use, e.g. the CLI's ``create``.
        """
        self.provisioner.ownership = Ownership.ATTACHED
        return self.close()

    @classmethod
    def nuke(cls, prefix: str | None = None, **kwargs: Any) -> dict[str, int]:
        """Delete every labelled resource of cluster ``prefix`` (see :func:`nuke`)."""
        return _nuke(prefix, **kwargs)

    # -- Dask's reconciliation, where retire-by-name needs our own -----------------------

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """Dask's bookkeeping, plus: a lost worker that is still wanted is replaced.

        When the scheduler loses a worker, SpecCluster waits
        ``distributed.deploy.lost-worker-timeout`` for it to come back (a rebooting
        server's service restarts and re-registers under the same name) and then closes
        it, which deletes its server.  After the same wait, if that worker is still
        wanted by the spec (it was lost, not scaled away) and has not come back, a new
        worker takes its place, so the cluster keeps the size it was asked for.
        """
        name = None
        if op == "remove":
            name = self.scheduler_info["workers"].get(msg, {}).get("name")
        super()._update_worker_status(op, msg)
        if name is not None:
            delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
            asyncio.get_running_loop().call_later(delay, self._replace_if_lost, name)

    def _replace_if_lost(self, name: str) -> None:
        """Replace worker ``name`` if the spec wants it and the scheduler has none of it.

        Decided by the scheduler's view, not by whether SpecCluster already closed the
        worker: both orders of the two timers end the same way (the lost worker closed
        and deleted once, a new one started).
        """
        if self.status != Status.running or name not in self.worker_spec:
            return  # scaled away or closing (or the controller's): nothing to replace
        if any(w.get("name") == name for w in self.scheduler_info["workers"].values()):
            return  # it came back (e.g. after a reboot)
        del self.worker_spec[name]
        error = self.provisioner.type_errors.get("worker")
        if error is not None:
            logger.error("Worker %s was lost and cannot be replaced: %s", name, error)
            return
        logger.warning("Worker %s was lost; starting a replacement.", name)
        self.worker_spec.update(self.new_worker_spec())
        self._correct_state()

    async def _correct_state_internal(self) -> None:
        """Make the running workers match the spec (SpecCluster's reconciliation).

        Our own version, because SpecCluster's cannot give the semantics this cluster
        promises (docs/design.md, "Cluster"):

        - It asks the scheduler to retire the workers to remove by *address* while
          passing their names, so nothing is retired and their data is lost with their
          servers.  Here they are retired by name, under the lock, so their data moves
          away before their servers go, also when a scale-down arrives while a scale-up
          is still starting workers; they exit cleanly (``close_workers``), which the
          node's service manager does not restart.
        - It raises the first worker that failed to start, which fails the whole
          correction and leaves the failed worker in the spec.  Here a worker that failed
          (its server already deleted, its boot retries spent) leaves the spec and is
          reported (logged, kept in :attr:`failures`); the others carry on.
        """
        async with self._lock:
            self._correct_state_waiting = None
            to_close = sorted(set(self.workers) - set(self.worker_spec))
            if to_close:
                await self._retire(to_close)
                # Dask's lost-worker handling may have closed some meanwhile.
                closing = [self.workers.pop(name) for name in to_close if name in self.workers]
                await asyncio.gather(*(worker.close() for worker in closing))
            assert self.scheduler is not None
            address = getattr(self.scheduler, "contact_address", None) or self.scheduler.address
            starting = {}
            for name in [name for name in self.worker_spec if name not in self.workers]:
                spec = self.worker_spec[name]
                worker = spec["cls"](address, **{**spec.get("options", {}), "name": name})
                self._created.add(worker)  # SpecCluster's close closes what it made
                starting[name] = worker
            results = await asyncio.gather(*starting.values(), return_exceptions=True)
            for (name, worker), result in zip(starting.items(), results, strict=True):
                if isinstance(result, BaseException):
                    worker.status = Status.failed
                    self.worker_spec.pop(name, None)
                    logger.error("Worker %s failed to start: %s", name, result)
                else:
                    self.workers[name] = worker
                    worker._cluster = weakref.ref(self)

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


def _remembered_settings(prefix: str | None, state_dir: str | None) -> tuple[str, dict[str, Any]]:
    """The validated prefix and the settings its creator stored in the local state."""
    base = ClusterSettings.resolve(prefix=prefix, state_dir=state_dir)
    state = StateDir(base.prefix, base=base.state_dir)
    remembered = dict(state.read_metadata().get("settings", {})) if state.exists() else {}
    remembered.pop("prefix", None)
    return base.prefix, remembered
