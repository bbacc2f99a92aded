"""The Debian-server tier: real Debian userlands on the emulator, the real setup path.

Servers of ``debian-12`` boot as ``systemd-nspawn`` containers (real systemd, sshd and
cloud-init) and the cluster runs the very setup script a Hetzner server gets.  The image
is built once per machine (about a minute) and cached.  Where the host cannot run
containers the tier is skipped, except in CI (``CI`` set), where that is a failure: CI
must run the real path.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.debian.host import host_problem
from scherbelberg_dask.emulator.debian.images import PreparedImage, prepare
from tests.conftest import IMAGE_CACHE

#: A booted container's nspawn command line names its machine ``sb-<emulator>-<server>``.
_MACHINE = re.compile(rb"--machine=sb-([0-9a-f]+)-(\d+)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/debian/" in str(item.fspath):
            item.add_marker(pytest.mark.debian)


@pytest.fixture(autouse=True)
def _machine_image_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """This tier, unlike the rest of the suite, uses the machine's Debian image cache."""
    monkeypatch.setenv("SCHERBELBERG_EMULATOR_IMAGES", str(IMAGE_CACHE))


@pytest.fixture(scope="session")
def debian_image() -> Iterator[PreparedImage]:
    """The prepared ``debian-12`` image (built on first use)."""
    problem = host_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Debian-server tier, but {problem}")
        pytest.skip(problem)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCHERBELBERG_EMULATOR_IMAGES", str(IMAGE_CACHE))
        yield prepare("debian-12")


@pytest.fixture
def debian_cloud(debian_image: PreparedImage, hetzner_emulator_env: Emulator) -> Emulator:
    """An emulator (config and environment pointing at it) that boots Debian servers."""
    return hetzner_emulator_env


def containers(emulator_id: str) -> dict[int, int]:
    """Running containers of an emulator: server id -> nspawn pid (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not cmdline.startswith(b"systemd-nspawn"):
            continue
        match = _MACHINE.search(cmdline)
        if match and match.group(1).decode() == emulator_id:
            found[int(match.group(2))] = int(entry.name)
    return found


def mounts_below(directory: Path) -> list[str]:
    """Mount points below ``directory`` in any process's mount namespace."""
    needle = str(directory)
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "mountinfo").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[4].startswith(needle):
                found.add(fields[4])
    return sorted(found)


@pytest.fixture
def cli_env(debian_cloud: Emulator) -> dict[str, str]:
    """Environment for the CLI in a subprocess: the emulator and the test's state dir."""
    import dask.config

    env = dict(os.environ)
    env["DASK_SCHERBELBERG__STATE_DIR"] = str(dask.config.get("scherbelberg.state-dir"))
    env["COLUMNS"] = "200"
    return env


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m scherbelberg_dask ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "scherbelberg_dask", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def no_containers_left(debian_cloud: Emulator) -> Iterator[None]:
    """After the test: no container of the emulator runs, nothing is mounted."""
    yield
    assert containers(debian_cloud.id) == {}
    directory = debian_cloud.directory
    if directory is not None:
        assert mounts_below(directory) == []


async def until(predicate: Callable[[], Any], timeout: float = 180) -> None:
    """Wait until ``predicate()`` (a plain or async callable) is true, at most ``timeout`` s.

    The state waited for lives in other processes (a container, the scheduler), which
    offer no event to wait on; polling is bounded by the timeout.
    """

    async def poll() -> None:
        while True:
            answer = predicate()
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)
