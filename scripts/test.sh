#!/usr/bin/env bash
# The test command: installs what it needs, then lint, type-check and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
