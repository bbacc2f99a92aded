"""``share`` and ``attach``: use a cluster from another machine, with an access bundle.

``share`` (on a machine holding the cluster's CA key) writes an encrypted bundle
(:mod:`scherbelberg_dask.state.bundle`); ``attach`` installs it on the other machine.
The passphrase is prompted for, or read from ``SCHERBELBERG_SHARE_PASSPHRASE`` (CI);
it is never printed, logged or stored.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path

from scherbelberg_dask.cli.common import PROG, AddParser, attached, prefix_of

logger = logging.getLogger(__name__)

#: Environment variable holding the bundle passphrase (for CI, where nobody types).
PASSPHRASE_ENV = "SCHERBELBERG_SHARE_PASSPHRASE"
#: Shortest passphrase ``share`` accepts.
MIN_PASSPHRASE = 8

_KIND_HELP = {
    "dask": "Dask only: a new client certificate; no SSH, scale or destroy",
    "operator": "also the SSH key and pinned host keys: ssh, logs, dashboard, scale, destroy",
}


def register(
    add_parser: AddParser,
    on_cluster: list[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """Add the ``share`` (takes ``--prefix``) and ``attach`` verbs."""
    share = add_parser(
        "share",
        parents=on_cluster,
        help="write an encrypted access bundle of a cluster for another machine",
        description=(
            "Write an access bundle that lets another machine (a teammate's, a second "
            "laptop, CI) use this cluster; install it there with 'attach'. A Dask-only "
            "bundle holds a new client certificate signed by the cluster's CA; an operator "
            "bundle adds the cluster's SSH key and pinned host keys, for ssh, logs, "
            "dashboard, scale and destroy. Neither holds the API token (the other machine "
            "uses its own HCLOUD_TOKEN) or, unless --with-ca-key, the CA's private key. The "
            f"file is encrypted with a passphrase (prompted, or from {PASSPHRASE_ENV}) and "
            "written with mode 0600. Dask's TLS has no revocation: access once shared "
            "lasts as long as the cluster."
        ),
    )
    share.add_argument(
        "--to", required=True, metavar="FILE", type=Path, help="the bundle file to write (new)"
    )
    share.add_argument(
        "--kind",
        choices=sorted(_KIND_HELP),
        default="dask",
        help="; ".join(f"{k}: {v}" for k, v in sorted(_KIND_HELP.items())) + " (default: dask)",
    )
    share.add_argument(
        "--with-ca-key",
        action="store_true",
        help="operator bundles only: also the CA's private key (lets that machine share)",
    )
    share.set_defaults(run=run_share)

    attach = add_parser(
        "attach",
        parents=common,
        help="install an access bundle from 'share' on this machine",
        description=(
            "Install an access bundle written by 'share' on another machine, after which "
            "HetznerCluster.from_existing(PREFIX), ls, and (operator bundles) ssh, logs, "
            "dashboard, scale and destroy work here with this machine's own HCLOUD_TOKEN. "
            f"The passphrase is prompted for, or read from {PASSPHRASE_ENV}. A wrong "
            "passphrase or a damaged file changes nothing."
        ),
    )
    attach.add_argument("bundle", metavar="FILE", type=Path, help="the bundle file")
    attach.add_argument(
        "--replace",
        action="store_true",
        help="replace this machine's existing local state of the cluster",
    )
    attach.set_defaults(run=run_attach)


def _passphrase(*, confirm: bool) -> str:
    """The passphrase from the environment, or typed (twice with ``confirm``)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise ValueError(
                f"no passphrase: set {PASSPHRASE_ENV} or run this in a terminal to type it"
            )
        value = getpass.getpass("Bundle passphrase: ")
        if confirm and getpass.getpass("Same passphrase again: ") != value:
            raise ValueError("the two passphrases differ; nothing was written")
    if confirm and len(value) < MIN_PASSPHRASE:
        raise ValueError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    if not value:
        raise ValueError("the passphrase must not be empty")
    return value


# -- share ------------------------------------------------------------------------------


def run_share(args: argparse.Namespace) -> int:
    """Write the bundle; return the exit status."""
    prefix = prefix_of(args)
    if args.with_ca_key and args.kind != "operator":
        raise ValueError("--with-ca-key needs --kind operator")
    if args.to.exists():
        raise FileExistsError(f"{args.to} exists already; choose another file name")
    passphrase = _passphrase(confirm=True)
    asyncio.run(_share(prefix, args.to, args.kind, args.with_ca_key, passphrase))
    what = "Dask-only" if args.kind == "dask" else "operator"
    extra = " and the CA's private key" if args.with_ca_key else ""
    print(
        f"wrote {args.to}: {what} access to cluster {prefix}{extra}; install it on the other "
        f"machine with '{PROG} attach {args.to.name}' (give the passphrase separately)"
    )
    return 0


async def _share(prefix: str, path: Path, kind: str, include_ca_key: bool, passphrase: str) -> None:
    from scherbelberg_dask.state.bundle import encrypt_bundle, make_bundle, write_private_file

    async with attached(prefix) as provisioner:  # the cluster exists; where its scheduler is
        scheduler = provisioner.nodes.get("scheduler")
        port = provisioner.settings.ports.scheduler
        address = f"tls://{scheduler.public_ip}:{port}" if scheduler else None
        state = provisioner.state
    bundle = await asyncio.to_thread(
        make_bundle, state, kind, scheduler_address=address, include_ca_key=include_ca_key
    )
    data = await asyncio.to_thread(encrypt_bundle, bundle, passphrase)
    await asyncio.to_thread(write_private_file, path, data)
    logger.info("Wrote the %s access bundle of cluster %s to %s.", kind, prefix, path)


# -- attach -----------------------------------------------------------------------------


def run_attach(args: argparse.Namespace) -> int:
    """Install the bundle; return the exit status."""
    from scherbelberg_dask.state.bundle import decrypt_bundle, install_bundle

    data = args.bundle.read_bytes()
    bundle = decrypt_bundle(data, _passphrase(confirm=False))
    state = install_bundle(bundle, replace=args.replace)
    what = "Dask-only" if bundle.kind == "dask" else "operator"
    logger.info("Installed %s access to cluster %s in %s.", what, bundle.prefix, state.path)
    allows = (
        "Client(HetznerCluster.from_existing(...)) and ls"
        if bundle.kind == "dask"
        else "from_existing, ls, ssh, logs, dashboard, scale and destroy"
    )
    if bundle.scheduler_address:
        logger.info("Its scheduler was at %s when shared.", bundle.scheduler_address)
    print(
        f"attached cluster {bundle.prefix} with {what} access ({allows}); see it with "
        f"'{PROG} ls --prefix {bundle.prefix}' (this machine's HCLOUD_TOKEN is used)"
    )
    return 0
