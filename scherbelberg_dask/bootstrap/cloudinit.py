"""The cloud-init ``user_data`` given to every server at creation.

Its main job is security: it installs the locally generated SSH host key (and deletes
every other host key), so that the very first SSH connection can be verified against
the pinned key.  It also sets login users and switches SSH password login off.

The emulator reads the same document (see :func:`parse_cloud_config`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..security.sshkeys import SSHKeyPair, parse_public_key

__all__ = [
    "USER_DATA_LIMIT",
    "CloudUser",
    "parse_cloud_config",
    "render_cloud_config",
]

logger = logging.getLogger(__name__)

#: Hetzner's limit for ``user_data`` in bytes (32 KiB).
USER_DATA_LIMIT = 32 * 1024
_HEADER = "#cloud-config\n"
#: sshd's drop-in of scherbelberg-dask; the first value of an option wins, so it goes first.
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/10-scherbelberg.conf"
#: In the drop-in from the first boot on (cloud-init writes it before sshd starts).
SSHD_NO_PASSWORDS = "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"


@dataclasses.dataclass(frozen=True)
class CloudUser:
    """A login user cloud-init creates.

    Attributes
    ----------
    name
        User name.
    ssh_authorized_keys
        OpenSSH public key lines allowed to log in.
    shell
        Login shell.
    sudo
        sudoers rule, e.g. ``"ALL=(ALL) NOPASSWD:ALL"``; None: no sudo.
    groups
        Supplementary groups (comma-joined for cloud-init).
    """

    name: str
    ssh_authorized_keys: Sequence[str] = ()
    shell: str | None = "/bin/bash"
    sudo: str | None = None
    groups: Sequence[str] = ()

    def to_cloud_config(self) -> dict[str, Any]:
        """The ``users`` entry for cloud-init."""
        if not self.name or any(c.isspace() or c in ":/," for c in self.name):
            raise ValueError(f"invalid user name for cloud-init: {self.name!r}")
        for key in self.ssh_authorized_keys:
            parse_public_key(key)
        entry: dict[str, Any] = {"name": self.name, "lock_passwd": True}
        if self.shell:
            entry["shell"] = self.shell
        if self.sudo:
            entry["sudo"] = self.sudo
        if self.groups:
            entry["groups"] = ",".join(self.groups)
        entry["ssh_authorized_keys"] = [k.strip() for k in self.ssh_authorized_keys]
        return entry


class _Dumper(yaml.SafeDumper):
    """Safe dumper writing multi-line strings (keys) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def render_cloud_config(
    *,
    host_key: SSHKeyPair,
    users: Sequence[CloudUser] | None = None,
    disable_root: bool = False,
    hostname: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render the ``#cloud-config`` document for one server.

    Parameters
    ----------
    host_key
        The server's SSH host key; installed as its only host key
        (``ssh_deletekeys: true``, ``ssh_genkeytypes: []``).
    users
        Login users to create.  None: leave cloud-init's default users alone (root then
        gets the keys named in the server create request).
    disable_root
        cloud-init's ``disable_root``.
    hostname
        Optional hostname.
    extra
        Further top-level cloud-config keys (e.g. ``packages``); must not repeat a key
        this function sets.

    Returns
    -------
    str
        The document, starting with ``"#cloud-config\\n"``.

    Raises
    ------
    ValueError
        If ``extra`` collides with a key set here, or the document exceeds Hetzner's
        32 KiB ``user_data`` limit (:data:`USER_DATA_LIMIT`).
    """
    config: dict[str, Any] = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh,
        },
        # Not ``ssh_pwauth``: cloud-init would then rewrite sshd's config and restart it
        # in its config stage, seconds into the node's setup, dropping new connections.
        "write_files": [
            {"path": SSHD_DROP_IN, "permissions": "0644", "content": SSHD_NO_PASSWORDS}
        ],
        "disable_root": disable_root,
    }
    if hostname is not None:
        config["hostname"] = hostname
    if users is not None:
        config["users"] = [user.to_cloud_config() for user in users]
    if extra:
        clash = sorted(set(extra) & set(config))
        if clash:
            raise ValueError(f"extra cloud-config keys collide with generated ones: {clash}")
        config.update(extra)
    text = _HEADER + yaml.dump(
        config, Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=1000
    )
    size = len(text.encode("utf-8"))
    if size > USER_DATA_LIMIT:
        raise ValueError(
            f"cloud-init user_data is {size} bytes, more than Hetzner's limit of "
            f"{USER_DATA_LIMIT} bytes (32 KiB); move large content into the bootstrap step"
        )
    return text


def parse_cloud_config(text: str) -> dict[str, Any]:
    """Parse a ``#cloud-config`` document (as the emulator does).

    Raises
    ------
    ValueError
        If the first line is not ``#cloud-config`` or the YAML is not a mapping.
    """
    if not text.startswith("#cloud-config"):
        raise ValueError("user_data is not a cloud-config document (first line '#cloud-config')")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The message of a YAML error quotes the offending line, which may hold a key.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"user_data is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("cloud-config document must be a YAML mapping")
    return data
