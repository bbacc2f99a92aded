"""Whether this host can run Debian servers as containers, and what is missing if not.

Debian servers on the emulator are real Debian userlands booted with
``systemd-nspawn --boot``.  That needs root and a few tools; when one is missing, the
emulator says exactly which and how to install it, and servers of Debian images keep
refusing to run commands (as servers of any image the emulator cannot run do).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil

logger = logging.getLogger(__name__)

__all__ = ["host_problem", "require_host"]

#: Tools a container server needs, with the Debian package that provides each.
_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "cp": "coreutils",
}


@functools.lru_cache(maxsize=1)
def host_problem() -> str | None:
    """Why Debian servers cannot run here, or None if they can.

    The answer names every missing requirement and the command that installs it.
    """
    problems = []
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        problems.append("the emulator must run as root (systemd-nspawn boots containers as root)")
    missing = sorted({package for tool, package in _TOOLS.items() if shutil.which(tool) is None})
    if missing:
        tools = sorted(tool for tool, package in _TOOLS.items() if package in missing)
        problems.append(
            f"missing {', '.join(tools)}: install with `apt-get install {' '.join(missing)}`"
        )
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/pid"):
        problems.append("the kernel offers no PID namespaces")
    if not problems:
        return None
    return "this host cannot run Debian servers: " + "; ".join(problems)


def require_host() -> None:
    """Raise ``RuntimeError`` naming what is missing if Debian servers cannot run here."""
    problem = host_problem()
    if problem is not None:
        raise RuntimeError(problem)
