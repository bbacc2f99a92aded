"""The setup script for Ubuntu/Debian servers (the cloud profile).

It is rendered locally, uploaded, and run once as root.  Everything it does is visible
in the rendered text (``python -m scherbelberg_dask bootstrap-script`` prints it).  It must
never run on the emulator's host: only the emulator image executes there, and that image
uses the emulator profile instead.
"""

from __future__ import annotations

import hashlib
import shlex

from scherbelberg_dask.bootstrap.environment import PROBE, NodeEnvironment

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

#: The file in which the environment part records what it installed (its digest).
ENVIRONMENT_MARKER = "/opt/scherbelberg/environment"
#: Starts the line with what the client checks of the node's venv (:data:`PROBE` output).
PROBE_MARKER = "== environment probe"
#: The line a node booted from a snapshot prints when it cannot use the snapshot's install.
SNAPSHOT_UNUSABLE = "== snapshot not usable"

_HEADER = """\
#!/bin/bash
# scherbelberg-dask {what}; runs once as root.
set -euo pipefail
exec > >(tee -a {log}) 2>&1
phase() {{ echo "{marker} $1 $(date +%s.%N)"; }}
echo "== scherbelberg-dask setup started $(date -Is)"
{first_stage}
"""

#: A node's first step: cloud-init's first stage made the users and host keys before
#: sshd let root in (root's key comes after the users); its later stages (config, final:
#: about 2 s) run alongside the setup and are waited for before sshd is hardened.
_USERS_MADE = """
# 1. The users exist (else wait for cloud-init to make them).
id {user} >/dev/null 2>&1 || {wait_cloud_init}
"""

#: Waits for every stage of cloud-init (before sshd is hardened, and before a snapshot).
_WAIT_CLOUD_INIT = (
    "cloud-init status --wait >/dev/null 2>&1 || "
    'echo "cloud-init: $(cloud-init status 2>&1 || true)"'
)

#: The environment part: the same on every node of an environment, kept in snapshots.
_ENVIRONMENT = """\
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
"""

#: Run on a node: reuse the environment a snapshot brought along, or install it.
_REUSE_OR_INSTALL = """\
env_state="no environment marker"
venv_check='import importlib.metadata as m; m.version("dask"); m.version("distributed")'
if [ -f {env_marker} ]; then
    if [ "$(cat {env_marker})" != "{digest}" ]; then
        env_state="environment $(cat {env_marker}) differs from {digest}"
    elif ! {venv_python} -c "$venv_check" >/dev/null 2>&1; then
        env_state="its venv is broken"
    else
        env_state=ok
    fi
fi
if [ "$env_state" = ok ]; then
    echo "== environment {digest} present: install skipped"
    phase uv
else
    if [ "{from_snapshot}" = yes ]; then
        echo "{unusable} ($env_state): running the full setup"
    fi
{environment}
    echo "{digest}" > {env_marker}
fi
phase packages
"""

#: The node part: this node's files, its service, sshd hardening (never in a snapshot).
_NODE = """\
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

# 6. While Dask starts: what the client checks (the venv's Python and packages), then
#    the rest of cloud-init.
echo "{probe_marker} $({venv_python} -c {probe})"
{wait_cloud_init}
phase cloud-init

# 7. SSH: keys only, and no root login from now on.
cat > /etc/ssh/sshd_config.d/10-scherbelberg.conf <<'SSHD'
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
SSHD
systemctl reload ssh 2>/dev/null || systemctl reload sshd
passwd -l root >/dev/null
echo "== scherbelberg-dask setup done $(date -Is)"
"""

