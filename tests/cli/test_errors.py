"""Expected errors: one clear line, a non-zero exit, nothing created, no token shown.

The cases run as concurrent processes (one fixture), then each test checks its own.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterator

import pytest

from scherbelberg_dask.emulator.pytest_plugin import free_port
from tests.cli.conftest import CLI, error_lines


@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


#: name -> (argv after the program, environment changes; None removes a variable)
CASES: dict[str, tuple[list[str], dict[str, str | None]]] = {
    "unknown-prefix-ls": (["ls", "--prefix", "nosuch"], {}),
    "unknown-prefix-ssh": (["ssh", "--prefix", "nosuch", "scheduler", "true"], {}),
    "unknown-prefix-destroy": (["destroy", "--prefix", "nosuch"], {}),
    "unknown-prefix-debug": (["ls", "--prefix", "nosuch", "-l", "DEBUG"], {}),
    "bad-type": (["create", "--prefix", "badtype", "--worker", "cx99"], {}),
    "bad-location": (["create", "--prefix", "badloc", "--location", "atlantis"], {}),
    "retired-error": (
        [
            "create",
            "--prefix",
            "strict",
            "--workers",
            "1",
            "--worker",
            "ccx52",
            "--scheduler",
            "ccx12",
            "--retired-types",
            "error",
        ],
        {},
    ),
    "retired-config": (
        ["create", "--prefix", "strictcfg", "--worker", "ccx52"],
        {"DASK_SCHERBELBERG__RETIRED_TYPES": "error"},
    ),
    "old-image": (["create", "--prefix", "oldimage", "--image", "ubuntu-20.04"], {}),
    "missing-token": (["create", "--prefix", "notoken"], {"HCLOUD_TOKEN": None}),
    "unreachable": (["create", "--prefix", "unreach"], {"HCLOUD_ENDPOINT": "CLOSED"}),
}
PREFIXES = ("nosuch", "badtype", "badloc", "notoken", "unreach", "strict", "strictcfg", "oldimage")


@pytest.fixture(scope="module")
def outcomes(cli: CLI) -> Iterator[dict[str, Outcome]]:
    before = cli.emulator.counts()
    closed = f"http://127.0.0.1:{free_port()}/v1"
    processes = {}
    for name, (args, changes) in CASES.items():
        env = dict(cli.env)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = closed if value == "CLOSED" else value
        processes[name] = subprocess.Popen(
            cli.argv(*args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=120)
            results[name] = Outcome(process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    yield results
    # Nothing was created by any of them, in the cloud or locally.
    assert cli.emulator.counts() == before
    for prefix in PREFIXES:
        assert all(not items for items in cli.emulator.resources(prefix).values())
        assert not (cli.state_dir / prefix).exists()


@pytest.mark.parametrize("case", [c for c in CASES if c != "unknown-prefix-debug"])
def test_one_line_nonzero_exit_no_traceback(
    case: str, outcomes: dict[str, Outcome], cli: CLI
) -> None:
    outcome = outcomes[case]
    assert outcome.returncode == 1, outcome.stderr
    lines = error_lines(outcome.stderr)
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in outcome.stderr
    assert cli.emulator.token not in outcome.stdout + outcome.stderr


def _line(outcomes: dict[str, Outcome], case: str) -> str:
    (line,) = error_lines(outcomes[case].stderr)
    return line


@pytest.mark.parametrize("verb", ["ls", "ssh", "destroy"])
def test_unknown_prefix_is_named(verb: str, outcomes: dict[str, Outcome]) -> None:
    line = _line(outcomes, f"unknown-prefix-{verb}")
    assert "'nosuch'" in line
    assert "no local state" in line


def _valid_choices(line: str) -> set[str]:
    match = re.search(r"valid [a-z ]+ in \w+: (.*)$", line) or re.search(
        r"valid [a-z ]+: (.*)$", line
    )
    assert match, line
    return {name.strip() for name in match.group(1).split(",")}


def test_bad_server_type_lists_the_valid_ones(outcomes: dict[str, Outcome], cli: CLI) -> None:
    line = _line(outcomes, "bad-type")
    assert "'cx99'" in line
    choices = _valid_choices(line)
    api = {t["name"]: t for t in cli.emulator.request_all("/v1/server_types", "server_types")}
    orderable_in_fsn1 = {
        name
        for name, t in api.items()
        if any(loc["name"] == "fsn1" and loc.get("available", True) for loc in t["locations"])
    }
    assert choices == orderable_in_fsn1


def test_bad_server_type_names_the_nearest_first(outcomes: dict[str, Outcome]) -> None:
    assert re.search(r"'cx99'; nearest: cx\d3 \(\d+ cores, \d+ GB\)", _line(outcomes, "bad-type"))


@pytest.mark.parametrize("case", ["retired-error", "retired-config"])
def test_retired_types_error_fails_before_anything_exists(
    case: str, outcomes: dict[str, Outcome]
) -> None:
    line = _line(outcomes, case)
    # The first type checked (the scheduler's) may be the one named; both name a successor.
    assert re.search(r"'ccx(12|52)' is retired .*its successor is ccx(13|53) \(", line), line
    assert "using its successor" not in outcomes[case].stderr


def test_deprecated_image_names_the_current_one(outcomes: dict[str, Outcome]) -> None:
    line = _line(outcomes, "old-image")
    assert "'ubuntu-20.04' is deprecated" in line
    assert "the current ubuntu image is ubuntu-24.04" in line


def test_bad_location_lists_the_valid_ones(outcomes: dict[str, Outcome], cli: CLI) -> None:
    line = _line(outcomes, "bad-location")
    assert "'atlantis'" in line
    locations = {loc["name"] for loc in cli.emulator.request_all("/v1/locations", "locations")}
    assert _valid_choices(line) == locations


def test_missing_token_says_where_it_comes_from(outcomes: dict[str, Outcome]) -> None:
    assert "HCLOUD_TOKEN" in _line(outcomes, "missing-token")


def test_unreachable_endpoint_is_named(outcomes: dict[str, Outcome]) -> None:
    line = _line(outcomes, "unreachable")
    assert "cannot reach" in line and "http://127.0.0.1:" in line


def test_debug_adds_the_traceback_but_never_the_token(
    outcomes: dict[str, Outcome], cli: CLI
) -> None:
    outcome = outcomes["unknown-prefix-debug"]
    assert outcome.returncode == 1
    assert "Traceback" in outcome.stderr
    assert "ClusterNotFoundError" in outcome.stderr
    assert cli.emulator.token not in outcome.stdout + outcome.stderr
