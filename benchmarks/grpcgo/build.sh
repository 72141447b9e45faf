#!/usr/bin/env bash
# Builds the grpc-go benchmark server (main.go) in GOPATH mode from Debian's packages:
#   bash benchmarks/grpcgo/build.sh OUT
# Installs golang-go and golang-google-grpc-dev with apt if they are missing. No module
# download and no code generation: the ServiceDesc is written by hand.
set -euo pipefail
out=${1:?usage: build.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/apt_install.sh"
apt_install golang-go golang-google-grpc-dev
gopath=$(dirname "$out")/gopath
mkdir -p "$gopath"
cd "$here"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOCACHE="$gopath/cache" \
  go build -o "$out" .
