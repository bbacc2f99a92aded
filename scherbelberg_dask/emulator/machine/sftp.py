"""SFTP confined to the logged-in user's HOME.

asyncssh's ``chroot`` maps client paths below HOME and normalises ``..`` away; on top of
that every mapped path is resolved and must stay inside HOME, so symlinks pointing out of
HOME (made, say, with ``ln -s /etc x`` over exec) cannot be followed either.  "/" and
relative paths of the client both mean HOME.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


class HomeSFTPServer(asyncssh.SFTPServer):
    """An SFTP server whose root is ``home``.

    Parameters
    ----------
    chan
        The session channel.
    home
        The user's HOME on the host (must exist).
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], home: Path) -> None:
        self._home = os.fsencode(os.path.realpath(home))
        super().__init__(chan, chroot=self._home)

    def map_path(self, path: bytes) -> bytes:
        """Map a client path below HOME; refuse paths that resolve outside it."""
        mapped = super().map_path(path)
        resolved = os.path.realpath(mapped)
        if resolved != self._home and not resolved.startswith(self._home + b"/"):
            raise asyncssh.SFTPPermissionDenied("path leads outside the home directory")
        return mapped

    def exit(self) -> None:
        """Report exit status 0 when the session ends, like OpenSSH's sftp-server.

        OpenSSH's ``scp`` (SFTP mode) treats a session without an exit status as failed.
        """
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.exit(0)
