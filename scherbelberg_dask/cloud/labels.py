"""Labels that mark what a cluster owns: found by labels, never by name.

See docs/design.md, "Cloud".
"""

from __future__ import annotations

import re

from scherbelberg_dask.errors import SettingsError

#: Label key naming the cluster (its prefix) a resource belongs to.
CLUSTER = "scherbelberg/cluster"
#: Label key naming the role: scheduler, worker, network, firewall, ssh-key.
ROLE = "scherbelberg/role"
#: Label key naming a node (``scheduler``, ``worker000``, ...).
NODE = "scherbelberg/node"
#: Label of an autonomous cluster's scheduler server (``true``; docs/autonomous.md).
AUTONOMOUS = "scherbelberg/autonomous"
#: Labels its controller keeps current there: Unix seconds since when the cluster has
#: been idle, and at which it deletes itself at the latest (``none``: not set).
IDLE_SINCE = "scherbelberg/idle-since"
DELETE_AT = "scherbelberg/delete-at"

_PREFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")
#: A prefix ends up in ``<prefix>-node-worker000`` (a hostname label of ≤ 63 characters) and
#: in a label value (≤ 63 characters).
MAX_PREFIX_LENGTH = 30


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it names a cluster validly, else raise ``SettingsError``.

    A prefix becomes part of hostnames and label values: lowercase letters, digits and
    ``-``, starting and ending with a letter or digit, at most 30 characters.
    """
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise SettingsError(
            f"invalid cluster prefix {prefix!r}: use 1 to {MAX_PREFIX_LENGTH} lowercase letters, "
            "digits and '-', starting and ending with a letter or digit (e.g. 'cluster', 'team-a')"
        )
    return prefix


def cluster_labels(prefix: str, role: str, node: str | None = None) -> dict[str, str]:
    """Labels for a resource of cluster ``prefix`` with ``role`` (and ``node`` for servers)."""
    labels = {CLUSTER: prefix, ROLE: role}
    if node is not None:
        labels[NODE] = node
    return labels


def cluster_selector(prefix: str, role: str | None = None) -> str:
    """Label selector matching exactly the resources of cluster ``prefix``."""
    selector = f"{CLUSTER}={prefix}"
    if role is not None:
        selector += f",{ROLE}={role}"
    return selector
