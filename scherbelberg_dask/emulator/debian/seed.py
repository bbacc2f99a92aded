"""What the emulator writes into a Debian server's disk before it boots.

On Hetzner, cloud-init reads the create request from the metadata service.  Here it
reads the same content from a NoCloud seed: ``meta-data`` (instance id, hostname and the
public keys of the request's ``ssh_keys``) and ``user-data`` (the request's ``user_data``,
unchanged).  A drop-in makes sshd listen on the server's addresses at the emulator's SSH
port, since all servers share the host's network namespace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

__all__ = ["SEED_DIR", "SSHD_DROP_IN", "sshd_listen_config", "write_boot_files"]

SEED_DIR = "var/lib/cloud/seed/nocloud"
SSHD_DROP_IN = "etc/ssh/sshd_config.d/00-scherbelberg-emulator.conf"


def sshd_listen_config(addresses: Sequence[str], port: int) -> str:
    """The sshd drop-in that binds the server's addresses only."""
    lines = ["# scherbelberg-dask emulator: this server's addresses on the shared host network"]
    lines += [f"ListenAddress {address}:{port}" for address in addresses]
    return "\n".join(lines) + "\n"


def _make_parents(upper: Path, lower: Path, relative: str) -> None:
    """Create the directories of ``relative`` in ``upper`` with the image's owner and mode.

    overlayfs shows an upper directory's attributes, so a new one must match the image's.
    """
    current_upper, current_lower = upper, lower
    for part in Path(relative).parent.parts:
        current_upper, current_lower = current_upper / part, current_lower / part
        if current_upper.is_dir():
            continue
        try:
            info = os.stat(current_lower)
            mode, uid, gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
        except FileNotFoundError:
            mode, uid, gid = 0o755, 0, 0
        current_upper.mkdir(mode=mode)
        os.chown(current_upper, uid, gid)
        os.chmod(current_upper, mode)


def _write(upper: Path, lower: Path, relative: str, text: str, mode: int) -> None:
    _make_parents(upper, lower, relative)
    path = upper / relative
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def write_boot_files(
    *,
    upper: Path,
    image: Path,
    instance_id: str,
    hostname: str,
    root_keys: Sequence[str],
    user_data: str | None,
    addresses: Sequence[str],
    ssh_port: int,
) -> None:
    """Write the NoCloud seed and the sshd drop-in into the server's disk layer.

    Parameters
    ----------
    upper
        The server's own (upper) layer, not mounted while this runs.
    image
        The image's root file system (for the owner and mode of new directories).
    instance_id
        Stable for the server's life: cloud-init runs its per-instance steps once.
    hostname
        The server's name.
    root_keys
        Public keys of the create request's ``ssh_keys`` (root's authorized keys).
    user_data
        The create request's ``user_data``, unchanged.
    addresses
        Public and private addresses sshd listens on.
    ssh_port
        The emulator's SSH port.
    """
    meta: dict[str, str | list[str]] = {"instance-id": instance_id, "local-hostname": hostname}
    if root_keys:
        meta["public-keys"] = [key.strip() for key in root_keys]
    _write(upper, image, f"{SEED_DIR}/meta-data", yaml.safe_dump(meta, width=10000), 0o600)
    _write(upper, image, f"{SEED_DIR}/user-data", user_data or "", 0o600)
    _write(upper, image, SSHD_DROP_IN, sshd_listen_config(addresses, ssh_port), 0o644)
