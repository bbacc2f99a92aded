"""``ssh``, ``scp`` and ``dashboard``: reach a cluster's nodes from this machine.

``ssh`` and ``scp`` run the system's OpenSSH client with the cluster's key and its pinned
known_hosts file (``StrictHostKeyChecking=yes``); the user's own SSH configuration, agent
and known_hosts are never read or written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from scherbelberg_dask.cli.common import (
    AddParser,
    attached,
    find_node,
    prefix_of,
    require_operator,
)
from scherbelberg_dask.errors import (
    NodeNotFoundError,
    SettingsError,
    ToolMissingError,
    TunnelClosedError,
)

if TYPE_CHECKING:
    from scherbelberg_dask.ssh import SSHTarget

logger = logging.getLogger(__name__)


def register(add_parser: AddParser, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``ssh``, ``scp`` and ``dashboard`` verbs."""
    ssh = add_parser(
        "ssh",
        parents=parents,
        help="log in to a node, or run a command on it",
        description=(
            "Log in to a node with the system's ssh (interactive without a command), or "
            "run COMMAND there and exit with its exit status. Uses the cluster's key and "
            "pinned host keys only; your own SSH configuration is not touched."
        ),
    )
    ssh.add_argument(
        "-t", "--tty", action="store_true", help="force a terminal (for full-screen commands)"
    )
    ssh.add_argument("node", metavar="NODE", help="scheduler, worker000, ...")
    ssh.add_argument(
        "command", metavar="COMMAND", nargs=argparse.REMAINDER, help="command to run (optional)"
    )
    ssh.set_defaults(run=run_ssh)

    scp = add_parser(
        "scp",
        parents=parents,
        help="copy files to or from nodes (NODE:PATH)",
        description=(
            "Copy files between this machine and the cluster's nodes with the system's "
            "scp. Write remote paths as NODE:PATH (e.g. worker000:data.csv); a path "
            "relative to a node is relative to the Dask user's home."
        ),
    )
    scp.add_argument("-r", "--recursive", action="store_true", help="copy directories")
    scp.add_argument("sources", metavar="SOURCE", nargs="+", help="files to copy")
    scp.add_argument("target", metavar="TARGET", help="where to copy them")
    scp.set_defaults(run=run_scp)

    dashboard = add_parser(
        "dashboard",
        parents=parents,
        help="open an SSH tunnel to the Dask dashboard until Ctrl-C",
        description=(
            "Open an SSH tunnel from this machine to the scheduler's dashboard, print its "
            "link on stdout and keep the tunnel open until Ctrl-C (or SIGTERM). Only the "
            "tunnel is held: this process does not act on the cluster."
        ),
    )
    dashboard.add_argument(
        "--port",
        type=int,
        default=0,
        help="local port of the tunnel (default: any free port)",
    )
    dashboard.add_argument(
        "--open", action="store_true", help="also open the link in a web browser"
    )
    dashboard.set_defaults(run=run_dashboard)


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"the OpenSSH client program {name!r} is not installed (or not on PATH)"
        )
    return path


def _exec(program: str, argv: list[str]) -> int:
    """Replace this process by ``argv`` (POSIX), or run it and return its exit status."""
    logger.debug("running %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(program, argv)
    return subprocess.call([program, *argv[1:]])


# -- ssh --------------------------------------------------------------------------------


def run_ssh(args: argparse.Namespace) -> int:
    """Log in to (or run a command on) a node; return ssh's exit status."""
    from scherbelberg_dask.ssh import openssh_args

    program = _program("ssh")
    target = asyncio.run(_target(prefix_of(args), args.node))
    argv = openssh_args(target)
    if args.tty:
        argv.insert(1, "-t")
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return _exec(program, [*argv, *command])


async def _target(prefix: str, name: str) -> SSHTarget:
    async with attached(prefix) as provisioner:
        require_operator(provisioner, "log in to (ssh)")
        return find_node(provisioner, name).ssh


# -- scp --------------------------------------------------------------------------------


def run_scp(args: argparse.Namespace) -> int:
    """Copy files with scp; return its exit status."""
    from scherbelberg_dask.ssh import scp_args, scp_remote

    program = _program("scp")
    paths = [*args.sources, args.target]
    targets = asyncio.run(_targets(prefix_of(args), paths))
    if not targets:
        raise SettingsError(
            "no remote path: write a node's path as NODE:PATH, e.g. worker000:data.csv"
        )
    converted = [
        scp_remote(targets[path], path.split(":", 1)[1]) if path in targets else path
        for path in paths
    ]
    first = next(iter(targets.values()))
    argv = scp_args(first)
    if args.recursive:
        argv.append("-r")
    return _exec(program, [*argv, "--", *converted])


async def _targets(prefix: str, paths: list[str]) -> dict[str, SSHTarget]:
    """The SSH target of every ``NODE:PATH`` among ``paths`` (others are local)."""
    async with attached(prefix) as provisioner:
        require_operator(provisioner, "copy files (scp) to or from")
        found: dict[str, SSHTarget] = {}
        for path in paths:
            name, sep, _ = path.partition(":")
            if sep and name and "/" not in name:
                found[path] = find_node(provisioner, name).ssh
        return found


# -- dashboard --------------------------------------------------------------------------


def run_dashboard(args: argparse.Namespace) -> int:
    """Hold a tunnel to the dashboard until interrupted; return the exit status."""
    return asyncio.run(_dashboard(prefix_of(args), port=args.port, open_browser=args.open))


async def _dashboard(prefix: str, *, port: int, open_browser: bool) -> int:
    """Forward a local port to the scheduler's dashboard over SSH until a signal.

    Only SSH: no Dask connection is held, so this process never acts on the cluster.
    """
    from scherbelberg_dask.ssh import connect

    async with attached(prefix) as provisioner:
        require_operator(provisioner, "open the dashboard tunnel (over SSH) of")
        scheduler = find_node(provisioner, "scheduler")
        remote_port = provisioner.settings.ports.dashboard
    if scheduler.private_ip is None:
        raise NodeNotFoundError(f"the scheduler of cluster {prefix} has no private address")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    async with await connect(scheduler.ssh, timeout=30) as conn:
        forward = await conn.forward_local(scheduler.private_ip, remote_port, local_port=port)
        link = f"http://127.0.0.1:{forward.local_port}/status"
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        try:
            print(link, flush=True)
            logger.info("Dashboard of cluster %s: %s (Ctrl-C closes the tunnel)", prefix, link)
            if open_browser:
                import webbrowser

                webbrowser.open(link)
            stopped = asyncio.create_task(stop.wait())
            lost = asyncio.create_task(conn.asyncssh_connection.wait_closed())
            await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stopped, lost):
                task.cancel()
            if not stop.is_set():
                raise TunnelClosedError(f"the SSH connection to the scheduler of {prefix} closed")
            logger.info("Closing the dashboard tunnel ...")
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            await forward.close()
    return 0
