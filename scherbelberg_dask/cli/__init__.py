"""The command line: ``python -m scherbelberg_dask VERB`` (or ``scherbelberg-dask VERB``).

The CLI is a thin layer over the public Python API (DESIGN §1); it adds no logic of its
own.  Expected errors print one clear line and exit non-zero; tracebacks only at DEBUG.
"""

from __future__ import annotations

import argparse
import logging
import sys

from scherbelberg_dask._version import __version__
from scherbelberg_dask.cli import demo
from scherbelberg_dask.cli.logs import setup_logging
from scherbelberg_dask.cloud.errors import CloudError

logger = logging.getLogger(__name__)

#: Errors users cause or meet (bad input, missing token, unreachable endpoint, ...).
EXPECTED_ERRORS = (CloudError, ValueError, LookupError, TimeoutError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    from scherbelberg_dask.emulator import cli as emulator_cli

    parser = argparse.ArgumentParser(
        prog="scherbelberg-dask",
        description="Dask clusters on Hetzner Cloud, and a local Hetzner Cloud emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-l",
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default: INFO)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    emulator = verbs.add_parser(
        "emulator", help="run a local Hetzner Cloud emulator in the foreground"
    )
    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(run=emulator_cli.run)
    demo_parser = verbs.add_parser(
        "demo", help="create a cluster on an in-process emulator, compute, scale, close"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as exc:
        if args.log_level == "DEBUG":
            logger.exception("failed")
        first = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {first[0]}", file=sys.stderr)
        rest = str(exc).strip().splitlines()[1:]
        if rest:
            print("\n".join(rest), file=sys.stderr)
        return 1
