#!/usr/bin/env bash
# Static checks: ruff (lint and format) and mypy on the package.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
