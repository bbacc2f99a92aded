"""What the verbs share: common options, the cluster prefix, attaching, finding a node."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from scherbelberg_dask import config
from scherbelberg_dask.cli.logs import LEVELS

if TYPE_CHECKING:
    from scherbelberg_dask.cluster.node import Node
    from scherbelberg_dask.cluster.provisioner import Provisioner

logger = logging.getLogger(__name__)

#: The console script's name, for hints that show a command.
PROG = "scherbelberg-dask"

#: ``add_parser`` of the verbs' sub-parser group.
AddParser = Callable[..., argparse.ArgumentParser]


def builtin_default(key: str) -> Any:
    """The package's own default of config key ``key`` (not the user's config).

    Help texts show it, so that ``--help`` and the CLI reference are the same everywhere.
    """
    value: Any = config.builtin_defaults()
    for part in key.split("."):
        value = value[part]
    return value


def default_help(text: str, key: str) -> str:
    """``text`` with ``(default: <builtin>, or config scherbelberg.<key>)``."""
    value = builtin_default(key)
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    return f"{text} (default: {shown}, or config scherbelberg.{key})"


def add_retired_types(parser: argparse.ArgumentParser, *, attached: bool = False) -> None:
    """``--retired-types successor|error`` (``create``; ``scale`` with ``attached``)."""
    text = (
        "a retired server type (e.g. ccx52): use its successor (ccx53) with a warning, "
        "or fail before anything is made"
    )
    parser.add_argument(
        "--retired-types",
        choices=("successor", "error"),
        default=None,
        help=(
            f"{text} (default: what the cluster was created with)"
            if attached
            else default_help(text, "retired-types")
        ),
    )


def common_parent() -> argparse.ArgumentParser:
    """Options every verb takes after its name (``-l``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-l",
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default=argparse.SUPPRESS,
        metavar="LEVEL",
        help="how much to log on stderr: DEBUG, INFO, WARNING or ERROR (default: INFO)",
    )
    return parent


def cluster_parent() -> argparse.ArgumentParser:
    """Options of every verb that works on one cluster (``--prefix``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--prefix",
        default=None,
        help=default_help("name of the cluster", "prefix"),
    )
    return parent


def prefix_of(args: argparse.Namespace) -> str:
    """The validated cluster prefix of the command line (or the configured default)."""
    from scherbelberg_dask.cloud.labels import validate_prefix

    return validate_prefix(getattr(args, "prefix", None) or config.get("prefix"))


def _known_clusters(prefix: str) -> str:
    from scherbelberg_dask.state import list_prefixes

    try:
        others = [p for p in list_prefixes() if p != prefix]
    except OSError:
        return ""
    return f" (clusters created on this machine: {', '.join(others)})" if others else ""


@contextlib.asynccontextmanager
async def attached(prefix: str) -> AsyncIterator[Provisioner]:
    """The running cluster ``prefix`` (found without connecting to Dask); closed after use.

    Raises
    ------
    ClusterNotFoundError
        No such cluster; the message names the clusters that do exist here.
    """
    from scherbelberg_dask.cluster.cluster import HetznerCluster
    from scherbelberg_dask.errors import ClusterNotFoundError

    try:
        provisioner = await HetznerCluster.attach_context(prefix)
    except ClusterNotFoundError as exc:
        raise ClusterNotFoundError(f"{exc}{_known_clusters(prefix)}") from None
    try:
        yield provisioner
    finally:
        await provisioner.close()


def require_operator(provisioner: Provisioner, action: str) -> None:
    """Refuse ``action`` unless this machine holds the cluster's SSH key (operator or
    owner access); the error says what access this machine has and how to get more."""
    from scherbelberg_dask.state.access import OPERATOR, require

    require(provisioner.state, OPERATOR, action)


def find_node(provisioner: Provisioner, name: str) -> Node:
    """Node ``name`` (``scheduler``, ``worker000`` or the server's full name)."""
    nodes = provisioner.nodes
    if name in nodes:
        return nodes[name]
    for node in nodes.values():
        if node.server_name == name:
            return node
    from scherbelberg_dask.errors import NodeNotFoundError

    raise NodeNotFoundError(
        f"cluster {provisioner.prefix!r} has no node {name!r}; "
        f"its nodes: {', '.join(sorted(nodes))}"
    )


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def table(header: list[str], rows: list[list[str]], *, right: set[int] | None = None) -> str:
    """A plain text table: columns separated by two spaces; ``right`` columns aligned right."""
    right = right or set()
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join(line(row) for row in [header, *rows])


def plural(count: int, noun: str) -> str:
    """``1 worker``, ``2 workers``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


async def close_cluster(cluster: Any) -> None:
    """Close a cluster handle from async code (``close()`` is typed for both modes)."""
    result = cluster.close()
    if result is not None:
        await result
