"""Apply the terminal modes an SSH client sends (RFC 4254 §8) to a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import struct
import termios
from collections.abc import Mapping

import asyncssh.constants as c

logger = logging.getLogger(__name__)

# (index into the termios attribute list, flag) per boolean mode opcode.
_IFLAG, _OFLAG, _CFLAG, _LFLAG, _CC = 0, 1, 2, 3, 6

_FLAG_MODES: dict[int, tuple[int, str]] = {
    c.PTY_IGNPAR: (_IFLAG, "IGNPAR"),
    c.PTY_PARMRK: (_IFLAG, "PARMRK"),
    c.PTY_INPCK: (_IFLAG, "INPCK"),
    c.PTY_ISTRIP: (_IFLAG, "ISTRIP"),
    c.PTY_INLCR: (_IFLAG, "INLCR"),
    c.PTY_IGNCR: (_IFLAG, "IGNCR"),
    c.PTY_ICRNL: (_IFLAG, "ICRNL"),
    c.PTY_IXON: (_IFLAG, "IXON"),
    c.PTY_IXANY: (_IFLAG, "IXANY"),
    c.PTY_IXOFF: (_IFLAG, "IXOFF"),
    c.PTY_IMAXBEL: (_IFLAG, "IMAXBEL"),
    c.PTY_IUTF8: (_IFLAG, "IUTF8"),
    c.PTY_ISIG: (_LFLAG, "ISIG"),
    c.PTY_ICANON: (_LFLAG, "ICANON"),
    c.PTY_ECHO: (_LFLAG, "ECHO"),
    c.PTY_ECHOE: (_LFLAG, "ECHOE"),
    c.PTY_ECHOK: (_LFLAG, "ECHOK"),
    c.PTY_ECHONL: (_LFLAG, "ECHONL"),
    c.PTY_NOFLSH: (_LFLAG, "NOFLSH"),
    c.PTY_TOSTOP: (_LFLAG, "TOSTOP"),
    c.PTY_IEXTEN: (_LFLAG, "IEXTEN"),
    c.PTY_ECHOCTL: (_LFLAG, "ECHOCTL"),
    c.PTY_ECHOKE: (_LFLAG, "ECHOKE"),
    c.PTY_PENDIN: (_LFLAG, "PENDIN"),
    c.PTY_OPOST: (_OFLAG, "OPOST"),
    c.PTY_ONLCR: (_OFLAG, "ONLCR"),
    c.PTY_OCRNL: (_OFLAG, "OCRNL"),
    c.PTY_ONOCR: (_OFLAG, "ONOCR"),
    c.PTY_ONLRET: (_OFLAG, "ONLRET"),
    c.PTY_PARENB: (_CFLAG, "PARENB"),
    c.PTY_PARODD: (_CFLAG, "PARODD"),
}

_CHAR_MODES: dict[int, str] = {
    c.PTY_VINTR: "VINTR",
    c.PTY_VQUIT: "VQUIT",
    c.PTY_VERASE: "VERASE",
    c.PTY_VKILL: "VKILL",
    c.PTY_VEOF: "VEOF",
    c.PTY_VEOL: "VEOL",
    c.PTY_VEOL2: "VEOL2",
    c.PTY_VSTART: "VSTART",
    c.PTY_VSTOP: "VSTOP",
    c.PTY_VSUSP: "VSUSP",
    c.PTY_VREPRINT: "VREPRINT",
    c.PTY_WERASE: "VWERASE",
    c.PTY_VLNEXT: "VLNEXT",
    c.PTY_VDISCARD: "VDISCARD",
}

_VDISABLE = 255  # RFC 4254: 255 means "not used"


def apply_modes(fd: int, modes: Mapping[int, int]) -> None:
    """Apply SSH terminal ``modes`` (opcode -> value) to the tty ``fd``.

    Unknown opcodes and flags this platform lacks are ignored; errors are logged, not
    raised (a terminal with default modes is still usable).
    """
    if not modes:
        return
    try:
        attrs = termios.tcgetattr(fd)
    except termios.error as exc:
        logger.debug("cannot read terminal attributes: %s", exc)
        return
    cc = list(attrs[_CC])
    for opcode, value in modes.items():
        if opcode in _FLAG_MODES:
            index, name = _FLAG_MODES[opcode]
            flag = getattr(termios, name, None)
            if flag is None:
                continue
            attrs[index] = (attrs[index] | flag) if value else (attrs[index] & ~flag)
        elif opcode in _CHAR_MODES:
            slot = getattr(termios, _CHAR_MODES[opcode], None)
            if slot is None or slot >= len(cc):
                continue
            char = 0 if value == _VDISABLE else value & 0xFF
            cc[slot] = bytes([char]) if isinstance(cc[slot], bytes) else char
        elif opcode in (c.PTY_CS7, c.PTY_CS8) and value:
            size = termios.CS7 if opcode == c.PTY_CS7 else termios.CS8
            attrs[_CFLAG] = (attrs[_CFLAG] & ~termios.CSIZE) | size
    attrs[_CC] = cc
    try:
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as exc:
        logger.debug("cannot set terminal attributes: %s", exc)


def set_window_size(fd: int, columns: int, rows: int, xpixels: int = 0, ypixels: int = 0) -> None:
    """Set the window size of the terminal ``fd`` (the kernel signals SIGWINCH)."""
    if columns <= 0 or rows <= 0:
        columns, rows = 80, 24
    size = struct.pack("HHHH", rows, columns, xpixels, ypixels)
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
