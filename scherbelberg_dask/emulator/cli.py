"""``python -m scherbelberg_dask emulator``: run the Hetzner Cloud emulator in the foreground.

The first lines on stdout are ``export NAME=value`` lines (the environment bundle,
shell-quoted), then one blank line; everything else goes to stderr.  In another shell::

    eval "$(python -m scherbelberg_dask emulator | sed '/^$/q')"   # or copy the lines

Ctrl-C or SIGTERM stops the emulator and every process its servers started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
import time
from collections.abc import Callable

from .core import Emulator
from .faults import API_ERROR_KINDS
from .settings import PROFILES

logger = logging.getLogger(__name__)

__all__ = ["add_arguments", "add_verbs", "main", "run"]


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _kinds(text: str) -> list[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in API_ERROR_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(API_ERROR_KINDS)} (comma-separated), got {text!r}"
        )
    return kinds


def _endpoint_rate(text: str) -> tuple[str, float]:
    endpoint, sep, rate = text.rpartition("=")
    if not sep or not endpoint.strip():
        raise argparse.ArgumentTypeError(
            f"expected 'METHOD /v1/route=RATE' (e.g. 'POST /v1/servers=0.5'), got {text!r}"
        )
    return endpoint.strip(), _rate(rate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="API address (default %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="API port (default: any free port)")
    parser.add_argument(
        "--ssh-port", type=int, default=2222, help="SSH port of the servers (default %(default)s)"
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="instant",
        help="timing profile (default %(default)s)",
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="factor on every profile duration"
    )
    parser.add_argument(
        "--api-error-rate", type=_rate, default=0.0, help="probability of an injected API error"
    )
    parser.add_argument(
        "--api-error-rate-for",
        type=_endpoint_rate,
        action="append",
        default=[],
        metavar="'METHOD /v1/route=RATE'",
        help="error rate of one endpoint (repeatable), e.g. 'POST /v1/servers=0.5'",
    )
    parser.add_argument(
        "--api-error-kinds",
        type=_kinds,
        default=list(API_ERROR_KINDS),
        help=f"injected errors, comma-separated from {', '.join(API_ERROR_KINDS)}",
    )
    parser.add_argument(
        "--boot-failure-rate", type=_rate, default=0.0, help="probability that a boot fails"
    )
    parser.add_argument(
        "--fail-next-boots", type=int, default=0, help="make the next N server boots fail"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=3600, help="API requests per hour (default %(default)s)"
    )
    parser.add_argument(
        "--rate-limit-capacity", type=int, default=None, help="burst size of the request budget"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    parser.add_argument(
        "--prepare",
        action="append",
        default=[],
        metavar="IMAGE",
        help="build a Debian image (debian-12, debian-13) first if it is not cached (repeatable)",
    )
    parser.add_argument(
        "--no-package-cache",
        action="store_true",
        help="do not share uv's download cache between Debian servers",
    )
    parser.add_argument(
        "--public-pool",
        default="127.32.0.0/11",
        help="loopback range of public IPv4 addresses (default %(default)s)",
    )


def _make_emulator(args: argparse.Namespace) -> Emulator:
    emulator = Emulator(
        host=args.host,
        port=args.port,
        ssh_port=args.ssh_port,
        profile=args.profile,
        time_scale=args.time_scale,
        rate_limit=args.rate_limit,
        rate_limit_capacity=args.rate_limit_capacity,
        api_error_rate=args.api_error_rate,
        boot_failure_rate=args.boot_failure_rate,
        seed=args.seed,
        public_pool=args.public_pool,
        prepare_images=args.prepare,
        package_cache=not args.no_package_cache,
    )
    emulator.faults.set_api_error_kinds(args.api_error_kinds)
    for endpoint, rate in args.api_error_rate_for:
        emulator.faults.set_api_error_rate(rate, endpoint)
    if args.fail_next_boots:
        emulator.faults.fail_next_boots(args.fail_next_boots)
    return emulator


async def _serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await emulator.start()
        try:
            lines = [
                f"export {name}={shlex.quote(value)}" for name, value in emulator.env().items()
            ]
            sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            print(
                f"Hetzner Cloud emulator running at {emulator.endpoint} "
                f"(profile {emulator.profile.name}); paste the export lines above into another "
                "shell. Ctrl-C stops it.",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
            print("stopping the emulator ...", file=sys.stderr, flush=True)
        finally:
            await emulator.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _setup_logging() -> None:
    if not (logging.getLogger().handlers or logging.getLogger("scherbelberg_dask").handlers):
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emulator prepare``."""
    from .debian import DEBIAN_IMAGES

    parser.add_argument(
        "images",
        nargs="+",
        choices=sorted(DEBIAN_IMAGES),
        metavar="IMAGE",
        help=f"images to build: {', '.join(sorted(DEBIAN_IMAGES))}",
    )


def run_prepare(args: argparse.Namespace) -> int:
    """Build Debian images for the emulator's servers (idempotent); return the exit status."""
    from .debian import prepare

    def show(name: str) -> Callable[[str], None]:
        def line(text: str) -> None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {name}: {text}", file=sys.stderr, flush=True)

        return line

    for name in args.images:
        try:
            image = prepare(name, show(name))
        except (RuntimeError, ValueError) as exc:
            print(f"emulator prepare: {exc}", file=sys.stderr)
            return 1
        print(image.rootfs)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit status."""
    if getattr(args, "emulator_verb", None) == "prepare":
        return run_prepare(args)
    _setup_logging()
    try:
        emulator = _make_emulator(args)
    except ValueError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(emulator))
    except (OSError, RuntimeError) as exc:
        print(f"emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m scherbelberg_dask.emulator.cli``)."""
    parser = argparse.ArgumentParser(
        prog="python -m scherbelberg_dask emulator",
        description="Run a local Hetzner Cloud emulator.",
    )
    add_arguments(parser)
    add_verbs(parser)
    return run(parser.parse_args(argv))


def add_verbs(parser: argparse.ArgumentParser) -> None:
    """The emulator's optional sub-verb: ``prepare IMAGE...`` (no verb: run it)."""
    verbs = parser.add_subparsers(dest="emulator_verb", metavar="{prepare}")
    prepare = verbs.add_parser(
        "prepare",
        help="build Debian images for servers of debian-12/debian-13 (once; cached)",
        description=(
            "Build the root file systems that servers of Debian images boot from "
            "(systemd-nspawn containers). Needs root, systemd-nspawn and debootstrap; "
            "idempotent; safe to run from several processes at once."
        ),
    )
    add_prepare_arguments(prepare)


if __name__ == "__main__":
    raise SystemExit(main())
