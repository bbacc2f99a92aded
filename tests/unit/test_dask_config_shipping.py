"""What of the client's Dask configuration the nodes get (the cluster tests run it)."""

from __future__ import annotations

import copy
import dataclasses
import json

import dask.config
import pytest

from scherbelberg_dask.bootstrap import node_runner
from scherbelberg_dask.cluster.dask_config_shipping import (
    DaskConfigTooLargeError,
    capture,
    recall,
)
from tests.unit.test_bootstrap import _node_config

TOKEN = "hc-token-0123456789abcdef"


def test_only_non_default_values_are_shipped() -> None:
    with dask.config.set({"distributed.worker.memory.target": 0.55, "myproject.answer": 42}):
        shipped = capture()
    assert shipped["distributed"] == {"worker": {"memory": {"target": 0.55}}}
    assert shipped["myproject"] == {"answer": 42}
    # Defaults (ours, Dask's, dask-cloudprovider's) stay at home.
    assert "scheduler" not in shipped["distributed"]
    assert "array" not in shipped


def test_secrets_and_client_sections_are_left_out() -> None:
    with dask.config.set(
        {
            "scherbelberg.worker-type": "cpx32",
            "scherbelberg.api.token": TOKEN,
            "cloudprovider.hetzner.token": TOKEN,
            "cloudprovider.hetzner.server_type": "cpx32",
            "myproject.hcloud_token": "another-secret",
            "myproject.db.password": "hunter2",
            "myproject.url": f"https://user:{TOKEN}@example.invalid/",
            "myproject.tokenize-inputs": True,
            "distributed.comm.tls.ca-file": "/home/me/ca.pem",
            "distributed.comm.tls.client.key": "/home/me/client.key",
            "distributed.comm.tls.min-version": 1.3,
        }
    ):
        shipped = capture(secrets=[TOKEN, None])
    assert shipped == {
        "myproject": {"tokenize-inputs": True},
        "distributed": {"comm": {"tls": {"min-version": 1.3}}},
    }
    assert TOKEN not in json.dumps(shipped)


def test_excluded_keys_and_switching_off() -> None:
    with dask.config.set(
        {
            "myproject.local-path": "/home/me/data",
            "myproject.answer": 42,
            "scherbelberg.dask-config.exclude": ["myproject.local_path"],
        }
    ):
        assert capture()["myproject"] == {"answer": 42}
        with dask.config.set({"scherbelberg.dask-config.ship": False}):
            assert capture() == {}


def test_values_that_are_not_plain_data_are_skipped_with_a_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    with dask.config.set({"myproject.callback": print, "myproject.answer": 42}):
        shipped = capture()
    assert shipped["myproject"] == {"answer": 42}
    assert "myproject.callback" in caplog.text


def test_too_large_names_the_biggest_keys() -> None:
    with (
        dask.config.set(
            {
                "myproject.huge": "x" * 5000,
                "myproject.small": 1,
                "scherbelberg.dask-config.max-bytes": 1000,
            }
        ),
        pytest.raises(
            DaskConfigTooLargeError, match=r"biggest keys: myproject\.huge \(5002 bytes\)"
        ),
    ):
        capture()


def test_from_existing_recalls_what_was_stored() -> None:
    assert recall({"dask_config": {"myproject": {"answer": 42}}}) == {"myproject": {"answer": 42}}
    assert recall({"prefix": "old-cluster"}) == {}


def test_the_node_runner_applies_it_under_the_nodes_env_vars(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DASK_MYPROJECT__FROM_ENV", "node")
    saved = copy.deepcopy(dask.config.config)
    try:
        node_runner._apply_dask_config(
            dataclasses.replace(
                _node_config(), dask_config={"myproject": {"answer": 42, "from-env": "client"}}
            )
        )
        assert dask.config.get("myproject.answer") == 42
        assert dask.config.get("myproject.from-env") == "node"
    finally:  # the node runner changes this process's global config: put it back
        dask.config.config.clear()
        dask.config.config.update(saved)
