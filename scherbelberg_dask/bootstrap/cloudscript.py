"""The setup script for Ubuntu/Debian servers (the cloud profile).

It is rendered locally, uploaded, and run once as root.  Everything it does is visible
in the rendered text (``python -m scherbelberg_dask bootstrap-script`` prints it).  It must
never run on the emulator's host: only the emulator image executes there, and that image
uses the emulator profile instead.
"""

from __future__ import annotations

import shlex

from scherbelberg_dask.bootstrap.environment import NodeEnvironment

VENV = "/opt/scherbelberg/venv"
VENV_PYTHON = f"{VENV}/bin/python"
BOOTSTRAP_LOG = "/var/log/scherbelberg-bootstrap.log"

_TEMPLATE = """\
#!/bin/bash
# scherbelberg-dask node setup ({role}); runs once as root on a fresh {user} node.
set -euo pipefail
exec > >(tee -a {log}) 2>&1
echo "== scherbelberg-dask setup started $(date -Is)"

# 1. Wait for cloud-init to finish creating users and host keys.
cloud-init status --wait >/dev/null 2>&1 || true

# 2. uv and the client's Python {python} in a venv, with the client's exact versions.
export DEBIAN_FRONTEND=noninteractive
if ! command -v uv >/dev/null; then
    apt-get update -q
    apt-get install -y -q python3-pip python3-venv curl ca-certificates
    python3 -m pip install --break-system-packages -q uv || python3 -m pip install -q uv
fi
export UV_PYTHON_INSTALL_DIR=/opt/scherbelberg/python
uv python install {python}
[ -x {venv_python} ] || uv venv --python {python} {venv}
uv pip install --python {venv_python} {requirements}

# 3. The node's files belong to the unprivileged user.
install -d -m 0700 -o {user} -g {user} /home/{user}/{node_dir}
cp -r {node_dir}/. /home/{user}/{node_dir}/
chown -R {user}:{user} /home/{user}/{node_dir}
chmod -R go-rwx /home/{user}/{node_dir}
# The Dask user may read its service's journal and this log, nothing more.
usermod -aG systemd-journal {user}
chgrp {user} {log} && chmod 0640 {log}

# 4. Dask as a systemd service of the unprivileged user, restarted on failure.
cat > /etc/systemd/system/dask-{role}.service <<'UNIT'
[Unit]
Description=Dask {role} (scherbelberg-dask)
After=network-online.target
Wants=network-online.target

[Service]
User={user}
Group={user}
WorkingDirectory=/home/{user}
ExecStart={venv_python} /home/{user}/{node_dir}/node_runner.py run /home/{user}/{node_dir}/node.json
Restart=on-failure
RestartSec=2
NoNewPrivileges=true
ProtectSystem=full

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now dask-{role}

# 5. SSH: keys only, and no root login from now on.
cat > /etc/ssh/sshd_config.d/10-scherbelberg.conf <<'SSHD'
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
SSHD
systemctl reload ssh 2>/dev/null || systemctl reload sshd
passwd -l root >/dev/null
echo "== scherbelberg-dask setup done $(date -Is)"
"""


def render(environment: NodeEnvironment, *, role: str, user: str, node_dir: str) -> str:
    """The setup script for a node of ``role`` with the given environment."""
    if role not in ("scheduler", "worker"):
        raise ValueError(f"unknown role {role!r}")
    return _TEMPLATE.format(
        role=role,
        user=user,
        node_dir=node_dir,
        log=BOOTSTRAP_LOG,
        python=environment.python,
        venv=VENV,
        venv_python=VENV_PYTHON,
        requirements=" ".join(shlex.quote(r) for r in environment.requirements),
    )
