#!/usr/bin/env bash
# Installs everything h2mesh's demo and tests need on a fresh Debian machine:
# system peers (curl, nghttp2-client, openssl, grpc-proto for the gRPC interop protos,
# etcd-server for the discovery tests, prometheus and chromium for the admin-page and /docs
# tests) and a virtualenv in .venv with the package.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/apt_install.sh
apt_install curl nghttp2-client openssl grpc-proto etcd-server nginx haproxy prometheus chromium

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"

# Node.js peers of the interop tests (grpc-js, connect-node, buf), pinned by
# tests/interop/node/package-lock.json (see its README); reinstalled only when the lock changes.
node_dir=tests/interop/node
lock_stamp="$node_dir/node_modules/.h2mesh-lock.sha256"
if ! command -v npm >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends nodejs npm
fi
if ! command -v npm >/dev/null; then
  echo "setup: npm (Node.js >= 20) is needed for the interop tests in $node_dir" >&2
  exit 1
fi
if [ ! -f "$lock_stamp" ] || ! sha256sum --check --status "$lock_stamp" 2>/dev/null; then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
  sha256sum "$node_dir/package-lock.json" > "$lock_stamp"
fi
