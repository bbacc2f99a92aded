"""Command lines that run ``systemd-nspawn`` so that nothing of it stays on the host.

Every container (and every one-off command in an image being built) runs inside a mount
namespace of its own (``unshare --mount --propagation private``): its overlay mount and
the directories nspawn keeps under ``/run/systemd/nspawn`` (a private tmpfs there) exist
only in that namespace and vanish with its last process.  ``setpriv --pdeathsig SIGTERM``
ties a booted container to the process that started it: when the emulator dies, even by
``kill -9``, the kernel sends nspawn SIGTERM, and nspawn kills the container
(``--kill-signal=SIGKILL`` ends its whole PID namespace at once) and exits.

The host has no ``systemd-machined`` necessarily (containers, CI), so nspawn neither
registers the container nor asks for a scope unit (``--register=no --keep-unit``).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["BootCommand", "run_in_tree_command"]

#: Where nspawn keeps its host-side state; a private tmpfs in our mount namespace.
_NSPAWN_RUN = "/run/systemd/nspawn"
_COMMON = ("--quiet", "--register=no", "--keep-unit", "--link-journal=no")


def _namespaced(script: str) -> list[str]:
    """argv running the shell ``script`` in a private mount namespace."""
    prologue = f"set -e; mkdir -p {_NSPAWN_RUN}; mount -t tmpfs -o mode=0755 tmpfs {_NSPAWN_RUN}; "
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        prologue + script,
    ]


def run_in_tree_command(
    root: Path, argv: Sequence[str], env: dict[str, str] | None = None
) -> list[str]:
    """argv that runs ``argv`` inside the directory tree ``root`` (not booted).

    Used while building an image: the command sees ``root`` as ``/`` with ``/proc``,
    ``/sys`` and ``/dev`` set up by nspawn, and shares the host's network (for apt).
    """
    settings = [f"--setenv={key}={value}" for key, value in (env or {}).items()]
    nspawn = ["systemd-nspawn", *_COMMON, "--pipe", f"--directory={root}", *settings, "--", *argv]
    return _namespaced("exec " + shlex.join(nspawn))


@dataclasses.dataclass(frozen=True)
class BootCommand:
    """How to boot one container server.

    Attributes
    ----------
    machine
        nspawn's machine name (unique on the host).
    hostname
        The server's hostname.
    layers
        Read-only layers, lowest (the image) first.
    upper, work, mountpoint
        The server's own disk layer, overlayfs' work directory, and where the merged tree
        is mounted (all on one file system, below the server's directory).
    binds
        Host directories bound into the container: ``(host path, container path)``.
    """

    machine: str
    hostname: str
    layers: tuple[Path, ...]
    upper: Path
    work: Path
    mountpoint: Path
    binds: tuple[tuple[Path, str], ...] = ()

    def argv(self) -> list[str]:
        """The command line (one process: setpriv, unshare and sh exec into nspawn)."""
        if not self.layers:
            raise ValueError("a container needs at least its image as a layer")
        # overlayfs lists lower layers topmost first.
        lower = ":".join(str(layer) for layer in reversed(self.layers))
        options = f"lowerdir={lower},upperdir={self.upper},workdir={self.work}"
        nspawn = [
            "systemd-nspawn",
            *_COMMON,
            "--boot",
            "--kill-signal=SIGKILL",
            "--console=read-only",
            f"--machine={self.machine}",
            f"--hostname={self.hostname}",
            f"--directory={self.mountpoint}",
            *(f"--bind={host}:{inside}" for host, inside in self.binds),
        ]
        script = (
            f"mount -t overlay overlay -o {shlex.quote(options)} "
            f"{shlex.quote(str(self.mountpoint))}; exec {shlex.join(nspawn)}"
        )
        return ["setpriv", "--pdeathsig", "SIGTERM", "--", *_namespaced(script)]
