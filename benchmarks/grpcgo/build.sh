#!/usr/bin/env bash
# Builds the grpc-go benchmark server (main.go) in GOPATH mode from Debian's packages:
#   bash benchmarks/grpcgo/build.sh OUT
# Installs golang-go and golang-google-grpc-dev with apt if they are missing. No module
# download and no code generation: the ServiceDesc is written by hand.
set -euo pipefail
out=${1:?usage: build.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
apt_packages=(golang-go golang-google-grpc-dev)
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
gopath=$(dirname "$out")/gopath
mkdir -p "$gopath"
cd "$here"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOCACHE="$gopath/cache" \
  go build -o "$out" .
