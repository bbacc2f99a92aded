"""Service definitions of an emulated machine and their persistence (``etc/services``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

from .paths import valid_user_name

logger = logging.getLogger(__name__)

SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESTART_POLICIES = ("always", "on-failure", "no")


class DefinitionError(ValueError):
    """A service definition is invalid (the message says why)."""


@dataclasses.dataclass
class ServiceDefinition:
    """What to run as a service.

    Attributes
    ----------
    name
        Service name (also its file and log name).
    argv
        Command and arguments (executed directly, looked up on the node's PATH).
    user
        User it runs as (HOME, USER, cwd).
    env
        Extra environment variables.
    restart
        ``always``, ``on-failure`` or ``no``.
    enabled
        Whether it starts at every boot.
    """

    name: str
    argv: list[str]
    user: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    restart: str = "on-failure"
    enabled: bool = False

    def validate(self) -> None:
        """Raise :class:`DefinitionError` unless the definition is usable."""
        if not SERVICE_NAME_RE.match(self.name):
            raise DefinitionError(
                f"invalid service name {self.name!r} (letters, digits, '_.@-', at most 64)"
            )
        if not self.argv or not all(isinstance(arg, str) for arg in self.argv):
            raise DefinitionError("a service needs a command (after '--')")
        if not valid_user_name(self.user):
            raise DefinitionError(f"invalid user name {self.user!r}")
        if self.restart not in RESTART_POLICIES:
            raise DefinitionError(
                f"invalid restart policy {self.restart!r}; choose one of "
                + ", ".join(RESTART_POLICIES)
            )
        for key, value in self.env.items():
            if not ENV_NAME_RE.match(key) or not isinstance(value, str):
                raise DefinitionError(f"invalid environment variable {key!r}")

    def to_json(self) -> str:
        """Serialise (the persisted form)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceDefinition:
        """Build and validate a definition from its JSON object."""
        try:
            definition = cls(
                name=str(data["name"]),
                argv=list(data["argv"]),
                user=str(data["user"]),
                env=dict(data.get("env", {})),
                restart=str(data.get("restart", "on-failure")),
                enabled=bool(data.get("enabled", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DefinitionError(f"malformed service definition: {exc}") from None
        definition.validate()
        return definition


class DefinitionStore:
    """The ``etc/services`` directory of a machine.

    Parameters
    ----------
    directory
        Where ``NAME.json`` files live.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _file(self, name: str) -> Path:
        return self._directory / f"{name}.json"

    def load_all(self) -> list[ServiceDefinition]:
        """Return every valid definition (invalid files are logged and skipped)."""
        definitions = []
        for path in sorted(self._directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                definition = ServiceDefinition.from_dict(data)
            except (OSError, ValueError) as exc:
                logger.warning("ignoring service file %s: %s", path, exc)
                continue
            if definition.name != path.stem:
                logger.warning("ignoring service file %s: it defines %r", path, definition.name)
                continue
            definitions.append(definition)
        return definitions

    def save(self, definition: ServiceDefinition) -> None:
        """Persist ``definition`` atomically."""
        self._directory.mkdir(parents=True, exist_ok=True)
        target = self._file(definition.name)
        tmp = target.with_name(f".{definition.name}.json.tmp")
        tmp.write_text(definition.to_json())
        tmp.replace(target)

    def remove(self, name: str) -> None:
        """Forget a definition."""
        self._file(name).unlink(missing_ok=True)
