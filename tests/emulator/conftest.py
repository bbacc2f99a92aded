"""Fixtures for the emulator's tests: API (emulators) and machines (``machines``).

Every emulator made here validates each JSON answer it sends against Hetzner's OpenAPI
spec (``tests/data/hcloud-openapi.json``); a test fails at teardown if any answer did
not match.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import hcloud
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from machine_helpers import MachineFactory
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.api.context import ResponseRecord
from scherbelberg_dask.emulator.machine import MachineSpec
from scherbelberg_dask.emulator.machine.machine import Machine
from scherbelberg_dask.emulator.pytest_plugin import free_port

SPEC_PATH = Path(__file__).resolve().parent.parent / "data" / "hcloud-openapi.json"
SPEC_URI = "urn:hcloud-openapi"


def _nullable_all_of(node: Any) -> Any:
    """Rewrite ``{nullable: true, allOf: [X]}`` as ``anyOf: [X, null]``.

    openapi-schema-validator rejects ``null`` for such schemas although OpenAPI 3.0
    allows it (the spec uses the pattern for ``image``, ``iso``, ``deprecation``, ...).
    """
    if isinstance(node, list):
        return [_nullable_all_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_all_of(value) for key, value in node.items()}
    if node.get("nullable") is True and "allOf" in node and "type" not in node:
        rest = {k: v for k, v in node.items() if k not in ("nullable", "allOf")}
        return {**rest, "anyOf": [{"allOf": node["allOf"]}, {"enum": [None]}]}
    return node


class OpenAPIChecker:
    """Validates emulator answers against the spec's response schemas."""

    def __init__(self, spec_path: Path) -> None:
        spec = _nullable_all_of(json.loads(spec_path.read_text()))
        self.paths: dict[str, Any] = spec["paths"]
        resource = Resource.from_contents(spec, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, OAS30ReadValidator] = {}
        self._lock = threading.Lock()

    def _validator(self, pointer: str) -> OAS30ReadValidator:
        with self._lock:
            if pointer not in self._validators:
                self._validators[pointer] = OAS30ReadValidator(
                    {"$ref": f"{SPEC_URI}#{pointer}"},
                    registry=self.registry,
                    format_checker=oas30_format_checker,
                )
            return self._validators[pointer]

    def problems(self, record: ResponseRecord) -> list[str]:
        """Why ``record`` violates the spec (empty list: it conforms)."""
        where = f"{record.method} {record.path} -> {record.status}"
        if record.status == 204:
            return [f"{where}: 204 with a body"] if record.body else []
        if not (record.content_type or "").startswith("application/json"):
            return [f"{where}: content type {record.content_type!r} is not JSON"]
        try:
            body = json.loads(record.body)
        except ValueError:
            return [f"{where}: body is not JSON"]
        path = record.route[len("/v1") :] if record.route else None
        operation = self.paths.get(path or "", {}).get(record.method.lower())
        if operation is None:
            if record.status >= 400:
                pointer = "/components/schemas/error_response"
            else:
                return [f"{where}: {record.route} is not an operation of the spec"]
        else:
            responses = operation["responses"]
            code = str(record.status)
            if code not in responses:
                code = f"{code[0]}xx"
            if code not in responses:
                return [f"{where}: status not documented for this operation"]
            escaped = path.replace("~", "~0").replace("/", "~1")  # type: ignore[union-attr]
            pointer = (
                f"/paths/{escaped}/{record.method.lower()}/responses/{code}"
                "/content/application~1json/schema"
            )
        validator = self._validator(pointer)
        return [
            f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(body)
        ]


@pytest.fixture(scope="session")
def openapi() -> OpenAPIChecker:
    """The spec checker (loaded once)."""
    return OpenAPIChecker(SPEC_PATH)


EmulatorFactory = Callable[..., Emulator]


def own_machine(spec: MachineSpec, on_event: Callable[[str], None]) -> Machine:
    """The emulator's own machine for every server, whatever its image."""
    return Machine(spec, on_event=on_event)


@pytest.fixture
def emulator_factory(openapi: OpenAPIChecker) -> Iterator[EmulatorFactory]:
    """Start emulators with custom options; each validates its answers; all stop after."""
    started: list[Emulator] = []
    violations: list[str] = []
    seen: list[int] = [0]

    def observe(record: ResponseRecord) -> None:
        seen[0] += 1
        violations.extend(openapi.problems(record))

    def make(**options: Any) -> Emulator:
        options.setdefault("ssh_port", free_port())
        # API tests run every server on the emulator's own machine, whether or not a
        # Debian image is cached (containers are tests/debian's subject).
        options.setdefault("machine_factory", own_machine)
        emulator = Emulator(**options)
        emulator.add_observer(observe)
        emulator.start_sync()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop_sync()
    assert not violations, "answers that violate the OpenAPI spec:\n" + "\n".join(violations)


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    """A started emulator, instant profile, answers validated against the spec."""
    return emulator_factory()


def make_client(emulator: Emulator) -> hcloud.Client:
    """An hcloud client for ``emulator`` that polls actions quickly."""
    return hcloud.Client(emulator.token, api_endpoint=emulator.endpoint, poll_interval=0.01)


@pytest.fixture
def client(emulator: Emulator) -> hcloud.Client:
    """The official hcloud client pointed at ``emulator``."""
    return make_client(emulator)


class Raw:
    """Plain HTTP calls against an emulator (what the hcloud client cannot express)."""

    def __init__(self, emulator: Emulator, token: str | None = None) -> None:
        self.base = emulator.endpoint
        self.root = self.base[: -len("/v1")]
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        base = self.root if path.startswith("/_emulator") else self.base
        return self.session.request(method, base + path, timeout=30, **kwargs)


@pytest.fixture
def raw(emulator: Emulator) -> Raw:
    """Authenticated raw HTTP access to ``emulator``."""
    return Raw(emulator, emulator.token)


@pytest.fixture
def public_key() -> str:
    """A fresh OpenSSH ed25519 public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def server_state(emulator: Emulator, server_id: int) -> dict[str, Any] | None:
    """The snapshot entry of one server (``None`` if it does not exist)."""
    return next((s for s in emulator.snapshot()["servers"] if s["id"] == server_id), None)


@pytest.fixture
async def machines(tmp_path: Path) -> AsyncIterator[MachineFactory]:
    """Emulated machines without an API; destroyed after the test, leaving no process."""
    factory = MachineFactory(tmp_path)
    yield factory
    await factory.close()
