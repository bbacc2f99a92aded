"""The CLI reference page is in step with the parser; help and small helpers behave."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scherbelberg_dask.cli import build_parser, main
from scherbelberg_dask.cli.inspect import billed_cost
from scherbelberg_dask.cli.reference import render
from scherbelberg_dask.cloud.catalog import Price

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_reference_page_matches_the_parser() -> None:
    page = (DOCS / "cli.md").read_text()
    assert page == render(), (
        "docs/cli.md is out of date: python -m scherbelberg_dask.cli.reference > docs/cli.md"
    )


def test_reference_page_documents_every_verb_and_option() -> None:
    page = render()
    for name, parser in _verbs().items():
        assert f"## `{name}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, f"{name} {flag} missing"
    assert "cli\n" in (DOCS / "index.md").read_text().split("```{toctree}")[1]


def test_the_seed_verbs_and_flags_exist() -> None:
    verbs = _verbs()
    for name in ("create", "ls", "ssh", "destroy", "nuke"):
        assert name in verbs
    flags = {f for a in verbs["create"]._actions for f in a.option_strings}
    assert {"--workers", "--worker", "--scheduler", "--image", "--location", "--prefix"} <= flags
    for name, parser in verbs.items():
        # attach: the cluster is named by the bundle it installs; images: snapshots
        # belong to no cluster.
        if name not in ("emulator", "demo", "catalog", "bootstrap-script", "attach", "images"):
            assert "--prefix" in {f for a in parser._actions for f in a.option_strings}, name


@pytest.mark.parametrize("verb", sorted(_verbs()))
def test_help_of_every_verb(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    assert f"scherbelberg-dask {verb}" in capsys.readouterr().out


def test_log_level_after_the_verb_and_in_lower_case() -> None:
    parser = build_parser()
    assert parser.parse_args(["ls", "-l", "debug"]).log_level == "DEBUG"
    assert parser.parse_args(["-l", "WARNING", "ls"]).log_level == "WARNING"
    assert parser.parse_args(["ls"]).log_level == "INFO"


def test_cost_is_billed_per_started_hour_up_to_the_monthly_price() -> None:
    price = Price("fsn1", hourly_net=0.01, hourly_gross=0.0119, monthly_net=5.0, monthly_gross=5.95)
    assert billed_cost(price, 1) == pytest.approx(0.01)
    assert billed_cost(price, 3600) == pytest.approx(0.01)
    assert billed_cost(price, 3601) == pytest.approx(0.02)
    assert billed_cost(price, 1000 * 3600) == pytest.approx(5.0)
