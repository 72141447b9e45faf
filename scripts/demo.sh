#!/usr/bin/env bash
# The demo: starts the example Greeter service, calls it with h2mesh's client,
# curl (HTTP/2 and HTTP/1.1) and the h2mesh CLI, then stops the server gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

log=$(mktemp)
h2mesh serve examples.greeter:Greeter --host 127.0.0.1 --port 0 >"$log" 2>&1 &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  url=$(grep -o 'http://[0-9.:]*' "$log" | head -n1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
echo "== server on $url"

echo "== h2mesh client (all four call kinds)"
python examples/client.py "$url"

echo "== curl, HTTP/2 prior knowledge"
curl -sS --http2-prior-knowledge -H 'content-type: application/json' \
  -d '{"name":"curl"}' "$url/demo.v1.Greeter/SayHello"; echo
echo "== curl, HTTP/1.1, GET on an idempotent method"
curl -sS --http1.1 "$url/demo.v1.Greeter/SayHello?encoding=json&message=%7B%22name%22%3A%22get%22%7D"; echo

echo "== h2mesh call (server stream: one JSON per line)"
h2mesh call "$url" demo.v1.Greeter/Count '{"to":3}'

kill -TERM $server_pid
wait $server_pid
echo "== server stopped gracefully"

echo "== mesh: three replicas register themselves; a least_request client balances over them"
python examples/mesh_demo.py
