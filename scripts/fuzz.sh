#!/usr/bin/env bash
# Long fuzzing runs (the test suite runs each target for a few seconds only).
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 600 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(envelopes grpc_headers messages http1_head)
fi
mkdir -p .fuzz
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  PYTHONPATH=src .venv/bin/python -m tests.fuzz.run "$target" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -timeout=5 \
    -artifact_prefix=".fuzz/$target-"
done
