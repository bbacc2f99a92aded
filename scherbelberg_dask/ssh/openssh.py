"""Command lines for the system OpenSSH client (``ssh``, ``scp``) with pinned host keys.

The argument lists ignore the user's SSH configuration (``-F /dev/null``), offer only
the cluster key (``IdentitiesOnly``), verify the host key strictly against the cluster's
known_hosts file and never write to it.
"""

from __future__ import annotations

import logging
import os

from scherbelberg_dask.errors import SettingsError

from .client import SSHTarget

__all__ = ["openssh_args", "openssh_options", "scp_args", "scp_remote"]

logger = logging.getLogger(__name__)


def _config_path(path: os.PathLike[str] | str) -> str:
    """A path as an ``-o`` option value: absolute, ``%`` escaped, quoted if it has spaces."""
    text = os.path.abspath(os.fspath(path)).replace("%", "%%")
    if '"' in text:
        raise SettingsError(f"path {text!r} contains a double quote, which ssh cannot take")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def openssh_options(target: SSHTarget) -> list[str]:
    """Options shared by ``ssh`` and ``scp`` (no program name, port or destination)."""
    return [
        "-F",
        "/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={_config_path(target.known_hosts_path)}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "PreferredAuthentications=publickey",
        "-i",
        os.path.abspath(os.fspath(target.client_key_path)).replace("%", "%%"),
    ]


def openssh_args(target: SSHTarget, *, program: str = "ssh") -> list[str]:
    """argv prefix for ``ssh`` to ``target``; append a remote command or nothing.

    Example: ``[*openssh_args(t), "uname -a"]`` or ``os.execvp("ssh", openssh_args(t))``.
    The list starts with ``program``.
    """
    return [program, *openssh_options(target), "-p", str(target.port), _destination(target)]


def scp_args(target: SSHTarget, *, program: str = "scp") -> list[str]:
    """argv prefix for ``scp`` with ``target``'s settings; append sources and destination.

    Remote paths are written with :func:`scp_remote`.
    """
    return [program, *openssh_options(target), "-P", str(target.port)]


def scp_remote(target: SSHTarget, path: str) -> str:
    """``user@host:path`` for ``scp`` (IPv6 addresses in brackets)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.username}@{host}:{path}"


def _destination(target: SSHTarget) -> str:
    if target.username.startswith("-") or target.host.startswith("-"):
        raise SettingsError("SSH user and host must not start with '-'")
    return f"{target.username}@{target.host}"
