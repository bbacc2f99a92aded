"""SSH session objects of emulated machines.

:class:`NodeProcess` is asyncssh's server process with hooks: signals, breaks and window
changes from the client and the loss of the channel are delivered to callbacks instead
of being queued into stdin, so they reach the running process at any time (also after
the client sent EOF).  :class:`RefusingSession` answers every request of a machine whose
image does not execute commands.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Mapping

import asyncssh

from .interface import EMULATOR_IMAGE_NAME

logger = logging.getLogger(__name__)

SignalHook = Callable[[str], None]
ResizeHook = Callable[[int, int, int, int], None]
LostHook = Callable[[], None]

#: Exit status of a refused request (like a shell's "command cannot execute").
REFUSED_STATUS = 126


def refusal_message(image_name: str) -> str:
    """The message a non-executing machine writes to stderr."""
    from ..debian import unavailable_reason

    reason = unavailable_reason(image_name)
    if reason is not None:
        return f"scherbelberg-emulator: this server runs image {image_name!r}, but {reason}"
    return (
        f"scherbelberg-emulator: this server runs image {image_name!r}; the local emulator "
        f"only executes commands on image {EMULATOR_IMAGE_NAME!r} and on Debian images "
        f"({', '.join(sorted(_debian_images()))})"
    )


def _debian_images() -> list[str]:
    from ..debian import DEBIAN_IMAGES

    return list(DEBIAN_IMAGES)


class NodeProcess(asyncssh.SSHServerProcess[bytes]):
    """An SSH server process whose out-of-band events go to callbacks.

    Until a handler installs hooks, signals and breaks are dropped (there is no process
    yet to deliver them to) and window changes are only recorded by the channel (the
    handler reads the current size when it starts the process).
    """

    on_signal: SignalHook | None = None
    on_resize: ResizeHook | None = None
    on_lost: LostHook | None = None

    def signal_received(self, signal: str) -> None:
        """Deliver a client signal (name without ``SIG``)."""
        if self.on_signal is not None:
            self.on_signal(signal)

    def break_received(self, msec: int) -> bool:
        """Treat a break like sshd does: as SIGINT."""
        if self.on_signal is not None:
            self.on_signal("INT")
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        """Deliver a window change."""
        if self.on_resize is not None:
            self.on_resize(width, height, pixwidth, pixheight)

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the handler that the channel is gone, then let asyncssh clean up."""
        hook = self.on_lost
        self.on_lost = None
        if hook is not None:
            try:
                hook()
            except Exception:  # pragma: no cover - hooks only close descriptors
                logger.exception("session close hook failed")
        super().connection_lost(exc)


def signal_number(name: str) -> int | None:
    """Map an SSH signal name (``TERM``) to a local signal number."""
    sig = getattr(signal, f"SIG{name}", None)
    return int(sig) if isinstance(sig, signal.Signals) else None


def report_exit(process: asyncssh.SSHServerProcess[bytes], returncode: int) -> None:
    """Report a local exit status (negative: killed by a signal) to the client."""
    with contextlib.suppress(OSError, asyncssh.Error):
        if returncode >= 0:
            process.exit(returncode)
            return
        try:
            name = signal.Signals(-returncode).name.removeprefix("SIG")
        except ValueError:
            process.exit(128 - returncode)
            return
        process.exit_with_signal(name)


def fail(process: asyncssh.SSHServerProcess[bytes], message: str, status: int) -> None:
    """Write ``message`` to the client's stderr and end the session with ``status``."""
    newline = "\r\n" if process.term_type else "\n"
    with contextlib.suppress(OSError, asyncssh.Error):
        process.stderr.write((message + newline).encode())
        process.exit(status)


class RefusingSession(asyncssh.SSHServerSession[bytes]):
    """Session of a non-executing machine: accepts every request, then refuses it.

    Accepting first and refusing afterwards lets the client show the reason on stderr
    and exit with :data:`REFUSED_STATUS`, for exec, shell and subsystems (SFTP) alike.
    """

    def __init__(self, image_name: str) -> None:
        self._image_name = image_name
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._pty = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        """Remember the channel."""
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        """Accept (the refusal comes when the session starts)."""
        self._pty = True
        return True

    def shell_requested(self) -> bool:
        """Accept (the refusal comes when the session starts)."""
        return True

    def exec_requested(self, command: str) -> bool:
        """Accept (the refusal comes when the session starts)."""
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        """Accept (the refusal comes when the session starts)."""
        return True

    def session_started(self) -> None:
        """Refuse: message on stderr, exit status 126."""
        chan = self._chan
        if chan is None:  # pragma: no cover - asyncssh always calls connection_made first
            return
        newline = "\r\n" if self._pty else "\n"
        logger.info("refused a session on image %r", self._image_name)
        with contextlib.suppress(OSError, asyncssh.Error):
            chan.write_stderr((refusal_message(self._image_name) + newline).encode())
            chan.exit(REFUSED_STATUS)
