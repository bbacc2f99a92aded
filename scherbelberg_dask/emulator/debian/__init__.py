"""Debian servers on the emulator: real Debian userlands booted as containers.

Servers of ``debian-12`` and ``debian-13`` (and snapshots of them) boot with
``systemd-nspawn --boot`` from an image built once by :func:`prepare`, and run real
systemd, sshd and cloud-init, so that the cloud profile (the setup a Hetzner server
gets) runs here unchanged.  Where the host cannot run containers, or the image is not
prepared, such servers boot like any image the emulator cannot run: they answer SSH but
refuse commands, with a message that says why and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..machine.interface import MachineInterface, MachineSpec
from .host import host_problem
from .images import (
    DEBIAN_IMAGES,
    ImageNotPrepared,
    cache_root,
    find_image,
    prepare,
    prepare_command,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEBIAN_IMAGES",
    "container_machine",
    "package_cache_binds",
    "prepare",
    "prepare_command",
    "unavailable_reason",
]


def unavailable_reason(image_name: str) -> str | None:
    """Why servers of ``image_name`` do not run as containers here (None: they do)."""
    if image_name not in DEBIAN_IMAGES:
        return None
    problem = host_problem()
    if problem is not None:
        return problem
    try:
        find_image(image_name)
    except ImageNotPrepared as exc:
        return str(exc)
    return None


def package_cache_binds() -> tuple[tuple[Path, str], ...]:
    """Host directories shared by all container servers: uv's download cache of root.

    The setup script runs as root and uv keeps its cache in ``/root/.cache/uv``; sharing
    it saves downloading the same wheels once per server and changes nothing the script
    does (uv locks its cache for concurrent use).
    """
    cache = cache_root() / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return ((cache, "/root/.cache/uv"),)


def container_machine(
    spec: MachineSpec,
    on_event: Callable[[str], None],
    binds: tuple[tuple[Path, str], ...] = (),
) -> MachineInterface | None:
    """A container machine for a server of a Debian image, or None if it cannot run here."""
    if spec.os_image not in DEBIAN_IMAGES or unavailable_reason(spec.os_image) is not None:
        return None
    from .container import ContainerMachine

    return ContainerMachine(spec, find_image(spec.os_image), on_event, binds)
