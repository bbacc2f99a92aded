"""``bootstrap-script``: print what setting up a real server would run, without running it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from scherbelberg_dask import config
from scherbelberg_dask.bootstrap.environment import NodeEnvironment
from scherbelberg_dask.bootstrap.profiles import CloudProfile


def register(add_parser: Callable[..., Any], parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``bootstrap-script`` verb."""
    parser = add_parser(
        "bootstrap-script",
        parents=parents,
        help="print the setup script a real Ubuntu/Debian node would run",
        description=(
            "Print the rendered setup script of the cloud profile (Ubuntu and Debian "
            "images) for inspection: the client's Python and package versions, the Dask "
            "systemd service, SSH hardening. Nothing is run and nothing is created."
        ),
    )
    parser.add_argument(
        "--role", choices=["scheduler", "worker"], default="worker", help="node role"
    )
    parser.add_argument(
        "--package",
        action="append",
        default=None,
        metavar="SPEC",
        help="extra pip requirement (repeatable; default: config scherbelberg.packages)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    packages = args.package if args.package is not None else list(config.get("packages"))
    print(CloudProfile(NodeEnvironment.local(packages)).script(args.role), end="")
    return 0
