"""What the controller is told, what it keeps, and how clients direct it (plain data).

:class:`ControllerSpec` is written once by the client as ``controller.json``.
:class:`Directive` is what a client asks for (who drives scaling, the adaptive settings,
the timeouts); the controller keeps the last one it applied, with the time since when the
cluster has been idle, in :class:`ControllerState` (``state.json``), so a restart of the
controller or a reboot of its node loses nothing that matters.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

#: Who scales the cluster: the controller (its adaptive loop) or a client.
CONTROLLER, CLIENT = "controller", "client"


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    """The controller's fixed configuration (``controller.json``; no secrets in it).

    Attributes
    ----------
    prefix
        The cluster's prefix.
    endpoint
        The API endpoint the client used.
    state_dir
        Base directory of the copy of the cluster's local state (relative: to HOME).
    created
        The cluster's creation time (Unix seconds): ``max_lifetime`` counts from it.
    interval
        Seconds between the controller's looks at the scheduler.
    directive
        The first directive (the creator's settings).
    """

    prefix: str
    endpoint: str
    state_dir: str
    created: float
    interval: float
    directive: Directive

    def to_json(self) -> bytes:
        """The ``controller.json`` document."""
        return json.dumps(dataclasses.asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ControllerSpec:
        """Read a ``controller.json`` document."""
        data = json.loads(text)
        data["directive"] = Directive.from_dict(data["directive"])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Directive:
    """What a client asks the controller for.

    Attributes
    ----------
    generation
        Increases with every directive; the controller applies each once.
    driver
        :data:`CONTROLLER` (the controller adapts, with ``adapt``) or :data:`CLIENT`
        (a client scales; the controller only watches the timeouts).
    adapt
        Keyword arguments of ``cluster.adapt`` (``None``: keep the workers as they are).
    idle_timeout, max_lifetime
        Seconds, or ``None`` for none.
    """

    generation: int
    driver: str = CONTROLLER
    adapt: dict[str, Any] | None = None
    idle_timeout: float | None = None
    max_lifetime: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and the scheduler's metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Directive:
        """Read :meth:`to_dict`'s data (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass
class ControllerState:
    """What the controller keeps across its restarts (``state.json``).

    Attributes
    ----------
    directive
        The last directive applied.
    idle_since
        Unix time since when the cluster has been idle (``None``: busy).
    """

    directive: Directive
    idle_since: float | None = None

    @classmethod
    def load(cls, path: Path, default: Directive) -> ControllerState:
        """The saved state, or a fresh one with directive ``default``."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(directive=default)
        return cls(
            directive=Directive.from_dict(data["directive"]), idle_since=data.get("idle_since")
        )

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, mode 0600, renamed)."""
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"directive": self.directive.to_dict(), "idle_since": self.idle_since}, out)
        os.replace(temporary, path)
