"""Local files of one cluster (keys, certificates, known_hosts, metadata)."""

from .statedir import (
    CONFIG_KEY,
    InsecureStateError,
    StateDir,
    StateDirError,
    default_base_dir,
    list_prefixes,
)

__all__ = [
    "CONFIG_KEY",
    "InsecureStateError",
    "StateDir",
    "StateDirError",
    "default_base_dir",
    "list_prefixes",
]
