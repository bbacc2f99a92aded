"""The controller service of an autonomous cluster on Ubuntu and Debian servers.

Rendered by the client, run as root over the setup connection of the scheduler node
(before root login is off for good).  What it sets up (docs/autonomous.md):

- a system user :data:`CONTROLLER_USER` without login shell, whose home
  :data:`CONTROLLER_HOME` (mode 0700) holds the controller's files: its
  ``controller.json``, our own package as shipped by the client, and the copy of the
  cluster's local state (SSH key, CA) it needs to make workers;
- the API token in :data:`TOKEN_PATH`, owned by root, mode 0600, handed to the service
  only through systemd's ``LoadCredential=`` (readable by the service's processes, not
  by the Dask user, and not in the environment);
- the controller's Python dependencies in the node's venv, at the client's versions;
- a systemd unit ``scherbelberg-controller`` that runs as that user, restarts on
  failure and starts after a reboot.
"""

from __future__ import annotations

import shlex
from importlib import metadata

#: The controller's system user (the same name on the emulator image).
CONTROLLER_USER = "scherbelberg-ctl"
#: The controller's home on cloud images.
CONTROLLER_HOME = "/var/lib/scherbelberg-controller"
#: Directory of the token, root only.
TOKEN_DIR = "/etc/scherbelberg-controller"
TOKEN_PATH = f"{TOKEN_DIR}/hcloud-token"
#: The service's name (systemd unit and servicectl service).
SERVICE = "scherbelberg-controller"
#: Distributions the controller imports beyond those of every node (dask, distributed).
DEPENDENCIES = ("aiohttp", "asyncssh", "cryptography", "platformdirs", "PyYAML", "packaging")


def requirements() -> list[str]:
    """The controller's dependencies, pinned to the client's installed versions."""
    pins = []
    for name in DEPENDENCIES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def unit(python: str) -> str:
    """The systemd unit: our user, the token as a credential, restart on failure."""
    return f"""\
[Unit]
Description=scherbelberg-dask controller (adapts and deletes this cluster)
After=network-online.target dask-scheduler.service
Wants=network-online.target

[Service]
User={CONTROLLER_USER}
Group={CONTROLLER_USER}
WorkingDirectory={CONTROLLER_HOME}
Environment=PYTHONPATH={CONTROLLER_HOME}/scherbelberg_dask.zip
LoadCredential=hcloud-token:{TOKEN_PATH}
ExecStart={python} -m scherbelberg_dask.controller.service {CONTROLLER_HOME}/controller.json
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={CONTROLLER_HOME}
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def install_script(python: str, uv: str = "uv") -> str:
    """Shell script (run as root) that installs the controller from the uploaded files.

    Expects the controller's files in ``{CONTROLLER_HOME}.new`` and the token in
    ``{TOKEN_PATH}`` (both uploaded as root, mode 0600).
    """
    pins = " ".join(shlex.quote(p) for p in requirements())
    home = CONTROLLER_HOME
    return f"""\
set -eu
id -u {CONTROLLER_USER} >/dev/null 2>&1 || \\
    useradd --system --home-dir {home} --no-create-home --shell /usr/sbin/nologin {CONTROLLER_USER}
chown root:root {TOKEN_DIR} {TOKEN_PATH}
chmod 0700 {TOKEN_DIR}
chmod 0600 {TOKEN_PATH}
rm -rf {home}
mv {home}.new {home}
chown -R {CONTROLLER_USER}:{CONTROLLER_USER} {home}
chmod -R go-rwx {home}
export PATH=/usr/local/bin:$PATH
{uv} pip install --python {python} {pins}
cat > /etc/systemd/system/{SERVICE}.service <<'UNIT'
{unit(python)}UNIT
systemctl daemon-reload
systemctl enable --now {SERVICE}
"""