#: Run on an image builder before its snapshot: nothing of this server may be kept.
_SCRUB = """\
#!/bin/bash
# scherbelberg-dask image builder: remove everything that belongs to this one server.
set -uo pipefail
userdel -r {user} >/dev/null 2>&1 || true
rm -rf /root/.ssh /root/{node_dir} {log} /tmp/* /var/tmp/*
# uv's download cache is not part of the environment (a shared cache mount stays).
mountpoint -q /root/.cache/uv || rm -rf /root/.cache/uv
rm -f /etc/ssh/ssh_host_* /etc/ssh/sshd_config.d/10-scherbelberg.conf
cloud-init clean --logs --seed >/dev/null 2>&1 || cloud-init clean --logs
# An empty machine id, as in the base image: each server gets its own at boot.  (Not
# "uninitialized": that is a first boot, on which systemd re-applies unit presets.)
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Its name: cloud-init sets each new server's own on first boot.
sed -i "/$(hostname)/d" /etc/hosts
echo localhost > /etc/hostname
# The journal and login records name this server: stop journald, start new ones empty.
systemctl stop systemd-journald.socket systemd-journald-dev-log.socket \\
    systemd-journald-audit.socket systemd-journald >/dev/null 2>&1 || true
rm -rf /var/log/journal/* /run/log/journal/*
truncate -s 0 /var/log/wtmp /var/log/btmp /var/log/lastlog 2>/dev/null || true
sync
"""


def _header(what: str, *, first_stage: str) -> str:
    return _HEADER.format(
        what=what, log=BOOTSTRAP_LOG, marker=PHASE_MARKER, first_stage=first_stage
    )


def _environment_part(environment: NodeEnvironment) -> str:
    return _ENVIRONMENT.format(
        python=environment.python,
        uv_version=UV_VERSION,
        uv_cases="\n".join(
            f"        {arch}) uv_url={url}; uv_sha256={digest} ;;"
            for arch, (url, digest) in UV_WHEELS.items()
        ),
        venv=VENV,
        venv_python=VENV_PYTHON,
        requirements=" ".join(shlex.quote(r) for r in environment.requirements),
    )


def environment_digest(environment: NodeEnvironment) -> str:
    """A digest of what the environment part installs (its rendered text, 32 hex digits).

    It changes with the Python version, the exact package set, the uv pin and the
    script itself: a snapshot whose marker holds another digest is never reused.
    """
    text = _environment_part(environment)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _reuse_or_install(environment: NodeEnvironment, *, from_snapshot: bool) -> str:
    return _REUSE_OR_INSTALL.format(
        env_marker=ENVIRONMENT_MARKER,
        digest=environment_digest(environment),
        venv_python=VENV_PYTHON,
        from_snapshot="yes" if from_snapshot else "no",
        unusable=SNAPSHOT_UNUSABLE,
        environment=_environment_part(environment),
    )


#: The builder compiles the venv's bytecode once, so that no node made from the snapshot
#: compiles it again at every start (the Dask user may not write into the venv).
_COMPILE = f"""\
{VENV_PYTHON} -m compileall -q -j 0 {VENV} >/dev/null || true
phase compile
"""


def render_environment(environment: NodeEnvironment) -> str:
    """The setup script of an image builder: the environment part only, no node files."""
    return (
        _header("image builder", first_stage="")
        + _reuse_or_install(environment, from_snapshot=False)
        + f"{_WAIT_CLOUD_INIT}\nphase cloud-init\n"
        + _COMPILE
    )


def render_scrub(*, user: str, node_dir: str) -> str:
    """The script that cleans an image builder before its snapshot (docs/snapshots.md)."""
    return _SCRUB.format(user=user, node_dir=node_dir, log=BOOTSTRAP_LOG)


def render(
    environment: NodeEnvironment,
    *,
    role: str,
    user: str,
    node_dir: str,
    from_snapshot: bool = False,
) -> str:
    """The setup script for a node of ``role`` with the given environment.

    ``from_snapshot``: the server booted from a snapshot of this environment; if its
    install turns out unusable, the script says so (:data:`SNAPSHOT_UNUSABLE`) and runs
    the full setup.
    """
    if role not in ("scheduler", "worker"):
        raise ValueError(f"unknown role {role!r}")
    return (
        _header(
            f"node setup ({role})",
            first_stage=_USERS_MADE.format(user=user, wait_cloud_init=_WAIT_CLOUD_INIT),
        )
        + _reuse_or_install(environment, from_snapshot=from_snapshot)
        + "\n"
        + _NODE.format(
            role=role,
            user=user,
            node_dir=node_dir,
            log=BOOTSTRAP_LOG,
            venv_python=VENV_PYTHON,
            probe_marker=PROBE_MARKER,
            probe=shlex.quote(PROBE),
            wait_cloud_init=_WAIT_CLOUD_INIT,
        )
    )
