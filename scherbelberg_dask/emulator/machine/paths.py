"""The file layout of one emulated machine below its ``root_dir``.

Everything a machine owns on the host lives below ``root_dir``::

    bin/                     wrapper scripts on the node's PATH (python3, servicectl, ...)
    etc/ssh/                 generated host key (only if the spec brings none)
    etc/services/NAME.json   persisted service definitions
    var/log/services/        service logs
    run/control.sock         the supervisor's control socket
    run/addresses            current addresses (for ``hostname -I``)
    root/                    root's HOME
    home/NAME/               HOME of every other user
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

#: Valid login and service user names (the portable POSIX subset, as ``useradd`` accepts).
USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def valid_user_name(name: str) -> bool:
    """Return whether ``name`` can be a user name on a machine (and a path component)."""
    return bool(USER_NAME_RE.match(name))


@dataclasses.dataclass(frozen=True)
class MachinePaths:
    """Paths of one machine's file tree.

    Parameters
    ----------
    root
        The machine's private directory (``MachineSpec.root_dir``).
    """

    root: Path

    @property
    def bin(self) -> Path:
        """Directory of the wrapper scripts (first on the node's PATH)."""
        return self.root / "bin"

    @property
    def ssh_dir(self) -> Path:
        """Directory of the generated host key."""
        return self.root / "etc" / "ssh"

    @property
    def host_key(self) -> Path:
        """The generated ed25519 host key (OpenSSH private key format)."""
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def services(self) -> Path:
        """Directory of persisted service definitions."""
        return self.root / "etc" / "services"

    @property
    def service_logs(self) -> Path:
        """Directory of service logs."""
        return self.root / "var" / "log" / "services"

    @property
    def run(self) -> Path:
        """Runtime directory (control socket)."""
        return self.root / "run"

    @property
    def addresses(self) -> Path:
        """The machine's current addresses, space separated, public first."""
        return self.run / "addresses"

    @property
    def control_socket(self) -> Path:
        """The supervisor's Unix control socket."""
        return self.run / "control.sock"

    def home(self, user: str) -> Path:
        """HOME of ``user`` inside the machine.

        Raises
        ------
        ValueError
            If ``user`` is not a valid user name (it becomes a path component).
        """
        if not valid_user_name(user):
            raise ValueError(f"invalid user name {user!r}")
        if user == "root":
            return self.root / "root"
        return self.root / "home" / user

    def create(self, users: list[str]) -> None:
        """Create the directory tree (mode 0700 where it matters) and the users' homes."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for directory in (self.bin, self.ssh_dir, self.services, self.service_logs, self.run):
            directory.mkdir(parents=True, exist_ok=True)
        self.run.chmod(0o700)
        self.ssh_dir.chmod(0o700)
        for user in users:
            home = self.home(user)
            if not home.exists():
                home.mkdir(parents=True, mode=0o700)
