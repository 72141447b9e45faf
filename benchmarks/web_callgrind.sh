#!/usr/bin/env bash
# Instructions (callgrind Ir) per hosted ASGI request, without sockets: the difference of a
# 3000-request and a 1000-request run of benchmarks/web_inproc.py, divided by 2000. The
# figure does not move with machine load (the hash seed is fixed: with a random one, dict
# layouts move it by a few hundred instructions from run to run).
#
#   bash benchmarks/web_callgrind.sh h1|h2 [raw|scope|head]   (raw: the transport and server
#        only, a fixed response instead of the app; scope, head: with the ASGI scope, then
#        also the response head, made and dropped)
#   bash benchmarks/web_callgrind.sh uvicorn                   (uvicorn's HTTP/1.1 protocol)
#   APP=benchmarks.web_apps:fastapi_app bash benchmarks/web_callgrind.sh h1   (another app)
set -euo pipefail
export PYTHONHASHSEED=0
cd "$(dirname "$0")/.."
proto=${1:-h2}; raw=${2:-}; app=${APP:-hello}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m benchmarks.web_inproc gen h2 4000 "$work/h2.pkl"
for n in 1000 3000; do
  if [ "$proto" = uvicorn ]; then
    args=(uvicorn "$n" "$app")
  else
    args=(run "$proto" "$n" "$work/h2.pkl" "$app")
  fi
  RAW=$raw valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" --dump-instr=no \
    .venv/bin/python -m benchmarks.web_inproc "${args[@]}" >/dev/null 2>&1 &
done
wait
a=$(grep -h "^summary" "$work/cg.1000" | cut -d' ' -f2)
b=$(grep -h "^summary" "$work/cg.3000" | cut -d' ' -f2)
echo "$proto${raw:+ ($raw)} $app: $(( (b - a) / 2000 )) instructions per request"
