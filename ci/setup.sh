#!/usr/bin/env bash
# Set up everything the tests need, from scratch: system packages, a venv, the package.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ssh >/dev/null || need+=(openssh-client)
command -v tmux >/dev/null || need+=(tmux)
# The Debian-server tier boots real Debian userlands (systemd-nspawn) built by debootstrap.
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt-get install -y -q "${need[@]}"
    else
        sudo apt-get update -q && sudo apt-get install -y -q "${need[@]}"
    fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test${EXTRAS:+,$EXTRAS}]"
