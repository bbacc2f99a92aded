"""The part of cloud-init the emulator honours: host keys, login users, root login.

Supported keys of a ``#cloud-config`` document:

``ssh_keys``
    ``{rsa,ecdsa,ed25519}_private`` become the machine's SSH host keys (their
    ``*_public`` companions are accepted and ignored: the machine derives them).
``users``
    A list; dict entries with ``name`` and ``ssh_authorized_keys`` become login users.
    The string ``"default"`` is ignored (the default user on Hetzner images is root).
``ssh_authorized_keys``
    Added to root's authorized keys (cloud-init gives them to the default user).
``disable_root``
    ``true`` removes root's login.  Default here: ``false`` (Hetzner images allow root).

Everything else (``runcmd``, ``packages``, ``write_files``, ...) is ignored and listed in
:attr:`CloudConfig.ignored`.  User data that is not a cloud-config document, or YAML
that does not parse, is ignored as a whole, as cloud-init would: the server still boots,
with a generated host key.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import yaml

from .machine.interface import LoginUser

logger = logging.getLogger(__name__)

__all__ = ["CloudConfig", "parse_user_data"]

_HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
_HANDLED = {"ssh_keys", "users", "ssh_authorized_keys", "disable_root"}


@dataclasses.dataclass
class CloudConfig:
    """What the emulator takes from a server's user data.

    Attributes
    ----------
    host_keys
        Private host keys (OpenSSH/PEM text), in rsa, ecdsa, ed25519 order.
    users
        Login users other than root.
    root_keys
        Extra authorized keys for root (top-level ``ssh_authorized_keys``).
    disable_root
        True if root must not log in.
    ignored
        Top-level keys that were present but are not emulated.
    problem
        Why the user data was ignored as a whole, if it was.
    """

    host_keys: list[str] = dataclasses.field(default_factory=list)
    users: list[LoginUser] = dataclasses.field(default_factory=list)
    root_keys: list[str] = dataclasses.field(default_factory=list)
    disable_root: bool = False
    ignored: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def parse_user_data(user_data: str | None) -> CloudConfig:
    """Extract host keys and login users from cloud-init user data.

    Never raises: malformed input yields an empty :class:`CloudConfig` whose
    ``problem`` says why.
    """
    if not user_data:
        return CloudConfig()
    if not user_data.lstrip().startswith("#cloud-config"):
        return CloudConfig(problem="user data is not a #cloud-config document")
    try:
        document = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        return CloudConfig(problem=f"cloud-config YAML does not parse: {exc}")
    if document is None:
        return CloudConfig()
    if not isinstance(document, dict):
        return CloudConfig(problem="cloud-config is not a mapping")

    config = CloudConfig()
    ssh_keys = document.get("ssh_keys")
    if isinstance(ssh_keys, dict):
        for key_type in _HOST_KEY_TYPES:
            private = ssh_keys.get(f"{key_type}_private")
            if isinstance(private, str) and private.strip():
                config.host_keys.append(private)
    users = document.get("users")
    if isinstance(users, list):
        for entry in users:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                config.users.append(
                    LoginUser(
                        name=entry["name"],
                        authorized_keys=_string_list(entry.get("ssh_authorized_keys")),
                    )
                )
    config.root_keys = _string_list(document.get("ssh_authorized_keys"))
    config.disable_root = document.get("disable_root") is True
    config.ignored = sorted(str(key) for key in document if key not in _HANDLED)
    return config
