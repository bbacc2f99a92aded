"""``servicectl``: manage services on an emulated machine (the emulator image's systemctl).

Runs *on the node* (``<root_dir>/bin/servicectl`` executes this file with the emulator's
interpreter in isolated mode), so it uses the standard library only and imports nothing
from the package.  It parses the command line, sends one JSON request to the machine's
supervisor over its Unix control socket and prints the reply.

Usage::

    servicectl enable [--now] [--restart always|on-failure|no] [--env K=V]... [--user U]
                      NAME [-- CMD ARGS...]
    servicectl disable [--now] NAME
    servicectl start|stop|restart|status|is-active|remove NAME
    servicectl logs [--lines N] NAME
    servicectl list
    servicectl poweroff

``status`` and ``is-active`` exit 0 only if the service is active (3 otherwise, 4 for an
unknown service), like systemctl.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

_MAX_SUN_PATH = 100
_TIMEOUT = 120.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servicectl", description="Manage services on this (emulated) server."
    )
    parser.add_argument("--socket", required=True, help=argparse.SUPPRESS)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    enable = verbs.add_parser(
        "enable",
        help="define and/or enable a service (starts at every boot)",
        usage="servicectl enable [--now] [--restart POLICY] [--env K=V]... [--user USER] "
        "NAME [-- CMD [ARGS...]]",
    )
    enable.add_argument("--now", action="store_true", help="also (re)start it now")
    enable.add_argument("--restart", choices=["always", "on-failure", "no"], default="on-failure")
    enable.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="extra environment"
    )
    enable.add_argument("--user", help="run as this user (root only; default: caller)")
    enable.add_argument("name", metavar="NAME")

    disable = verbs.add_parser("disable", help="do not start a service at boot")
    disable.add_argument("--now", action="store_true", help="also stop it now")
    disable.add_argument("name", metavar="NAME")

    for verb, text in (
        ("start", "start a service"),
        ("stop", "stop a service"),
        ("restart", "stop and start a service"),
        ("status", "show a service's state (exit 0 only if active)"),
        ("is-active", "print active/activating/inactive/failed (exit 0 only if active)"),
        ("remove", "stop a service and delete its definition"),
    ):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("name", metavar="NAME")

    logs = verbs.add_parser("logs", help="show the end of a service's log")
    logs.add_argument("--lines", "-n", type=int, default=100, help="0: whole log")
    logs.add_argument("name", metavar="NAME")

    verbs.add_parser("list", help="list services")
    verbs.add_parser("poweroff", help="shut this server down (root only)")
    return parser


def build_request(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``argv``; return the socket path and the request object."""
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = _parser().parse_args(argv)
    if command and args.verb != "enable":
        _parser().error("only 'enable' takes a command after '--'")
    request: dict[str, Any] = {"verb": args.verb, "caller": os.environ.get("USER", "")}
    if hasattr(args, "name"):
        request["name"] = args.name
    if args.verb == "enable":
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                _parser().error(f"--env needs K=V, got {item!r}")
            env[key] = value
        request.update(argv=command, restart=args.restart, env=env, user=args.user, now=args.now)
    elif args.verb == "disable":
        request["now"] = args.now
    elif args.verb == "logs":
        request["lines"] = args.lines
    return args.socket, request


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_TIMEOUT)
    if len(os.fsencode(path)) <= _MAX_SUN_PATH:
        sock.connect(path)
        return sock
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
    finally:
        os.close(dir_fd)
    return sock


def send(path: str, request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the supervisor and return its reply."""
    with _connect(path) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))
    if not isinstance(reply, dict):
        raise ValueError("malformed reply")
    return reply


def main(argv: list[str] | None = None) -> int:
    """Run servicectl; return its exit status."""
    path, request = build_request(sys.argv[1:] if argv is None else argv)
    try:
        reply = send(path, request)
    except (OSError, ValueError) as exc:
        print(f"servicectl: cannot reach the service supervisor: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(str(reply.get("stdout", "")))
    sys.stderr.write(str(reply.get("stderr", "")))
    return int(reply.get("rc", 1))


if __name__ == "__main__":
    sys.exit(main())
