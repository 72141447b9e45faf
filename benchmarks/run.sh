#!/usr/bin/env bash
# Side-by-side benchmark of h2mesh against its peers (see docs/benchmarks.md).
#
#   bash benchmarks/run.sh [--quick | --smoke] [--systems a,b] [--workloads x,y] [--out DIR]
#
# Installs what is missing (the `bench` extra into .venv; h2o and h2load from Debian; the
# grpc-go server built from Debian's Go packages, benchmarks/grpcgo/build.sh),
# then runs every workload for every system and writes benchmarks/results/latest.{json,md,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/apt_install.sh
apt_install h2o nghttp2-client \
    || echo "warning: could not install h2o or nghttp2-client; those rows will read 'unavailable'" >&2

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import grpc, grpc_tools, grpclib, connectrpc, pyqwest, granian, fastapi, matplotlib" 2>/dev/null; then
  .venv/bin/pip install -q -e ".[bench]" \
    || echo "warning: could not install the bench extra; missing peers will read 'unavailable'" >&2
fi

# grpc-go (Debian golang-go + golang-google-grpc-dev, GOPATH mode): built once into the
# temp directory; if it cannot be built, its row reads "unavailable" with the reason.
go_dir="${TMPDIR:-/tmp}/h2mesh-bench-go"
export H2MESH_GRPC_GO="$go_dir/grpcgo"
want_go=1
case " $* " in *" --smoke "*) want_go=0 ;; esac  # the smoke run is h2mesh only
if [ "$want_go" = 1 ] && { [ ! -x "$H2MESH_GRPC_GO" ] || [ benchmarks/grpcgo/main.go -nt "$H2MESH_GRPC_GO" ]; }; then
  mkdir -p "$go_dir"
  if ! bash benchmarks/grpcgo/build.sh "$H2MESH_GRPC_GO" >"$go_dir/build.log" 2>&1; then
    rm -f "$H2MESH_GRPC_GO"
    H2MESH_GRPC_GO_WHY="build failed: $(tail -n 3 "$go_dir/build.log" | tr '\n' ' ' | cut -c1-200)"
    export H2MESH_GRPC_GO_WHY
    echo "warning: could not build the grpc-go server ($go_dir/build.log); its row will read 'unavailable'" >&2
  fi
fi

exec .venv/bin/python -m benchmarks.harness "$@"
