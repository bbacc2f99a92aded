"""The CLI as a user runs it: an emulator in its own process, verbs as subprocesses.

``python -m scherbelberg_dask emulator`` runs in the background for the whole session;
its ``export ...`` lines become the environment of every CLI process, together with a
temporary state directory.  Nothing of the test process's own configuration leaks in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scherbelberg_dask.emulator.pytest_plugin import free_port

KINDS = ("servers", "networks", "firewalls", "ssh_keys")
#: A log line as the seed printed them: ``cluster INFO 2022-01-28 14:24:33,141: ...``.
LOG_LINE = re.compile(r"^\S+ (DEBUG|INFO|WARNING|ERROR) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: ")
#: Environment variables of the developer's shell that must not reach the CLI.
_FOREIGN = re.compile(r"^(HCLOUD_|DASK_SCHERBELBERG__)")


class LineReader:
    """Lines of a pipe, read in a thread, so that tests can wait with a bound."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """The first line containing ``pattern`` (read already or arriving within
        ``timeout``); fail after ``timeout`` or at EOF."""
        for line in self.seen:
            if pattern in line:
                return line
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line with {pattern!r} within {timeout} s; saw: {''.join(self.seen)}"
                ) from None
            if line is None:
                raise AssertionError(f"EOF before a line with {pattern!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if pattern in line:
                return line

    def rest(self, timeout: float = 30) -> str:
        """Everything until EOF."""
        self._thread.join(timeout)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


@dataclasses.dataclass
class EmulatorProcess:
    """``python -m scherbelberg_dask emulator`` running in the background."""

    process: subprocess.Popen[str]
    exports: dict[str, str]

    @property
    def token(self) -> str:
        return self.exports["HCLOUD_TOKEN"]

    def request(self, path: str) -> Any:
        """GET ``path`` (below the API root, e.g. ``/_emulator/state``) as JSON."""
        root = self.exports["HCLOUD_ENDPOINT"].removesuffix("/v1")
        req = urllib.request.Request(root + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as answer:
            return json.load(answer)

    def request_all(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every item of a paginated ``/v1`` list."""
        items: list[dict[str, Any]] = []
        page: int | None = 1
        separator = "&" if "?" in path else "?"
        while page is not None:
            body = self.request(f"{path}{separator}per_page=50&page={page}")
            items.extend(body[key])
            page = body["meta"]["pagination"]["next_page"]
        return items

    def resources(self, prefix: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The emulator's resources of each kind (of cluster ``prefix`` if given)."""
        state = self.request("/_emulator/state")
        return {
            kind: [
                item
                for item in state[kind]
                if prefix is None or item["labels"].get("scherbelberg/cluster") == prefix
            ]
            for kind in KINDS
        }

    def counts(self) -> dict[str, int]:
        return {kind: len(items) for kind, items in self.resources().items()}


@dataclasses.dataclass
class CLI:
    """Runs ``python -m scherbelberg_dask`` against the emulator, as a user would."""

    emulator: EmulatorProcess
    env: dict[str, str]
    state_dir: Path

    def machine(self, home: Path) -> CLI:
        """The same CLI on another "machine": its own state directory and HOME."""
        state_dir, user_home = home / "state", home / "home"
        user_home.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "DASK_SCHERBELBERG__STATE_DIR": str(state_dir), "HOME": str(user_home)}
        return CLI(self.emulator, env, state_dir)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "scherbelberg_dask", *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a verb to completion."""
        return self.run_argv(self.argv(*args), env=env, timeout=timeout)

    def run_argv(
        self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run any program in the CLI's environment."""
        return subprocess.run(
            argv,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not timestamped log lines."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


def _private_range() -> str:
    # Emulators share the host's loopback: another emulator on this machine (another
    # test run) would hand out the same private addresses from its default range, and
    # Dask's fixed ports would clash.  Any /16 of 127/8 outside 127.0/16 and the public
    # pool (127.32.0.0/11) works; pick one at random.
    return f"127.{random.randrange(130, 255)}.0.0/16"


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    log = tmp_path_factory.mktemp("emulator") / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not _FOREIGN.match(k)}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "scherbelberg_dask", "emulator", "--ssh-port", str(free_port())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        reader = LineReader(process.stdout)
        exports: dict[str, str] = {}
        while True:
            try:
                line = reader.lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(f"emulator printed no exports: {log.read_text()}") from None
            if line is None or not line.strip():
                break
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = shlex.split(value)[0]
        assert "HCLOUD_TOKEN" in exports, log.read_text()
        yield EmulatorProcess(process, exports)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"the emulator did not stop on Ctrl-C: {log.read_text()}"
            ) from None
    assert status == 0, f"the emulator exited with {status}: {log.read_text()}"


@pytest.fixture(scope="session")
def cli(emulator_process: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> CLI:
    state_dir = tmp_path_factory.mktemp("state")
    env = {k: v for k, v in os.environ.items() if not _FOREIGN.match(k)}
    env.update(emulator_process.exports)
    env["DASK_SCHERBELBERG__NETWORK__IP_RANGE"] = _private_range()
    env["DASK_SCHERBELBERG__STATE_DIR"] = str(state_dir)
    env["COLUMNS"] = "200"
    return CLI(emulator_process, env, state_dir)


@contextlib.contextmanager
def killed_on_exit(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Make sure ``process`` does not outlive the test."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def compute_from_existing(cli: CLI, prefix: str) -> subprocess.CompletedProcess[str]:
    """Attach to cluster ``prefix`` from a new Python process and compute 1 + 2 + 39 there
    (the process prints ``result 42``)."""
    code = textwrap.dedent(
        f"""
        from distributed import Client
        from scherbelberg_dask import HetznerCluster
        cluster = HetznerCluster.from_existing({prefix!r})
        with Client(cluster) as client:
            print("result", client.submit(sum, [1, 2, 39]).result(timeout=60))
        cluster.close()
        """
    )
    return cli.run_argv([sys.executable, "-c", code])
