"""The environment of processes on an emulated machine and the node's wrapper scripts."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from .paths import MachinePaths
from .processes import NODE_TAG_VAR

logger = logging.getLogger(__name__)

#: Variable naming the machine (its hostname) for processes on it.
NODE_NAME_VAR = "SCHERBELBERG_NODE_NAME"

_SERVICECTL = Path(__file__).with_name("servicectl.py")


def client_env_allowed(name: str) -> bool:
    """Whether an environment variable sent by an SSH client is accepted (like AcceptEnv)."""
    return name == "LANG" or name.startswith("LC_")


@dataclasses.dataclass(frozen=True)
class MachineView:
    """A machine as the processes on it see it.

    Attributes
    ----------
    paths
        The machine's file layout.
    tag
        The machine's process tag.
    name
        The machine's hostname.
    """

    paths: MachinePaths
    tag: str
    name: str

    def environment(self, user: str) -> dict[str, str]:
        """Return the base environment of a process run by ``user`` (inside the machine)."""
        python_dir = os.path.dirname(sys.executable)
        search_path = [str(self.paths.bin), python_dir, "/usr/local/bin", "/usr/bin", "/bin"]
        return {
            "HOME": str(self.paths.home(user)),
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "PATH": ":".join(dict.fromkeys(search_path)),
            NODE_TAG_VAR: self.tag,
            NODE_NAME_VAR: self.name,
        }


def merge_client_env(env: dict[str, str], client_env: Mapping[str, str]) -> dict[str, str]:
    """Add the accepted client-sent variables (LANG, LC_*) to ``env``."""
    for name, value in client_env.items():
        if client_env_allowed(name):
            env[name] = value
    return env


def _script(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


def wrapper_scripts(paths: MachinePaths, node_name: str) -> dict[str, str]:
    """Return the wrapper scripts of ``paths.bin`` by file name.

    ``python3``/``python`` exec the emulator's interpreter (scripts, not symlinks, so
    that venv detection keeps working); ``servicectl`` talks to the supervisor;
    ``hostname`` prints the machine's name (``-I``: its current addresses).
    """
    python = shlex.quote(sys.executable)
    python_script = _script(f'exec {python} "$@"')
    servicectl = _script(
        f"exec {python} -I {shlex.quote(str(_SERVICECTL))} "
        f'--socket {shlex.quote(str(paths.control_socket))} "$@"'
    )
    name = shlex.quote(node_name)
    addresses = shlex.quote(str(paths.addresses))
    hostname = _script(
        'case "${1-}" in\n'
        f'  ""|-s|--short|-f|--fqdn|-A|--all-fqdns) echo {name} ;;\n'
        f"  -I|--all-ip-addresses) cat {addresses} ;;\n"
        f'  -i|--ip-address) set -- $(cat {addresses}); echo "$1" ;;\n'
        '  *) echo "hostname: option $1 is not supported on the emulator" >&2; exit 1 ;;\n'
        "esac"
    )
    return {
        "python3": python_script,
        "python": python_script,
        "servicectl": servicectl,
        "hostname": hostname,
    }


def write_wrapper_scripts(paths: MachinePaths, node_name: str) -> None:
    """(Re)write the wrapper scripts (every boot: the emulator's interpreter may move)."""
    paths.bin.mkdir(parents=True, exist_ok=True)
    for name, text in wrapper_scripts(paths, node_name).items():
        target = paths.bin / name
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(target)
