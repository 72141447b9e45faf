#!/usr/bin/env bash
# Web-application hosting benchmark: the same bare ASGI, FastAPI and Flask apps on h2mesh,
# granian, h2corn, hypercorn, uvicorn and gunicorn (see benchmarks/web.py).
#
#   bash benchmarks/run_web.sh [--smoke] [--duration S] [--repeat N] [--servers a,b] [--apps x,y] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v h2load >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends nghttp2-client
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import granian, h2corn, hypercorn, uvicorn, gunicorn, fastapi, flask, matplotlib" 2>/dev/null; then
  .venv/bin/pip install -q -e ".[bench]" \
    || echo "warning: could not install the bench extra; missing servers will read 'not installed'" >&2
fi
exec .venv/bin/python -m benchmarks.web "$@"
