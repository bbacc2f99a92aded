"""Configuration defaults, merged into :mod:`dask.config` under ``scherbelberg``.

Values are read with :func:`get`; environment variables follow Dask's convention
(``DASK_SCHERBELBERG__WORKER_TYPE=cpx32``).  The API token and endpoint also honour
Hetzner's own ``HCLOUD_TOKEN`` and ``HCLOUD_ENDPOINT``.
"""

from __future__ import annotations

import copy
import functools
import os
from importlib.resources import files
from typing import Any

import dask.config
import yaml


@functools.lru_cache(maxsize=1)
def _defaults_document() -> dict[str, Any]:
    return dict(
        yaml.safe_load(files("scherbelberg_dask").joinpath("scherbelberg.yaml").read_text())
    )


def builtin_defaults() -> dict[str, Any]:
    """The package's own defaults (``scherbelberg.yaml``), whatever the user configured."""
    return copy.deepcopy(_defaults_document()["scherbelberg"])


dask.config.update_defaults(_defaults_document())


def get(key: str, default: Any = None) -> Any:
    """Return ``scherbelberg.<key>`` from the Dask configuration."""
    return dask.config.get(f"scherbelberg.{key}", default=default)


def api_endpoint(override: str | None = None) -> str:
    """The API endpoint: argument, ``HCLOUD_ENDPOINT``, then ``scherbelberg.api.endpoint``."""
    return override or os.environ.get("HCLOUD_ENDPOINT") or str(get("api.endpoint"))


def api_token(override: str | None = None) -> str | None:
    """The API token, from the first place that has one.

    The argument, ``HCLOUD_TOKEN``, ``scherbelberg.api.token``, then dask-cloudprovider's
    ``cloudprovider.hetzner.token``.  The token is never written to disk or logs by this package.
    """
    return (
        override
        or os.environ.get("HCLOUD_TOKEN")
        or get("api.token")
        or dask.config.get("cloudprovider.hetzner.token", default=None)
    )
