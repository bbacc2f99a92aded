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
#: Marker lines the script writes at the end of each phase (``== phase NAME EPOCH``).
PHASE_MARKER = "== phase"

#: The uv release nodes install, pinned by file and hash (checked before it runs).
UV_VERSION = "0.13.9"
UV_WHEELS = {
    "x86_64": (
        "https://files.pythonhosted.org/packages/3d/aa/"
        "26d64642d808de4a652579ef950d7cd2d37f080a8babf9c67c6b75fc4c3f/"
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    "aarch64": (
        "https://files.pythonhosted.org/packages/57/15/"
        "94b6cd62ac3ff6550288328e8035288875197cbc183f51554b266a69877b/"
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
}

_TEMPLATE = """\
#!/bin/bash
# scherbelberg-dask node setup ({role}); runs once as root on a fresh {user} node.
set -euo pipefail
exec > >(tee -a {log}) 2>&1
phase() {{ echo "{marker} $1 $(date +%s.%N)"; }}
echo "== scherbelberg-dask setup started $(date -Is)"

# 1. Wait for cloud-init to finish creating users and host keys.
cloud-init status --wait >/dev/null 2>&1 || echo "cloud-init: $(cloud-init status 2>&1 || true)"
phase cloud-init

# 2. uv {uv_version}, pinned by hash: a wheel from PyPI holds the binary (no apt, no pip).
if [ "$(uv --version 2>/dev/null)" != "uv {uv_version}" ]; then
    case "$(uname -m)" in
{uv_cases}
        *) echo "no uv build for $(uname -m)" >&2; exit 1 ;;
    esac
    tmp=$(mktemp -d)
    curl -fsS --retry 5 --retry-all-errors -o "$tmp/uv.whl" "$uv_url"
    echo "$uv_sha256  $tmp/uv.whl" | sha256sum -c --quiet -
    python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \\
n = next(n for n in z.namelist() if n.endswith(".data/scripts/uv")); \\
open(sys.argv[2], "wb").write(z.read(n))' "$tmp/uv.whl" "$tmp/uv"
    install -m 0755 "$tmp/uv" /usr/local/bin/uv
    rm -rf "$tmp"
fi
phase uv

# 3. Python {python}: the image's own when it matches the client, else uv's build.
system_python=$(command -v python{python} || true)
if [ -n "$system_python" ]; then
    python_spec=$system_python
else
    export UV_PYTHON_INSTALL_DIR=/opt/scherbelberg/python
    uv python install {python}
    python_spec={python}
fi
[ -x {venv_python} ] || uv venv --python "$python_spec" {venv}
uv pip install --python {venv_python} {requirements}
phase packages

# 4. The node's files belong to the unprivileged user.
install -d -m 0700 -o {user} -g {user} /home/{user}/{node_dir}
cp -r {node_dir}/. /home/{user}/{node_dir}/
chown -R {user}:{user} /home/{user}/{node_dir}
chmod -R go-rwx /home/{user}/{node_dir}
# The Dask user may read its service's journal and this log, nothing more.
usermod -aG systemd-journal {user}
chgrp {user} {log} && chmod 0640 {log}

# 5. Dask as a systemd service of the unprivileged user, restarted on failure.
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
phase service

# 6. SSH: keys only, and no root login from now on.
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
        marker=PHASE_MARKER,
        uv_version=UV_VERSION,
        uv_cases="\n".join(
            f"        {arch}) uv_url={url}; uv_sha256={digest} ;;"
            for arch, (url, digest) in UV_WHEELS.items()
        ),
        venv=VENV,
        venv_python=VENV_PYTHON,
        requirements=" ".join(shlex.quote(r) for r in environment.requirements),
    )
