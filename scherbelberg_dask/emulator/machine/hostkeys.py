"""Host keys of an emulated machine: from the spec, or generated once and kept."""

from __future__ import annotations

import logging
import os

import asyncssh

from .paths import MachinePaths

logger = logging.getLogger(__name__)


def load_host_keys(spec_keys: list[str], paths: MachinePaths) -> list[asyncssh.SSHKey]:
    """Return the machine's host keys.

    Parameters
    ----------
    spec_keys
        OpenSSH private host keys from the server's creation (cloud-init).  Used as
        given when present.
    paths
        The machine's file layout; without ``spec_keys`` an ed25519 key is generated on
        the first boot, stored at ``paths.host_key`` (mode 0600) and reused afterwards.

    Raises
    ------
    ValueError
        If a given key cannot be parsed (the message does not contain the key).
    """
    if spec_keys:
        keys = []
        for index, text in enumerate(spec_keys):
            try:
                keys.append(asyncssh.import_private_key(text))
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise ValueError(f"host key #{index} cannot be parsed: {exc}") from None
        return keys
    key_file = paths.host_key
    if key_file.exists():
        return [asyncssh.read_private_key(str(key_file))]
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key("openssh"))
    logger.debug("generated host key for %s", paths.root)
    return [key]
