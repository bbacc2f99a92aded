"""Bootstrap profiles: what runs on a fresh server, chosen by its image.

A profile knows how to turn a fresh server of its image into a Dask node: the cloud-init
document for the create request, which user logs in for setup, how files get there, how
the Dask process becomes a service, and where its logs are.  The cluster only asks
:func:`profile_for_image`; it never knows which profile (or which cloud) it got.
"""

from __future__ import annotations

import abc
import json
import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from scherbelberg_dask.bootstrap import cloudscript, controller_unit
from scherbelberg_dask.bootstrap.cloudinit import CloudUser, render_cloud_config
from scherbelberg_dask.bootstrap.environment import PROBE, NodeEnvironment
from scherbelberg_dask.bootstrap.node_config import NODE_DIR, NodeConfig
from scherbelberg_dask.errors import SettingsError, UserError

if TYPE_CHECKING:
    from scherbelberg_dask.security.sshkeys import SSHKeyPair
    from scherbelberg_dask.ssh.client import SSHConnection

logger = logging.getLogger(__name__)

#: The unprivileged user that runs Dask on every node.
DASK_USER = "dask"
#: Image whose servers run on the local emulator's host (see scherbelberg_dask.emulator).
EMULATOR_IMAGE = "scherbelberg-emulator"
#: The controller's system user on an autonomous cluster's scheduler node.
CONTROLLER_USER = controller_unit.CONTROLLER_USER
#: Opens an SSH connection to the node being set up, as the given user.
ConnectAs = Callable[[str], Awaitable["SSHConnection"]]


#: The controller's directory in its user's home (emulator image).
CONTROLLER_DIR = "controller"


class BootstrapError(UserError, RuntimeError):
    """Setting up a node failed; the message carries the tail of its log."""


