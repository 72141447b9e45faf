#!/usr/bin/env bash
# Instructions (callgrind Ir) per hosted ASGI request, without sockets: the difference of a
# 3000-request and a 1000-request run of benchmarks/web_inproc.py, divided by 2000. The
# figure does not move with machine load (the hash seed is fixed: with a random one, dict
# layouts move it by a few hundred instructions from run to run).
#
#   bash benchmarks/web_callgrind.sh h1|h2 [raw]     (raw: the transport and server only,
#                                                    a fixed response instead of the app)
set -euo pipefail
export PYTHONHASHSEED=0
cd "$(dirname "$0")/.."
proto=${1:-h2}; raw=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m benchmarks.web_inproc gen h2 4000 "$work/h2.pkl"
for n in 1000 3000; do
  RAW=$raw valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" --dump-instr=no \
    .venv/bin/python -m benchmarks.web_inproc run "$proto" $n "$work/h2.pkl" hello >/dev/null 2>&1 &
done
wait
a=$(grep -h "^summary" "$work/cg.1000" | cut -d' ' -f2)
b=$(grep -h "^summary" "$work/cg.3000" | cut -d' ' -f2)
echo "$proto${raw:+ (raw)}: $(( (b - a) / 2000 )) instructions per request"
