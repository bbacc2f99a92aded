"""The client's Dask configuration, shipped to every node of a cluster.

``SSHCluster`` and dask-cloudprovider hand each process the client's non-default
configuration (``DASK_INTERNAL_INHERIT_CONFIG``); this module does the same for
scherbelberg-dask.  :func:`capture` takes the non-default part of :mod:`dask.config`
(pruned with dask-cloudprovider's own helper), removes what is secret or meaningless on
a node, and checks its size.  The result travels in the node's ``node.json`` (mode 0600,
over SFTP) and the node runner applies it before the Dask scheduler or nanny starts; the
nanny hands it on to its worker process.

What is never shipped:

- the ``scherbelberg`` and ``cloudprovider`` sections (the API token, our own settings:
  nodes need none of them),
- keys whose name says they are secret (``token``, ``password``, ``secret``,
  ``credential``, ``private-key``, ``api-key``) and any string holding the API token,
- the client's TLS file paths (``distributed.comm.tls.*.cert``, ``.key``, ``ca-file``):
  nodes have certificates of their own,
- what ``scherbelberg.dask-config.exclude`` names (dotted keys).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import dask.config

from scherbelberg_dask import config
from scherbelberg_dask.errors import SettingsError

logger = logging.getLogger(__name__)

#: Top-level sections that configure the client side only (and hold the API token).
CLIENT_SECTIONS = frozenset({"scherbelberg", "cloudprovider"})
#: Names that mark a key as secret: whole words of it (``_`` read as ``-``), so that
#: ``hetzner-token`` is secret and ``tokenize`` is not.
_SECRET_NAME = re.compile(
    r"(^|-)(tokens?|passwords?|passwd|secrets?|credentials?|private-key|api-key)($|-)"
)
#: Keys below ``distributed.comm.tls`` that are paths to the client's own TLS files.
_TLS_FILES = frozenset({"ca-file", "cert", "key"})


class DaskConfigTooLargeError(SettingsError):
    """The configuration to ship is larger than ``scherbelberg.dask-config.max-bytes``."""


def non_default_config() -> dict[str, Any]:
    """The part of :mod:`dask.config` that differs from every registered default.

    A value equal to its default counts as not set: Dask's configuration keeps no record
    of where a value came from (YAML, ``DASK_*`` variables or ``dask.config.set``).
    """
    # Imported here, not with our package: importing dask-cloudprovider registers its
    # config defaults (so that they are pruned too) and, its own habit, places a
    # commented-out copy of them in ~/.config/dask/cloudprovider.yaml if none is there.
    from dask_cloudprovider.utils.config_helper import prune_defaults

    defaults = dask.config.merge(*dask.config.defaults)
    return prune_defaults(copy.deepcopy(dask.config.config), defaults)


def capture(*, secrets: Iterable[str | None] = ()) -> dict[str, Any]:
    """The client's Dask configuration as the nodes get it, as of now.

    Parameters
    ----------
    secrets
        Strings that must not reach the nodes in any value (the API token).

    Returns
    -------
    dict
        Nested plain data (JSON), ``{}`` if ``scherbelberg.dask-config.ship`` is false.

    Raises
    ------
    DaskConfigTooLargeError
        The result is larger than ``scherbelberg.dask-config.max-bytes``; the message
        names the biggest keys (never values).
    """
    if not config.get("dask-config.ship", True):
        return {}
    excluded = {_canonical(key) for key in config.get("dask-config.exclude", None) or ()}
    hidden = tuple(s for s in secrets if s)
    shipped = _filter(non_default_config(), (), excluded, hidden)
    limit = int(config.get("dask-config.max-bytes", 65536))
    size = _size(shipped)
    if size > limit:
        raise DaskConfigTooLargeError(
            f"the Dask configuration to ship to the nodes is {size} bytes (as JSON), more "
            f"than scherbelberg.dask-config.max-bytes ({limit}); biggest keys: "
            f"{_biggest(shipped)}. Leave out what the nodes do not need with "
            "scherbelberg.dask-config.exclude (a list of dotted keys), or raise the limit"
        )
    if shipped:
        logger.debug("Shipping Dask configuration to the nodes: %s", ", ".join(sorted(shipped)))
    return shipped


def recall(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration a cluster's creator shipped, from its local state's metadata."""
    shipped = metadata.get("dask_config")
    return dict(shipped) if isinstance(shipped, Mapping) else {}


def _canonical(key: str) -> str:
    return str(key).replace("_", "-").lower()


def _filter(
    section: Mapping[str, Any], path: tuple[str, ...], excluded: set[str], secrets: tuple[str, ...]
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in section.items():
        here = (*path, _canonical(key))
        dotted = ".".join(here)
        if (
            dotted in excluded
            or (not path and here[0] in CLIENT_SECTIONS)
            or _SECRET_NAME.search(here[-1])
            or (here[:3] == ("distributed", "comm", "tls") and here[-1] in _TLS_FILES)
        ):
            continue
        if isinstance(value, Mapping):
            nested = _filter(value, here, excluded, secrets)
            if nested:
                kept[key] = nested
            continue
        if _holds_secret(value, secrets):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            logger.warning(
                "Not shipping Dask config key %s to the nodes: a %s is not plain data",
                dotted,
                type(value).__name__,
            )
            continue
        kept[key] = value
    return kept


def _holds_secret(value: Any, secrets: tuple[str, ...]) -> bool:
    if isinstance(value, str):
        return any(secret in value for secret in secrets)
    if isinstance(value, (list, tuple)):
        return any(_holds_secret(item, secrets) for item in value)
    return False


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _biggest(shipped: Mapping[str, Any], count: int = 5) -> str:
    """The largest leaves and sections, as ``key (n bytes)``."""
    sizes: list[tuple[int, str]] = []

    def walk(section: Mapping[str, Any], path: str) -> None:
        for key, value in section.items():
            dotted = f"{path}.{key}" if path else str(key)
            if isinstance(value, Mapping) and value:
                walk(value, dotted)
            else:
                sizes.append((_size(value), dotted))

    walk(shipped, "")
    top = sorted(sizes, reverse=True)[:count]
    sections = sorted(((_size(v), str(k)) for k, v in shipped.items()), reverse=True)[:3]
    leaves = ", ".join(f"{key} ({size} bytes)" for size, key in top)
    whole = ", ".join(f"{key} ({size} bytes)" for size, key in sections)
    return f"{leaves}; by section: {whole}"
