"""Pure functions over the text of an OpenSSH ``known_hosts`` file.

Only the plain (unhashed, no wildcard, no marker) form that this project writes is
understood; other lines are kept untouched but never matched.  File I/O lives in
:mod:`scherbelberg_dask.state`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .sshkeys import _known_hosts_pattern, known_hosts_line

__all__ = ["host_keys_for", "remove_host", "set_host_key"]

logger = logging.getLogger(__name__)


def _split(line: str) -> tuple[list[str], str] | None:
    """Return ``(patterns, "type base64")`` of a plain entry, or None for anything else."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or stripped.startswith("@"):
        return None
    parts = stripped.split()
    if len(parts) < 3:
        return None
    return parts[0].split(","), f"{parts[1]} {parts[2]}"


def host_keys_for(text: str, host: str, port: int) -> list[str]:
    """Public keys (``"type base64"``) pinned for ``host`` on ``port`` in ``text``."""
    pattern = _known_hosts_pattern(host, port)
    found: list[str] = []
    for line in text.splitlines():
        entry = _split(line)
        if entry is not None and pattern in entry[0]:
            found.append(entry[1])
    return found


def remove_host(text: str, host: str | Sequence[str], port: int) -> str:
    """Return ``text`` without any entry for ``host`` (one or several) on ``port``.

    A line that names other hosts too keeps them; a line left without hosts is dropped.
    """
    hosts = [host] if isinstance(host, str) else list(host)
    drop = {_known_hosts_pattern(h, port) for h in hosts}
    out: list[str] = []
    for line in text.splitlines():
        entry = _split(line)
        if entry is None or not drop.intersection(entry[0]):
            out.append(line)
            continue
        keep = [p for p in entry[0] if p not in drop]
        if keep:
            rest = line.strip().split(None, 1)[1]
            out.append(f"{','.join(keep)} {rest}")
    return "".join(f"{line}\n" for line in out)


def set_host_key(text: str, host: str | Sequence[str], port: int, public_key: str) -> str:
    """Return ``text`` with ``public_key`` as the only key pinned for ``host`` on ``port``.

    Existing entries for the host(s) are removed first: an address that a new server
    reuses must not keep the old server's key.
    """
    line = known_hosts_line(host, port, public_key)
    return remove_host(text, host, port) + line + "\n"
