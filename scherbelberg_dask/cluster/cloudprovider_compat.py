"""dask-cloudprovider's ``HetznerCluster`` keywords and config section, understood here.

Users coming from ``dask_cloudprovider.hetzner.HetznerCluster`` switch by changing the
import.  Its keywords mean here what they mean there, or fail with a message that says
what to use instead; its config section ``cloudprovider.hetzner`` (``token``,
``location``, ``server_type``, ``image``) is read when ours says nothing.

Precedence, first wins:

1. an explicit argument (the more specific one first: ``worker_type`` or
   ``scheduler_type`` before dask-cloudprovider's ``server_type``, which means both),
2. ``scherbelberg.*`` in the Dask configuration (``scheduler-type``, ``worker-type``,
   ``image``, ``location``; the token: ``HCLOUD_TOKEN``, then ``scherbelberg.api.token``),
3. ``cloudprovider.hetzner.*`` (``server_type`` for both roles, ``image``,
   ``location``, ``token``),
4. scherbelberg-dask's defaults.

A configuration value equal to its default counts as not set (Dask keeps no record of
where a value came from), so dask-cloudprovider's own defaults, such as the retired
``cx11`` and ``ubuntu-20.04``, never override ours.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import dask.config

from scherbelberg_dask import config
from scherbelberg_dask.cluster.dask_config_shipping import non_default_config
from scherbelberg_dask.errors import SettingsError

#: The config section of dask-cloudprovider's Hetzner cluster.
SECTION = "cloudprovider.hetzner"
#: Our setting → its key in :data:`SECTION`.
CONFIG_KEYS = {
    "scheduler_type": "server_type",
    "worker_type": "server_type",
    "image": "image",
    "location": "location",
}
#: dask-cloudprovider's defaults for keywords that have no meaning here.
_DEFAULT_WORKER_CLASSES = ("dask.distributed.Nanny", "distributed.Nanny")

_NO_CONTAINERS = (
    "scherbelberg-dask runs no containers: every node gets this machine's Python "
    "version and its exact dask and distributed versions; name further pip packages "
    "with packages=[...] (or scherbelberg.packages) and environment variables with "
    "env_vars={...}"
)


def configured(name: str) -> Any:
    """The Dask config value of setting ``name`` (e.g. ``worker_type``).

    ``scherbelberg.<name>`` if set, else the matching ``cloudprovider.hetzner`` key if
    set, else our default (see the module's precedence).
    """
    ours = name.replace("_", "-")
    theirs = CONFIG_KEYS.get(name)
    if theirs is not None:
        user = non_default_config()
        if dask.config.get(f"scherbelberg.{ours}", None, config=user) is None:
            value = dask.config.get(f"{SECTION}.{theirs}", None, config=user)
            if value is not None:
                return value
    return config.get(ours)


def apply_keywords(
    keywords: Mapping[str, Any],
    *,
    workers: int | None,
    scheduler_type: str | None,
    worker_type: str | None,
) -> tuple[int | None, str | None, str | None]:
    """Translate dask-cloudprovider's keywords into ours.

    Parameters
    ----------
    keywords
        Keyword arguments ``HetznerCluster`` does not take itself.
    workers, scheduler_type, worker_type
        Our own arguments, as given.

    Returns
    -------
    tuple
        ``workers``, ``scheduler_type`` and ``worker_type`` with the translated
        keywords applied.

    Raises
    ------
    SettingsError
        A dask-cloudprovider keyword that has no meaning here; the message says what to
        use instead.
    TypeError
        A keyword neither package knows.
    """
    given = dict(keywords)
    n_workers = given.pop("n_workers", None)
    if n_workers is not None:
        if workers is not None and workers != n_workers:
            raise SettingsError(
                f"workers={workers!r} and n_workers={n_workers!r} both give the number of "
                "workers: use one of them"
            )
        workers = n_workers
    server_type = given.pop("server_type", None)
    if server_type is not None:
        scheduler_type = scheduler_type or server_type
        worker_type = worker_type or server_type
    if given.pop("debug", False):
        _debug_logging()
    if given.pop("docker_image", None) is not None:
        raise SettingsError(f"docker_image is not supported: {_NO_CONTAINERS}")
    if given.pop("docker_args", None):
        raise SettingsError(f"docker_args is not supported: {_NO_CONTAINERS}")
    if given.pop("extra_bootstrap", None):
        raise SettingsError(
            "extra_bootstrap is not supported: nodes are set up over SSH by "
            "scherbelberg-dask, not by cloud-init commands; name pip packages with "
            "packages=[...] (or scherbelberg.packages), environment variables with "
            "env_vars={...}, and Dask options with worker_options/scheduler_options"
        )
    if given.pop("bootstrap", None) is False:
        raise SettingsError(
            "bootstrap=False (an image that already has Docker) has no meaning here: "
            "nodes run no containers, and scherbelberg-dask always sets them up itself"
        )
    worker_class = given.pop("worker_class", None)
    if worker_class is not None and worker_class not in _DEFAULT_WORKER_CLASSES:
        raise SettingsError(
            f"worker_class={worker_class!r} is not supported: every node runs a "
            "distributed Nanny with its worker; pass Worker options in worker_options"
        )
    protocol = given.pop("protocol", None)
    if protocol not in (None, "tls"):
        raise SettingsError(
            f"protocol={protocol!r} is not supported: scherbelberg-dask always uses "
            "mutual TLS (protocol 'tls')"
        )
    if given:
        names = ", ".join(repr(name) for name in sorted(given))
        raise TypeError(
            f"HetznerCluster() got an unexpected keyword argument {names}"
            if len(given) == 1
            else f"HetznerCluster() got unexpected keyword arguments {names}"
        )
    return workers, scheduler_type, worker_type


def _debug_logging() -> None:
    """dask-cloudprovider's ``debug=True``: show what the cluster does, step by step."""
    package = logging.getLogger("scherbelberg_dask")
    package.setLevel(logging.DEBUG)
    if not package.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        package.addHandler(handler)
