#!/usr/bin/env bash
# Instructions per server unary call under callgrind, and their breakdown by layer.
#
#   bash benchmarks/callgrind.sh [--calls N] [--workloads connect-json,grpc-proto,...] [--keep DIR]
#   bash benchmarks/callgrind.sh --client [--calls N] ...   # the client's side instead
#
# Installs valgrind and h2load from Debian if missing. See benchmarks/callgrind.py.
set -euo pipefail
# A fixed hash seed: with a random one, dict layouts move the counts by a few hundred
# instructions from run to run.
export PYTHONHASHSEED=${PYTHONHASHSEED:-0}
cd "$(dirname "$0")/.."

source scripts/apt_install.sh
apt_install valgrind nghttp2-client
if [ ! -x .venv/bin/python ]; then
  bash scripts/setup.sh
fi
if ! .venv/bin/python -c "import grpc_tools, google.protobuf" 2>/dev/null; then
  .venv/bin/pip install -q -e ".[bench]"
fi
if [ "${1:-}" = "--client" ]; then
  shift
  exec .venv/bin/python -m benchmarks.client_callgrind "$@"
fi
exec .venv/bin/python -m benchmarks.callgrind "$@"
