"""What this machine may do with a cluster, judged by the keys its local state holds.

A machine that created a cluster holds everything (``owner``).  A machine that installed
an access bundle (:mod:`scherbelberg_dask.state.bundle`) holds what its kind gave it:
``operator`` (the cluster's SSH key and a node certificate: ``ssh``, ``logs``,
``dashboard``, ``scale``, ``destroy``) or ``dask`` (a client certificate: ``Client``
only).  The guard is ours, not Hetzner's: anyone with an API token of the project can
delete its servers (``nuke``, the Hetzner console); sharing Dask-only access keeps a
teammate from doing so *by accident with this tool*, not by force.
"""

from __future__ import annotations

from ..errors import UserError
from .statedir import StateDir

__all__ = ["ACCESS_LEVELS", "DASK", "OPERATOR", "OWNER", "AccessError", "access_of", "require"]

#: Created here: the CA's private key, the SSH key, the client certificate.
OWNER = "owner"
#: An operator bundle: the SSH key, pinned host keys, a node and a client certificate.
OPERATOR = "operator"
#: A Dask-only bundle: a client certificate and the CA certificate.
DASK = "dask"
#: Levels from most to least; each allows what the ones after it allow.
ACCESS_LEVELS = (OWNER, OPERATOR, DASK)


class AccessError(UserError, PermissionError):
    """This machine's access to a cluster does not allow what was asked."""


def access_of(state: StateDir) -> str | None:
    """``owner``, ``operator``, ``dask``, or ``None`` (no usable local state)."""
    if not state.exists():
        return None
    if state.has(StateDir.SSH_KEY):
        return OWNER if state.has(StateDir.CA_KEY) else OPERATOR
    if state.has(StateDir.CLIENT_CERT) and state.has(StateDir.CLIENT_KEY):
        return DASK
    return None


def require(state: StateDir, needed: str, action: str) -> None:
    """Raise :class:`AccessError` unless this machine's access to the cluster allows
    ``action`` (which needs at least ``needed``: ``operator`` or ``owner``).

    A missing local state is not judged here (the caller's lookup reports it).
    """
    have = access_of(state)
    if have is None and not state.exists():
        return
    if have is not None and ACCESS_LEVELS.index(have) <= ACCESS_LEVELS.index(needed):
        return
    what = {
        DASK: "Dask-only access (a client certificate, no SSH key)",
        None: "no usable keys",
    }.get(have, f"{have} access")
    hint = (
        "ask its owner for an operator bundle ('share --kind operator')"
        if needed == OPERATOR
        else "only the machine that created it (or one given its CA key) can"
    )
    raise AccessError(f"cannot {action} cluster {state.prefix!r}: this machine has {what}; {hint}")