class BootstrapProfile(abc.ABC):
    """How to make a Dask node of a fresh server of some image."""

    #: User that logs in to set the node up (may differ from :data:`DASK_USER`).
    setup_user: str = DASK_USER
    #: User for everything after setup (``ssh``, logs, runs).
    operator_user: str = DASK_USER

    def __init__(self, environment: NodeEnvironment) -> None:
        self.environment = environment

    @abc.abstractmethod
    def cloud_config(
        self,
        *,
        host_key: SSHKeyPair,
        authorized_key: str,
        hostname: str,
        controller: bool = False,
    ) -> str:
        """The cloud-init ``user_data`` for the create request.

        ``controller``: the node will run an autonomous cluster's controller.
        """

    @abc.abstractmethod
    async def install_controller(
        self,
        conn: SSHConnection,
        connect_as: ConnectAs,
        *,
        files: dict[str, bytes],
        token: str,
    ) -> None:
        """Install and start an autonomous cluster's controller (docs/autonomous.md).

        ``conn`` is the setup connection; ``files`` go to the controller's directory,
        readable by :data:`CONTROLLER_USER` only, ``token`` to where only the controller
        reads it.  Called after :meth:`setup` of the scheduler node.
        """

    @abc.abstractmethod
    async def setup(
        self,
        conn: SSHConnection,
        *,
        files: dict[str, bytes],
        node: NodeConfig,
        from_snapshot: bool = False,
    ) -> str | None:
        """Install what the node needs and start its Dask service (idempotent).

        ``files`` are the node's own files (its TLS pair) by path below :data:`NODE_DIR`;
        ``node`` becomes its ``node.json``.  ``from_snapshot``: the server booted from a
        snapshot of the environment (docs/snapshots.md); only what differs is run, and a
        snapshot that turns out unusable is logged and followed by the full setup.

        Returns
        -------
        str or None
            Why the snapshot was not usable, in the setup script's words (``no
            environment marker``, ...), or None: it was used, or there was none.
        """

    @property
    def environment_digest(self) -> str | None:
        """What identifies the installed environment, or None: this image is not snapshotted."""
        return None

    async def build_environment(self, conn: SSHConnection) -> None:
        """Install the environment only and clean the server for a snapshot (image builder)."""
        raise NotImplementedError(f"{type(self).__name__} makes no snapshots")

    @abc.abstractmethod
    def service_command(self, action: str, role: str) -> str:
        """Shell command that applies ``action`` (start, stop, status, logs) to the service."""

    async def wait_ready(self, conn: SSHConnection, *, role: str, timeout: float) -> str:
        """Wait until the Dask process on the node is up; return its address."""
        result = await conn.run(
            f"{self.as_dask_user}{self.python} {NODE_DIR}/node_runner.py wait "
            f"{NODE_DIR}/node.json {timeout:.0f}",
            check=False,
            timeout=timeout + 30,
        )
        if result.exit_status != 0:
            raise BootstrapError(
                f"dask {role} did not come up within {timeout:.0f} s: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return str(json.loads(result.stdout)["address"])

    async def log_tail(self, conn: SSHConnection, *, role: str, lines: int = 40) -> str:
        """The last lines of the node's bootstrap and Dask service logs."""
        result = await conn.run(
            f"{self.service_command('logs', role)} 2>&1 | tail -n {lines}", check=False, timeout=30
        )
        return result.stdout

    @property
    def python(self) -> str:
        """The Python interpreter that runs Dask on the node."""
        return "python3"

    #: Command prefix that runs the rest as the Dask user in its home directory.
    as_dask_user = ""

    def node_files(self, files: dict[str, bytes], node: NodeConfig) -> dict[str, bytes]:
        """Every file a node gets, by path relative to the Dask user's home.

        The node runner, the typed node contract it imports, ``node.json`` and ``files``.
        """
        from importlib.resources import files as package_files

        package = package_files("scherbelberg_dask.bootstrap")
        return {
            f"{NODE_DIR}/node_runner.py": package.joinpath("node_runner.py").read_bytes(),
            f"{NODE_DIR}/node_config.py": package.joinpath("node_config.py").read_bytes(),
            f"{NODE_DIR}/node.json": node.to_json(),
            **{f"{NODE_DIR}/{path}": data for path, data in files.items()},
        }

    async def check_environment(self, conn: SSHConnection) -> None:
        """Fail if the node's Python or pinned packages differ from the client's."""
        result = await conn.run(f"{self.python} -c {shlex.quote(PROBE)}", timeout=120)
        self._check_probe(result.stdout)

    def _check_probe(self, output: str) -> None:
        try:
            problems = self.environment.mismatches(output)
        except (ValueError, KeyError, TypeError):
            raise BootstrapError(
                f"the node's Python could not report its packages: {output.strip()!r}"
            ) from None
        if problems:
            raise BootstrapError(
                "node environment does not match the client: " + "; ".join(problems)
            )


class EmulatorProfile(BootstrapProfile):
    """The local emulator's image: the host's own Python, services through ``servicectl``.

    The emulated node already runs the emulator's interpreter, so nothing is installed;
    root never logs in (cloud-init ``disable_root``), Dask runs as :data:`DASK_USER`.
    """

    def cloud_config(
        self,
        *,
        host_key: SSHKeyPair,
        authorized_key: str,
        hostname: str,
        controller: bool = False,
    ) -> str:
        users = [CloudUser(name=DASK_USER, ssh_authorized_keys=[authorized_key])]
        if controller:  # its own user: a home of its own, services of its own
            users.append(CloudUser(name=CONTROLLER_USER, ssh_authorized_keys=[authorized_key]))
        return render_cloud_config(
            host_key=host_key, users=users, disable_root=True, hostname=hostname
        )

    async def install_controller(
        self,
        conn: SSHConnection,
        connect_as: ConnectAs,
        *,
        files: dict[str, bytes],
        token: str,
    ) -> None:
        """The files (0600, directories 0700) in the controller user's home, its
        ``servicectl`` service run as that user.

        All emulated users are one user of the host, so the emulator cannot keep the
        Dask user out of this home; the cloud profile can (docs/autonomous.md).
        """
        from scherbelberg_dask.controller.install import PACKAGE_ZIP

        async with await connect_as(CONTROLLER_USER) as ctl:
            home = (await ctl.run("printenv HOME", timeout=30)).stdout.strip()
            directory = f"{home}/{CONTROLLER_DIR}"
            await ctl.upload(
                {
                    **{f"{CONTROLLER_DIR}/{path}": data for path, data in files.items()},
                    f"{CONTROLLER_DIR}/hcloud-token": token,
                }
            )
            await ctl.run(
                f"servicectl enable --now --restart on-failure "
                f"--env PYTHONPATH={directory}/{PACKAGE_ZIP} {controller_unit.SERVICE} -- "
                f"{self.python} -m scherbelberg_dask.controller.service "
                f"{directory}/controller.json",
                timeout=60,
            )

    async def setup(
        self,
        conn: SSHConnection,
        *,
        files: dict[str, bytes],
        node: NodeConfig,
        from_snapshot: bool = False,
    ) -> str | None:
        await conn.upload(self.node_files(files, node))
        await self.check_environment(conn)
        await conn.run(self.service_command("start", node.role), timeout=60)
        return None

    def service_command(self, action: str, role: str) -> str:
        service = f"dask-{role}"
        if action == "start":
            return (
                f"servicectl enable --now --restart on-failure {service} -- "
                f"{self.python} {NODE_DIR}/node_runner.py run {NODE_DIR}/node.json"
            )
        if action == "logs":
            return f"servicectl logs {service} --lines 200"
        return f"servicectl {action} {service}"


class CloudProfile(BootstrapProfile):
    """Ubuntu and Debian images on real servers: uv, a venv, systemd, hardened sshd.

    Setup logs in as root (cloud-init puts the cluster key there), runs the rendered
    script of :mod:`scherbelberg_dask.bootstrap.cloudscript`, which ends by turning root
    login off.  Dask then runs as :data:`DASK_USER` under systemd.
    """

    setup_user = "root"
    as_dask_user = f"cd /home/{DASK_USER} && runuser -u {DASK_USER} -- "

    def cloud_config(
        self,
        *,
        host_key: SSHKeyPair,
        authorized_key: str,
        hostname: str,
        controller: bool = False,
    ) -> str:
        # The controller's system user is made by root during setup (no login for it).
        return render_cloud_config(
            host_key=host_key,
            users=[
                CloudUser(name=DASK_USER, ssh_authorized_keys=[authorized_key], shell="/bin/bash")
            ],
            disable_root=False,
            hostname=hostname,
        )

    async def install_controller(
        self,
        conn: SSHConnection,
        connect_as: ConnectAs,
        *,
        files: dict[str, bytes],
        token: str,
    ) -> None:
        """As root over the setup connection: a system user, the token as a root-owned
        0600 credential (systemd ``LoadCredential=``), a systemd unit
        (:mod:`~scherbelberg_dask.bootstrap.controller_unit`)."""
        home = controller_unit.CONTROLLER_HOME
        upload: dict[str, bytes | str] = {
            f"{home}.new/{path}": data for path, data in files.items()
        }
        upload[controller_unit.TOKEN_PATH] = token
        await conn.upload(upload)
        script = controller_unit.install_script(self.python, uv="/usr/local/bin/uv")
        result = await conn.run(f"bash -c {shlex.quote(script)}", check=False, timeout=600)
        if result.exit_status != 0:
            raise BootstrapError(
                f"installing the controller failed (exit {result.exit_status}): "
                + "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            )

    @property
    def python(self) -> str:
        return cloudscript.VENV_PYTHON

    def script(self, role: str, *, from_snapshot: bool = False) -> str:
        """The rendered setup script (printable for inspection)."""
        return cloudscript.render(
            self.environment,
            role=role,
            user=DASK_USER,
            node_dir=NODE_DIR,
            from_snapshot=from_snapshot,
        )

    @property
    def environment_digest(self) -> str | None:
        return cloudscript.environment_digest(self.environment)

    async def _probe(self, conn: SSHConnection) -> None:
        # One command first: a server that cannot run anything (wrong image) says why
        # here, instead of failing the file upload with a protocol error.
        probe = await conn.run("uname -m", check=False, timeout=60)
        if probe.exit_status != 0:
            said = (probe.stderr or probe.stdout).strip() or "no output"
            raise BootstrapError(
                f"the server cannot run the setup (`uname -m` exited with "
                f"{probe.exit_status}): {said}"
            )

    async def _run_script(self, conn: SSHConnection, path: str, what: str) -> str:
        result = await conn.run(f"bash {path}", check=False, timeout=1800)
        if result.exit_status != 0:
            raise BootstrapError(
                f"{what} failed (exit {result.exit_status}): "
                + "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
            )
        return result.stdout

    async def setup(
        self,
        conn: SSHConnection,
        *,
        files: dict[str, bytes],
        node: NodeConfig,
        from_snapshot: bool = False,
    ) -> str | None:
        await self._probe(conn)
        upload = self.node_files(files, node)
        upload[f"{NODE_DIR}/setup.sh"] = self.script(
            node.role, from_snapshot=from_snapshot
        ).encode()
        await conn.upload(upload)
        output = await self._run_script(conn, f"{NODE_DIR}/setup.sh", "node setup")
        why = None
        if from_snapshot:
            unusable = [
                line
                for line in output.splitlines()
                if line.startswith(cloudscript.SNAPSHOT_UNUSABLE)
            ]
            if unusable:
                logger.warning(
                    "[%s] %s",
                    node.name,
                    unusable[0].removeprefix("== ").replace("running", "ran"),
                )
                why = unusable_reason(unusable[0])
        probe = [
            line.removeprefix(cloudscript.PROBE_MARKER)
            for line in output.splitlines()
            if line.startswith(cloudscript.PROBE_MARKER)
        ]
        self._check_probe(probe[-1] if probe else "")
        return why

    async def build_environment(self, conn: SSHConnection) -> None:
        await self._probe(conn)
        await conn.upload(
            {
                f"{NODE_DIR}/environment.sh": cloudscript.render_environment(
                    self.environment
                ).encode(),
                f"{NODE_DIR}/scrub.sh": cloudscript.render_scrub(
                    user=DASK_USER, node_dir=NODE_DIR
                ).encode(),
            }
        )
        await self._run_script(conn, f"{NODE_DIR}/environment.sh", "environment setup")
        await self.check_environment(conn)
        await self._run_script(conn, f"{NODE_DIR}/scrub.sh", "cleaning for the snapshot")

    def service_command(self, action: str, role: str) -> str:
        service = f"dask-{role}"
        if action == "logs":
            return (
                f"cat {cloudscript.BOOTSTRAP_LOG} 2>/dev/null; "
                f"journalctl -u {service} --no-pager -n 200"
            )
        return f"systemctl {action} {service}"


def unusable_reason(line: str) -> str:
    """The ``<why>`` of the setup script's ``== snapshot not usable (<why>): ...`` line."""
    rest = line.removeprefix(cloudscript.SNAPSHOT_UNUSABLE).strip()
    if rest.startswith("("):
        end = rest.rfind("):")
        return rest[1:end] if end > 0 else rest[1:].rstrip(")")
    return rest


def profile_for_image(image: str, environment: NodeEnvironment) -> BootstrapProfile:
    """The bootstrap profile for servers of ``image`` (name or snapshot description).

    Raises
    ------
    SettingsError
        No profile knows how to set up this image; the message lists what works.
    """
    name = image.lower()
    if name == EMULATOR_IMAGE or name.startswith(EMULATOR_IMAGE + "-"):
        return EmulatorProfile(environment)
    if name.startswith(("ubuntu-", "debian-")) or name.startswith("scherbelberg-node-"):
        return CloudProfile(environment)
    raise SettingsError(
        f"no bootstrap profile for image {image!r}: use an Ubuntu or Debian image "
        f"(e.g. ubuntu-24.04, debian-12) or {EMULATOR_IMAGE!r} on the local emulator"
    )
