#!/usr/bin/env bash
# Instructions per server unary call under callgrind, and their breakdown by layer.
#
#   bash benchmarks/callgrind.sh [--calls N] [--workloads connect-json,grpc-proto,...] [--keep DIR]
#
# Installs valgrind and h2load from Debian if missing. See benchmarks/callgrind.py.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(valgrind nghttp2-client)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
  bash scripts/setup.sh
fi
if ! .venv/bin/python -c "import grpc_tools, google.protobuf" 2>/dev/null; then
  .venv/bin/pip install -q -e ".[bench]"
fi
exec .venv/bin/python -m benchmarks.callgrind "$@"
