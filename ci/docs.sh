#!/usr/bin/env bash
# Build the documentation with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=docs bash ci/setup.sh
.venv/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
