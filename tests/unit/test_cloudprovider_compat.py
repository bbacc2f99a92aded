"""dask-cloudprovider's keywords and config section, and their precedence here."""

from __future__ import annotations

import logging

import dask.config
import pytest

from scherbelberg_dask import config
from scherbelberg_dask.cluster.cloudprovider_compat import apply_keywords
from scherbelberg_dask.cluster.settings import ClusterSettings


def _types(**arguments: object) -> tuple[str, str]:
    settings = ClusterSettings.resolve(**arguments)
    return settings.scheduler_type, settings.worker_type


def test_dask_cloudprovider_defaults_never_override_ours() -> None:
    settings = ClusterSettings.resolve()
    # Its YAML (loaded by now) says cx11 and ubuntu-20.04 (retired): not choices.
    assert dask.config.get("cloudprovider.hetzner.server_type") == "cx11"
    assert (settings.worker_type, settings.image, settings.location) == (
        "cx23",
        "ubuntu-24.04",
        "fsn1",
    )


def test_cloudprovider_section_is_used_when_ours_says_nothing() -> None:
    with dask.config.set(
        {
            "cloudprovider.hetzner.server_type": "cpx22",
            "cloudprovider.hetzner.image": "debian-12",
            "cloudprovider.hetzner.location": "hel1",
        }
    ):
        settings = ClusterSettings.resolve()
    assert (settings.scheduler_type, settings.worker_type) == ("cpx22", "cpx22")
    assert (settings.image, settings.location) == ("debian-12", "hel1")


def test_precedence_argument_then_ours_then_cloudprovider_then_defaults() -> None:
    with dask.config.set({"cloudprovider.hetzner.server_type": "cpx22"}):
        assert _types() == ("cpx22", "cpx22")
        with dask.config.set({"scherbelberg.worker-type": "cx33"}):
            assert _types() == ("cpx22", "cx33")
            assert _types(worker_type="cx43") == ("cpx22", "cx43")


def test_keywords_translate() -> None:
    assert apply_keywords(
        {"n_workers": 3, "server_type": "cpx32"},
        workers=None,
        scheduler_type=None,
        worker_type=None,
    ) == (3, "cpx32", "cpx32")
    # The more specific argument wins over server_type, which means both roles.
    assert apply_keywords(
        {"server_type": "cpx32"}, workers=2, scheduler_type="cx23", worker_type=None
    ) == (2, "cx23", "cpx32")
    # dask-cloudprovider's own defaults are accepted as what they are here.
    assert apply_keywords(
        {
            "worker_class": "dask.distributed.Nanny",
            "protocol": "tls",
            "docker_args": "",
            "bootstrap": True,
        },
        workers=None,
        scheduler_type=None,
        worker_type=None,
    ) == (None, None, None)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"docker_image": "daskdev/dask:latest"}, "runs no containers.*packages="),
        ({"docker_args": "--gpus all"}, "runs no containers"),
        ({"extra_bootstrap": ["pip install zarr"]}, "packages=.*env_vars="),
        ({"worker_class": "dask_cuda.CUDAWorker"}, "Nanny"),
        ({"bootstrap": False}, "no containers"),
        ({"protocol": "tcp"}, "mutual TLS"),
        ({"n_workers": 2, "workers_": 1}, "unexpected keyword argument 'workers_'"),
        ({"a": 1, "b": 2}, "unexpected keyword arguments 'a', 'b'"),
    ],
)
def test_keywords_without_meaning_here_say_what_to_use(keywords, message) -> None:  # type: ignore[no-untyped-def]
    error = TypeError if "unexpected" in message else ValueError
    with pytest.raises(error, match=message):
        apply_keywords(keywords, workers=None, scheduler_type=None, worker_type=None)


def test_workers_and_n_workers_must_agree() -> None:
    with pytest.raises(ValueError, match="use one of them"):
        apply_keywords({"n_workers": 2}, workers=3, scheduler_type=None, worker_type=None)


def test_debug_shows_our_debug_messages() -> None:
    package = logging.getLogger("scherbelberg_dask")
    level, handlers = package.level, list(package.handlers)
    try:
        apply_keywords({"debug": True}, workers=None, scheduler_type=None, worker_type=None)
        assert package.isEnabledFor(logging.DEBUG)
    finally:
        package.setLevel(level)
        package.handlers[:] = handlers


def test_token_from_cloudprovider_section_comes_last(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    with dask.config.set({"cloudprovider.hetzner.token": "from-cloudprovider"}):
        assert config.api_token() == "from-cloudprovider"
        with dask.config.set({"scherbelberg.api.token": "ours"}):
            assert config.api_token() == "ours"
            monkeypatch.setenv("HCLOUD_TOKEN", "from-env")
            assert config.api_token() == "from-env"
            assert config.api_token("argument") == "argument"
