"""The controller service on an autonomous cluster's scheduler node.

Usage on the node (the service's command; systemd or ``servicectl`` restart it on
failure)::

    python -m scherbelberg_dask.controller.service CONTROLLER_JSON

Every ``interval`` seconds it looks at the scheduler and the clock, and

- applies a client's new :class:`~.spec.Directive` (who drives scaling, the adaptive
  settings, the timeouts) and acknowledges it in its published status;
- while it drives, runs Dask's adaptive policy through a ``HetznerCluster`` attached to
  its own cluster: the same provisioning code, retire-before-delete, boot retries, rate
  limit pacing and labels as on the client; while a client drives, it holds no cluster
  handle at all, so there is one adaptive loop at a time;
- deletes the whole cluster (:func:`~.teardown.teardown`) once it has been idle (no work,
  no client) for ``idle_timeout``, or ``max_lifetime`` after its creation.

What matters survives a restart: the last directive and the time since when the cluster
has been idle are kept in ``state.json`` next to ``controller.json``.  The API token is
read from the service manager's credential (``$CREDENTIALS_DIRECTORY/hcloud-token``) or
the controller's own 0600 file, used for API requests only, and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from scherbelberg_dask.cloud.labels import DELETE_AT, IDLE_SINCE
from scherbelberg_dask.controller.probe import (
    DIRECTIVE_KEY,
    STATUS_KEY,
    Activity,
    activity,
    get_metadata,
    set_metadata,
)
from scherbelberg_dask.controller.spec import (
    CONTROLLER,
    ControllerSpec,
    ControllerState,
    Directive,
)

logger = logging.getLogger("scherbelberg_dask.controller")

#: Name of the token credential (systemd ``LoadCredential=``) and of the fallback file.
TOKEN_CREDENTIAL = "hcloud-token"
#: Seconds the teardown's API waits may take.
TEARDOWN_TIMEOUT = 300.0


def read_token(spec_path: Path) -> str:
    """The API token: the service manager's credential, else ``hcloud-token`` beside
    ``controller.json`` (the controller's own, mode 0600)."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(credentials) / TOKEN_CREDENTIAL if credentials else None
    if path is None or not path.exists():
        path = spec_path.with_name(TOKEN_CREDENTIAL)
    return path.read_text().strip()


class Controller:
    """The controller's loop and what it holds.

    Parameters
    ----------
    spec
        Its ``controller.json``.
    token
        The API token (kept in memory only).
    home
        The directory of ``controller.json`` (``state.json`` is kept there).
    """

    def __init__(self, spec: ControllerSpec, token: str, home: Path) -> None:
        self.spec = spec
        self._token = token
        self._state_path = home / "state.json"
        self.state = ControllerState.load(self._state_path, spec.directive)
        self.state_base = str(home / spec.state_dir)  # an absolute state_dir stays itself
        self.started = time.time()
        self._cluster: Any = None  # a HetznerCluster while the controller drives
        self._scheduler_address: str | None = None
        self._security: Any = None
        self._tearing_down = False
        self._labels: dict[str, str] | None = None
        self._labelled_at = 0.0

    @property
    def directive(self) -> Directive:
        return self.state.directive

    async def run(self) -> None:
        """Run until the cluster is deleted."""
        logger.info(
            "Controller of cluster %s started (code from %s).", self.spec.prefix, _package_path()
        )
        while True:
            try:
                done = await self.step()
            except Exception as exc:  # one bad round must not end the controller
                logger.error("Controller round failed: %s", exc, exc_info=True)
                done = False
            if done:
                logger.warning("Cluster %s deleted; the controller ends.", self.spec.prefix)
                return
            await asyncio.sleep(self.spec.interval)

    async def step(self) -> bool:
        """One round; True once the cluster has been deleted."""
        now = time.time()
        seen: Activity | None = None
        try:
            async with self._rpc() as comm:
                new = await get_metadata(comm, DIRECTIVE_KEY)
                if new is not None:
                    await self._apply(Directive.from_dict(new))
                seen = await activity(comm)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.warning("Scheduler unreachable (%s); counting the time as idle.", exc)
            self._scheduler_address = None  # look it up again (a rebooted node)
        await self._drive()
        if seen is not None and not seen.idle:
            self._set_idle(None)
        elif self.state.idle_since is None:
            self._set_idle(now)
        reason = self._expired(now)
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with self._rpc() as comm:
                await set_metadata(comm, STATUS_KEY, self.status(now, seen, reason))
        await self._label(now)
        if reason is None:
            return False
        logger.warning("Deleting cluster %s: %s.", self.spec.prefix, reason)
        return await self._teardown()

    # -- directives and driving --------------------------------------------------------

    async def _apply(self, directive: Directive) -> None:
        if directive.generation <= self.directive.generation:
            return
        logger.info(
            "Directive %d: %s drives (adapt %s), idle timeout %s, max lifetime %s.",
            directive.generation,
            directive.driver,
            directive.adapt,
            directive.idle_timeout,
            directive.max_lifetime,
        )
        if directive.driver != CONTROLLER or directive.adapt != self.directive.adapt:
            await self._release()  # the new driver starts from the workers as they are
        self.state.directive = directive
        self.state.save(self._state_path)

    async def _drive(self) -> None:
        d = self.directive
        if d.driver != CONTROLLER or d.adapt is None or self._tearing_down:
            await self._release()
            return
        if self._cluster is None:
            self._cluster = await self._attach()
            self._cluster.adapt(**d.adapt)
            logger.info("Adapting with %s.", d.adapt)

    async def _attach(self) -> Any:
        from scherbelberg_dask.cluster.cluster import HetznerCluster

        cluster = HetznerCluster.from_existing(
            self.spec.prefix,
            asynchronous=True,
            state_dir=self.state_base,
            token=self._token,
            api_endpoint=self.spec.endpoint,
            autonomous=False,  # this handle is the controller's; it must not hand off
            shutdown_on_close=False,
        )
        await cluster
        await self._discard_unregistered(cluster)
        return cluster

    async def _discard_unregistered(self, cluster: Any) -> None:
        """Delete worker servers without a Dask worker: left half set up by a process
        that died while starting them (this controller before a restart, a killed
        client).  Nobody else finishes them, and they would bill forever."""
        registered = {w.get("name") for w in cluster.scheduler_info["workers"].values()}
        stale = sorted(name for name in cluster.worker_spec if name not in registered)
        for name in stale:
            logger.warning("Worker %s never joined the scheduler; deleting its server.", name)
            cluster.worker_spec.pop(name, None)
            cluster.workers.pop(name, None)
            await cluster.provisioner.delete(name)

    async def _release(self) -> None:
        """Stop adapting and let go of the cluster handle, after its last correction."""
        cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        if cluster._adaptive is not None:
            cluster._adaptive.stop()
        async with cluster._lock:  # a scale-up or -down under way ends first
            pass
        await cluster.close()  # attached: leaves the cluster running
        logger.info("Released adaptive control.")

    # -- idle and lifetime -------------------------------------------------------------

    def _set_idle(self, since: float | None) -> None:
        if since != self.state.idle_since:
            self.state.idle_since = since
            self.state.save(self._state_path)

    def deadlines(self) -> dict[str, float | None]:
        """When the cluster deletes itself: at the latest, and if it stays idle."""
        d = self.directive
        lifetime = self.spec.created + d.max_lifetime if d.max_lifetime else None
        idle = (
            self.state.idle_since + d.idle_timeout
            if d.idle_timeout and self.state.idle_since is not None
            else None
        )
        return {"lifetime": lifetime, "idle": idle}

    def _expired(self, now: float) -> str | None:
        deadlines = self.deadlines()
        if deadlines["lifetime"] is not None and now >= deadlines["lifetime"]:
            return f"its max lifetime of {self.directive.max_lifetime:.0f} s has passed"
        if deadlines["idle"] is not None and now >= deadlines["idle"]:
            return f"idle for {self.directive.idle_timeout:.0f} s"
        return None

    def status(self, now: float, seen: Activity | None, reason: str | None) -> dict[str, Any]:
        """What the controller publishes in the scheduler's metadata (nothing secret)."""
        return {
            **self.directive.to_dict(),
            "created": self.spec.created,
            "idle_since": self.state.idle_since,
            "deadlines": self.deadlines(),
            "now": now,
            "started": self.started,
            "pid": os.getpid(),
            "adapting": self._cluster is not None,
            "tasks": None if seen is None else seen.tasks,
            "clients": None if seen is None else seen.clients,
            "deleting": reason,
            "package": _package_path(),
        }

    async def _label(self, now: float) -> None:
        """Keep the scheduler server's labels current for ``ls`` (idle since, delete at),
        at most once a minute unless a value appears or goes."""
        deadlines = [d for d in self.deadlines().values() if d is not None]
        wanted = {
            IDLE_SINCE: _label_time(self.state.idle_since),
            DELETE_AT: _label_time(min(deadlines) if deadlines else None),
        }
        last = self._labels or {}
        if self._labels == wanted:
            return
        recent = self._labels is not None and now - self._labelled_at < 60
        if recent and all((last.get(k) == "none") == (v == "none") for k, v in wanted.items()):
            return  # only the times moved: not worth an API call yet
        from scherbelberg_dask.cloud.client import CloudClient
        from scherbelberg_dask.cloud.labels import cluster_selector

        cloud = CloudClient(self._token, self.spec.endpoint)
        try:
            for server in await cloud.find(
                "servers", cluster_selector(self.spec.prefix, "scheduler")
            ):
                labels = {**server["labels"], **wanted}
                await cloud.request("PUT", f"/servers/{server['id']}", json={"labels": labels})
        except Exception as exc:  # the labels are a courtesy to `ls`
            logger.info("Could not label the scheduler server: %s", exc)
            return
        finally:
            await cloud.close()
        self._labels, self._labelled_at = wanted, now

    async def _teardown(self) -> bool:
        from scherbelberg_dask.cloud.client import CloudClient
        from scherbelberg_dask.controller.teardown import teardown

        self._tearing_down = True
        await self._release()
        cloud = CloudClient(self._token, self.spec.endpoint)
        try:
            await teardown(cloud, self.spec.prefix, timeout=TEARDOWN_TIMEOUT)
        except Exception as exc:  # API trouble: the next round tries again
            logger.error("Deleting the cluster failed (trying again): %s", exc)
            return False
        finally:
            await cloud.close()
        return True

    # -- the scheduler -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _rpc(self) -> Any:
        from distributed.core import rpc

        if self._security is None:
            from scherbelberg_dask.state.statedir import StateDir

            state = StateDir(self.spec.prefix, base=self.state_base)
            self._security = await asyncio.to_thread(state.dask_security)
        if self._scheduler_address is None:
            self._scheduler_address = await self._find_scheduler()
        comm = rpc(
            self._scheduler_address,
            connection_args=self._security.get_connection_args("client"),
            timeout=10,
        )
        try:
            yield comm
        finally:
            await comm.close_rpc()

    async def _find_scheduler(self) -> str:
        from scherbelberg_dask.cloud.client import CloudClient, ServerInfo
        from scherbelberg_dask.cloud.labels import cluster_selector
        from scherbelberg_dask.cluster.node import dask_address
        from scherbelberg_dask.cluster.settings import ClusterSettings
        from scherbelberg_dask.state.statedir import StateDir

        state = StateDir(self.spec.prefix, base=self.state_base)
        remembered = (await asyncio.to_thread(state.read_metadata)).get("settings", {})
        port = int(remembered.get("scheduler_port") or ClusterSettings.resolve().ports.scheduler)
        cloud = CloudClient(self._token, self.spec.endpoint)
        try:
            found = await cloud.find("servers", cluster_selector(self.spec.prefix, "scheduler"))
        finally:
            await cloud.close()
        if not found:
            raise OSError(f"cluster {self.spec.prefix!r} has no scheduler server")
        server = ServerInfo.from_api(found[0])
        return dask_address(server.public_ip or "", port)


def _label_time(value: float | None) -> str:
    return "none" if value is None else str(int(value))


def _package_path() -> str:
    import scherbelberg_dask

    return str(Path(scherbelberg_dask.__file__).parent)


def main(argv: list[str]) -> int:
    """Entry point: ``CONTROLLER_JSON``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints where it is, for support
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0]).absolute()
    spec = ControllerSpec.from_json(path.read_text())
    controller = Controller(spec, read_token(path), path.parent)
    asyncio.run(controller.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
