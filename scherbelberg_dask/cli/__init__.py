"""The command line: ``python -m scherbelberg_dask VERB`` (or ``scherbelberg-dask VERB``).

The CLI is a thin layer over the public Python API (docs/design.md, "CLI"); it adds no
logic of its own.  Log lines go to stderr, results to stdout.  Expected errors print one clear line
and exit non-zero; tracebacks only at DEBUG.  The API token is never printed.

Verbs live in their own modules: :mod:`~scherbelberg_dask.cli.create`,
:mod:`~scherbelberg_dask.cli.inspect` (``ls``, ``logs``, ``catalog``),
:mod:`~scherbelberg_dask.cli.remote` (``ssh``, ``scp``, ``dashboard``),
:mod:`~scherbelberg_dask.cli.lifecycle` (``destroy``, ``nuke``, ``scale``),
:mod:`~scherbelberg_dask.cli.share` (``share``, ``attach``),
:mod:`~scherbelberg_dask.cli.demo` and the emulator's own CLI;
:mod:`~scherbelberg_dask.cli.dask_command` makes all of it ``dask hetzner VERB``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from scherbelberg_dask._version import __version__
from scherbelberg_dask.cli import (
    create,
    demo,
    images,
    inspect,
    lifecycle,
    remote,
    script,
    share,
)
from scherbelberg_dask.cli.common import PROG, cluster_parent, common_parent
from scherbelberg_dask.cli.logs import LEVELS, setup_logging
from scherbelberg_dask.errors import UserError

logger = logging.getLogger(__name__)


def expected_errors() -> tuple[type[BaseException], ...]:
    r"""Errors users cause or meet: one line, no traceback.

    These are the package's :class:`~scherbelberg_dask.errors.UserError`\ s (bad input, no
    such cluster, missing token, unreachable endpoint, a node that failed to start, ...),
    and bounded waits that ran out.  Any other error is a bug: it is reported as
    unexpected, with a hint to the traceback (the emulator's verb reports its own input
    errors).
    """
    return (UserError, TimeoutError)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of every verb, for the command named ``prog``."""
    from scherbelberg_dask.emulator import cli as emulator_cli

    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Dask clusters on Hetzner Cloud, and a local Hetzner Cloud emulator. The API "
            "token comes from HCLOUD_TOKEN, the endpoint from HCLOUD_ENDPOINT."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-l",
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        metavar="LEVEL",
        help="how much to log on stderr: DEBUG, INFO, WARNING or ERROR (default: INFO)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = common_parent()
    on_cluster = [common, cluster_parent()]
    create.register(verbs.add_parser, on_cluster)
    inspect.register(verbs.add_parser, on_cluster)
    remote.register(verbs.add_parser, on_cluster)
    lifecycle.register(verbs.add_parser, on_cluster)
    share.register(verbs.add_parser, on_cluster, [common])
    inspect.register_catalog(verbs.add_parser, [common])
    images.register(verbs.add_parser, [common])
    script.register(verbs.add_parser, [common])

    emulator = verbs.add_parser(
        "emulator",
        parents=[common],
        help="run a local Hetzner Cloud emulator in the foreground",
        description=(
            "Run a local Hetzner Cloud emulator until Ctrl-C. It first prints 'export ...' "
            "lines that point this CLI (and hcloud) at it; paste them into another shell."
        ),
    )
    emulator_cli.add_arguments(emulator)
    emulator_cli.add_verbs(emulator)
    emulator.set_defaults(run=emulator_cli.run)
    demo_parser = verbs.add_parser(
        "demo",
        parents=[common],
        help="create a cluster on an in-process emulator, compute, scale, close",
        description=(
            "A whole cluster lifecycle with real Dask work on a private, in-process "
            "emulator: nothing to set up, nothing left behind."
        ),
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    return parser


def _is_expected(exc: BaseException) -> bool:
    """True if ``exc`` or an error it was raised from is one users cause or meet."""
    expected = expected_errors()
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, expected):
            return True
        seen = seen.__cause__
    return False


def _log_prefix(args: argparse.Namespace) -> str:
    if "prefix" not in args:
        return "scherbelberg"
    from scherbelberg_dask import config

    return str(args.prefix or config.get("prefix"))


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the CLI (as the command ``prog``); return the exit status."""
    args = build_parser(prog).parse_args(argv)
    setup_logging(args.log_level, prefix=_log_prefix(args))
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.log_level == "DEBUG":
            logger.exception("%s failed", args.verb)
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        if _is_expected(exc):
            print(f"error: {lines[0]}", file=sys.stderr)
            if len(lines) > 1:
                print("\n".join(lines[1:]), file=sys.stderr)
        else:
            print(
                f"error: unexpected {type(exc).__name__}: {lines[0]} "
                "(run with -l DEBUG for the traceback, and please report it)",
                file=sys.stderr,
            )
        return 1
