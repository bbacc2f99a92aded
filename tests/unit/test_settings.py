"""Cluster settings are validated before any I/O, with messages that name the fix."""

from __future__ import annotations

from typing import Any

import pytest

from scherbelberg_dask.cluster.settings import ClusterSettings


def test_defaults_are_current_and_cheap() -> None:
    settings = ClusterSettings.resolve()
    assert settings.prefix == "cluster"
    assert settings.worker_type == settings.scheduler_type == "cx23"
    assert (settings.ports.scheduler, settings.ports.dashboard, settings.ports.nanny) == (
        9753,
        9756,
        9759,
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prefix": "Cluster"}, "prefix"),
        ({"prefix": "a" * 31}, "prefix"),
        ({"prefix": "-ab"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"workers": -1}, "whole number"),
        ({"workers": 1.5}, "whole number"),
        ({"workers": True}, "whole number"),
        ({"workers": "2"}, "whole number"),
        ({"scheduler_port": 9756}, "clash"),
        ({"nanny_port": 70000}, "port"),
        ({"ssh_port": 9753}, "clashes"),
        ({"allowed_cidrs": ["10.0.0.1/8"]}, "CIDR"),
        ({"allowed_cidrs": ["not-a-net"]}, "CIDR"),
        ({"allowed_cidrs": []}, "non-empty"),
        ({"network_ip_range": "10.0.0.0/28"}, "/24 or larger"),
        ({"network_ip_range": "fd00::/64"}, "IPv4"),
        ({"timeouts": {"ssh": 0}}, "positive"),
        ({"env_vars": {"1BAD": "x"}}, "environment variable"),
        ({"worker_type": ""}, "non-empty"),
    ],
)
def test_invalid_settings(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterSettings.resolve(**arguments)


def test_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        ClusterSettings.resolve(colour="blue")


def test_zero_workers_is_valid() -> None:
    assert ClusterSettings.resolve(workers=0).workers == 0
