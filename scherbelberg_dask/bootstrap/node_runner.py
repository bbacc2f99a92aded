"""Run a Dask scheduler or worker on a cluster node.

This file is uploaded to every node and run there by the node's service manager
(systemd on cloud images, ``servicectl`` on the emulator image).  It imports only the
standard library, dask, distributed and :mod:`node_config` (uploaded next to it: the
typed node contract), because the node has nothing else of ours.

Usage on the node::

    python3 node_runner.py run NODE_JSON      # the service's command
    python3 node_runner.py wait NODE_JSON T   # exit 0 once the service is ready, else 1

``NODE_JSON`` is a :class:`~scherbelberg_dask.bootstrap.node_config.NodeConfig`: the
role, addresses, ports, certificate paths, Dask options and the client's Dask
configuration (``dask_config``), applied before Dask starts.
``run`` exits 0 when Dask closed on purpose (stopped by the service manager, or a worker
retired by the scheduler), and non-zero otherwise: the service restarts on failure only,
so a retired worker stays gone until its server is deleted, while a worker whose
scheduler went away (the scheduler node rebooted, its scheduler stopped) exits with
:data:`SCHEDULER_LOST` and is started again, to wait for the scheduler and rejoin.
Relative paths are relative to the node user's home directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from .node_config import NodeConfig
else:  # run as a script on the node, where node_config.py lies next to this file
    from node_config import NodeConfig  # type: ignore[no-redef]


#: Exit status of a worker whose scheduler went away (``EX_TEMPFAIL``): restarted.
SCHEDULER_LOST = 75
#: Why a worker closes when it was retired on purpose (the scheduler's ``close_worker``,
#: ``remove_worker(close=True)`` and ``retire_workers(close_workers=True)``; the
#: worker's own ``lifetime``): it exits 0 and stays gone.  Every other reason, such as
#: ``scheduler-close`` (the scheduler stopped) or
#: ``worker-handle-scheduler-connection-broken`` (it vanished), is a lost scheduler.
RETIRED = frozenset(
    {"scheduler-close-worker", "scheduler-remove-worker", "worker-lifetime-reached"}
)


def exit_status(*, stopped: bool, reason: str | None) -> int:
    """The worker's exit status.

    Parameters
    ----------
    stopped
        The service manager asked the process to stop (SIGTERM or SIGINT).
    reason
        Why Dask closed the nanny (its first close request), or None if it did not close.
    """
    if stopped or reason in RETIRED:
        return 0
    return SCHEDULER_LOST


def _nanny_class() -> Any:
    """``distributed.Nanny`` that remembers why it was first asked to close."""
    from distributed import Nanny

    class RecordingNanny(Nanny):
        close_reason: str | None = None

        def close_gracefully(self, reason: str = "nanny-close-gracefully") -> None:
            if self.close_reason is None:
                self.close_reason = reason
            super().close_gracefully(reason=reason)

        async def close(  # type: ignore[override]
            self, timeout: float = 5, reason: str = "nanny-close"
        ) -> Any:
            if self.close_reason is None:
                self.close_reason = reason
            return await super().close(timeout=timeout, reason=reason)

    return RecordingNanny


def _security(conf: NodeConfig) -> Any:
    from distributed.security import Security

    tls = conf.tls
    return Security(
        tls_ca_file=tls.ca,
        tls_scheduler_cert=tls.cert,
        tls_scheduler_key=tls.key,
        tls_worker_cert=tls.cert,
        tls_worker_key=tls.key,
        tls_client_cert=tls.cert,
        tls_client_key=tls.key,
        require_encryption=True,
    )


async def _run_scheduler(conf: NodeConfig, stop: asyncio.Event) -> int:
    from distributed import Scheduler

    hosts = list(conf.listen)  # public and private address: clients and workers
    async with Scheduler(
        host=hosts,  # type: ignore[arg-type]  # one per port
        port=[conf.ports.scheduler] * len(hosts),  # type: ignore[arg-type]  # one per host
        protocol="tls",
        security=_security(conf),
        dashboard_address=f"{conf.private_ip}:{conf.ports.dashboard}",
        **conf.options,
    ) as scheduler:
        _mark_ready(conf, scheduler.address)
        await _until(stop, scheduler.finished())
    return 0


async def wait_for_scheduler(conf: NodeConfig, timeout: float) -> bool:
    """Wait until the scheduler completes a TLS handshake; False if ``timeout`` passed.

    Dask's own connection retries back off exponentially (with jitter) while a scheduler
    boots beside its workers, so a worker would find it a second or more late; this
    looks every 0.1 s.  The handshake uses the node's own certificate, so the scheduler
    only logs (at INFO) a connection closed before Dask's handshake.
    """
    host, _, port = conf.scheduler_address.split("://")[-1].rpartition(":")
    context = ssl.create_default_context(cafile=conf.tls.ca)
    context.check_hostname = False  # Dask's certificates name no host either
    context.load_cert_chain(conf.tls.cert, conf.tls.key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port), ssl=context),
                max(0.1, min(5.0, deadline - loop.time())),
            )
        except (OSError, asyncio.TimeoutError):  # refused, or not yet answering
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _run_worker(conf: NodeConfig, stop: asyncio.Event) -> int:
    import dask.config
    from dask.utils import parse_timedelta

    nanny_class = _nanny_class()  # imports distributed, which loads its configuration
    connect_timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    await wait_for_scheduler(conf, float(connect_timeout or 30))
    nanny = nanny_class(
        conf.scheduler_address,
        name=conf.name,
        host=conf.private_ip,
        port=conf.ports.nanny,
        worker_port=conf.ports.scheduler,
        protocol="tls",
        security=_security(conf),
        dashboard_address=f"{conf.private_ip}:{conf.ports.dashboard}",
        env=conf.env,
        **conf.options,
    )
    return await serve_worker(nanny, stop, lambda address: _mark_ready(conf, address))


async def serve_worker(nanny: Any, stop: asyncio.Event, on_ready: Any = None) -> int:
    """Run ``nanny`` (of :func:`_nanny_class`) until it closes or ``stop`` is set.

    Returns
    -------
    int
        The process's exit status (:func:`exit_status`).
    """
    async with nanny:
        if on_ready is not None:
            on_ready(nanny.worker_address)
        await _until(stop, nanny.finished())
        reason = nanny.close_reason
    return exit_status(stopped=stop.is_set(), reason=reason)


async def _until(stop: asyncio.Event, finished: Any) -> None:
    done = asyncio.ensure_future(finished)
    halt = asyncio.ensure_future(stop.wait())
    await asyncio.wait([done, halt], return_when=asyncio.FIRST_COMPLETED)
    halt.cancel()


def _ready_file(conf: NodeConfig) -> Path:
    return Path(conf.ready_file)


def _mark_ready(conf: NodeConfig, address: str) -> None:
    # Written to a temporary file and renamed, so a reader never sees it half written.
    path = _ready_file(conf)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"address": address, "pid": os.getpid(), "time": time.time()}))
    os.replace(temporary, path)


def _apply_dask_config(conf: NodeConfig) -> None:
    """The client's configuration over the node's, before distributed is imported.

    Precedence on the node: ``DASK_*`` variables of ``env_vars``, then the client's
    configuration, then the node's own YAML and Dask's defaults.  The nanny hands the
    result on to its worker process.
    """
    import dask.config

    dask.config.update(dask.config.config, conf.dask_config, priority="new")
    dask.config.update(dask.config.config, dask.config.collect_env(), priority="new")


async def _main_run(conf: NodeConfig) -> int:
    for name, value in conf.env.items():
        os.environ[name] = str(value)
    _apply_dask_config(conf)
    _ready_file(conf).unlink(missing_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = _run_scheduler if conf.role == "scheduler" else _run_worker
    return await runner(conf, stop)


def _main_wait(conf: NodeConfig, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    path = _ready_file(conf)
    while time.monotonic() < deadline:
        try:
            ready = json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        print(json.dumps(ready))
        return 0
    print(f"{conf.role} not ready after {timeout:.0f} s", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Entry point: ``run NODE_JSON`` or ``wait NODE_JSON TIMEOUT``."""
    os.chdir(Path.home())
    if len(argv) < 2 or argv[0] not in ("run", "wait"):
        print(__doc__, file=sys.stderr)
        return 2
    conf = NodeConfig.from_json(Path(argv[1]).read_text())
    if argv[0] == "wait":
        return _main_wait(conf, float(argv[2]) if len(argv) > 2 else 120.0)
    return asyncio.run(_main_run(conf))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
