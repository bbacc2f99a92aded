"""The supervisor's control socket and the ``servicectl`` verbs behind it.

Protocol: the client sends one JSON object on one line and reads one JSON object
``{"rc": int, "stdout": str, "stderr": str}``; then the connection closes.  The request
carries ``verb``, the calling ``caller`` (its USER) and the verb's fields (see
``servicectl.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .paths import valid_user_name
from .servicedef import SERVICE_NAME_RE, DefinitionError, ServiceDefinition
from .services import Service, ServiceLog, Supervisor

logger = logging.getLogger(__name__)

#: Longest Unix socket path bound directly (sun_path holds 108 bytes with the NUL).
_MAX_SUN_PATH = 100
_MAX_REQUEST = 1 << 20

#: systemctl's exit status for "not active" and "no such unit".
RC_INACTIVE = 3
RC_UNKNOWN = 4


@dataclasses.dataclass
class Reply:
    """Result of one servicectl command."""

    rc: int = 0
    stdout: str = ""
    stderr: str = ""

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode() + b"\n"


def _error(message: str, rc: int = 1) -> Reply:
    return Reply(rc=rc, stderr=f"servicectl: {message}\n")


def _time(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def format_status(service: Service) -> str:
    """Multi-line status of a service; its first line is ``NAME: STATE``."""
    definition = service.definition
    lines = [
        f"{service.name}: {service.state}",
        f"  pid: {service.pid if service.pid is not None else '-'}",
        f"  since: {_time(service.since) if service.state == 'active' else '-'}",
        f"  restarts: {service.restarts}",
        f"  restart policy: {definition.restart}",
        f"  enabled: {'yes' if definition.enabled else 'no'}",
        f"  user: {definition.user}",
        f"  command: {shlex.join(definition.argv)}",
        f"  last exit: {service.last_exit or '-'}",
        f"  log: {service.log.path}",
    ]
    return "\n".join(lines) + "\n"


def format_list(services: list[Service]) -> str:
    """One line per service: name, state, enabled, pid, restarts."""
    rows = [("NAME", "STATE", "ENABLED", "PID", "RESTARTS")]
    for service in sorted(services, key=lambda s: s.name):
        rows.append(
            (
                service.name,
                service.state,
                "yes" if service.definition.enabled else "no",
                str(service.pid) if service.pid is not None else "-",
                str(service.restarts),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


class CommandHandler:
    """Executes servicectl requests against a :class:`Supervisor`.

    Parameters
    ----------
    supervisor
        The machine's supervisor during this boot.
    poweroff
        Called for ``servicectl poweroff`` (root only): starts an ACPI shutdown.
    """

    def __init__(self, supervisor: Supervisor, poweroff: Callable[[], None]) -> None:
        self._sup = supervisor
        self._poweroff = poweroff

    async def handle(self, request: dict[str, Any]) -> Reply:
        """Execute one request; never raises for bad input."""
        caller = request.get("caller")
        if not isinstance(caller, str) or not valid_user_name(caller):
            return _error("cannot tell who is calling (USER is unset or invalid)")
        verb = request.get("verb")
        method = getattr(self, f"_verb_{str(verb).replace('-', '_')}", None)
        if method is None:
            return _error(f"unknown command {verb!r}")
        try:
            reply: Reply = await method(caller, request)
        except DefinitionError as exc:
            return _error(str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return _error(f"malformed request: {exc}")
        return reply

    def _service(self, request: dict[str, Any]) -> Service | Reply:
        name = request["name"]
        service = self._sup.services.get(name)
        if service is None:
            return _error(f"service {name!r} not found", RC_UNKNOWN)
        return service

    def _modify(self, caller: str, request: dict[str, Any]) -> Service | Reply:
        service = self._service(request)
        if isinstance(service, Service) and caller not in ("root", service.definition.user):
            return _error(f"permission denied: service {service.name!r} belongs to another user")
        return service

    async def _verb_enable(self, caller: str, request: dict[str, Any]) -> Reply:
        name = request["name"]
        argv = request.get("argv") or []
        existing = self._sup.services.get(name)
        if existing is not None and caller not in ("root", existing.definition.user):
            return _error(f"permission denied: service {name!r} belongs to another user")
        if argv:
            user = request.get("user") or caller
            if user != caller and caller != "root":
                return _error("permission denied: only root may run services as another user")
            env = dict(request.get("env") or {})
            definition = ServiceDefinition(
                name=name,
                argv=list(argv),
                user=user,
                env=env,
                restart=request.get("restart") or "on-failure",
                enabled=True,
            )
            service = self._sup.define(definition)
        elif existing is not None:
            service = existing
            self._sup.set_enabled(service, True)
        else:
            return _error(f"service {name!r} not found; give its command after '--'", RC_UNKNOWN)
        if request.get("now"):
            if argv and service.running:
                await service.stop(self._sup.stop_grace)
            await service.start()
            return Reply(stdout=format_status(service))
        return Reply(stdout=f"enabled {name}\n")

    async def _verb_disable(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._modify(caller, request)
        if isinstance(service, Reply):
            return service
        self._sup.set_enabled(service, False)
        if request.get("now"):
            await service.stop(self._sup.stop_grace)
        return Reply(stdout=f"disabled {service.name}\n")

    async def _verb_start(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._modify(caller, request)
        if isinstance(service, Reply):
            return service
        await service.start()
        return Reply(stdout=format_status(service))

    async def _verb_stop(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._modify(caller, request)
        if isinstance(service, Reply):
            return service
        await service.stop(self._sup.stop_grace)
        return Reply(stdout=format_status(service))

    async def _verb_restart(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._modify(caller, request)
        if isinstance(service, Reply):
            return service
        await service.stop(self._sup.stop_grace)
        await service.start()
        return Reply(stdout=format_status(service))

    async def _verb_remove(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._modify(caller, request)
        if isinstance(service, Reply):
            return service
        await self._sup.remove(service)
        return Reply(stdout=f"removed {service.name}\n")

    async def _verb_status(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._service(request)
        if isinstance(service, Reply):
            return service
        rc = 0 if service.state == "active" else RC_INACTIVE
        return Reply(rc=rc, stdout=format_status(service))

    async def _verb_is_active(self, caller: str, request: dict[str, Any]) -> Reply:
        service = self._sup.services.get(request["name"])
        if service is None:
            return Reply(rc=RC_INACTIVE, stdout="inactive\n")
        rc = 0 if service.state == "active" else RC_INACTIVE
        return Reply(rc=rc, stdout=f"{service.state}\n")

    async def _verb_logs(self, caller: str, request: dict[str, Any]) -> Reply:
        name = request["name"]
        service = self._sup.services.get(name)
        if service is None:
            log_file = self._sup.node.paths.service_logs / f"{name}.log"
            if not SERVICE_NAME_RE.match(name) or not log_file.is_file():
                return _error(f"service {name!r} not found", RC_UNKNOWN)
            log = ServiceLog(log_file)
        else:
            log = service.log
        lines = int(request.get("lines", 100))
        text = await asyncio.to_thread(log.tail, lines)
        return Reply(stdout=text)

    async def _verb_list(self, caller: str, request: dict[str, Any]) -> Reply:
        return Reply(stdout=format_list(list(self._sup.services.values())))

    async def _verb_poweroff(self, caller: str, request: dict[str, Any]) -> Reply:
        if caller != "root":
            return _error("permission denied: only root may power off")
        self._poweroff()
        return Reply(stdout="powering off\n")


def _bind_unix(path: Path) -> socket.socket:
    """Bind a listening Unix socket at ``path``, also when the path is too long.

    Long paths are bound through ``/proc/self/fd/<dirfd>/NAME``, which the kernel resolves
    to the real directory.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if len(os.fsencode(path)) <= _MAX_SUN_PATH:
            sock.bind(str(path))
        else:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
            finally:
                os.close(dir_fd)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    """Serves requests on the machine's control socket.

    Parameters
    ----------
    path
        Socket path.
    handle
        Coroutine executing one request.
    """

    def __init__(self, path: Path, handle: Callable[[dict[str, Any]], Awaitable[Reply]]) -> None:
        self._path = path
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and serve."""
        sock = _bind_unix(self._path)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=_MAX_REQUEST)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError:
                reply = _error("malformed request")
            else:
                reply = await self._handle(request)
            writer.write(reply.encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def close(self) -> None:
        """Stop serving, end pending requests and remove the socket file."""
        if self._server is not None:
            self._server.close()
            self._server = None
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        with contextlib.suppress(OSError):
            self._path.unlink()
