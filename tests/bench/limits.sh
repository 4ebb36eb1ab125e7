#!/usr/bin/env bash
# What a limit costs the invocations it covers: the anchor services' `greet` (64 clients and 1)
# and `steps` (1 client) on a fresh single node, without a limit and under a limit that never
# binds (`max_concurrency` 100,000 on the service), alternating ROUNDS times. Uncovered
# invocations pay nothing for limits existing; covered ones pay the permit's round trip to the
# limit's home partition and the release. Prints one JSON line per run.
#
# tests/bench/limits.sh [BIN]   (default: the release build); env ROUNDS (2), SECONDS_PER_RUN (8)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}"
BIN=${1:-$CARGO_TARGET_DIR/release/holdfast}
[ -n "${1:-}" ] || cargo build --release -p holdfast >&2
ROUNDS=${ROUNDS:-2}
SECONDS_EACH=${SECONDS_PER_RUN:-8}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-limits.XXXXXX")
ADMIN=127.0.0.1:9070
INGRESS=127.0.0.1:8080
post() { curl -fs -o /dev/null -X POST "http://$ADMIN$1" -H 'content-type: application/json' -d "$2"; }

for round in $(seq "$ROUNDS"); do
  for mode in none limit; do
    rm -rf "$WORK/data"
    PORT=9080 node sdk-ts/test/fixtures/anchor-services.mjs >"$WORK/services.log" 2>&1 &
    services=$!
    HOLDFAST_DATA_DIR=$WORK/data HOLDFAST_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 &
    server=$!
    until curl -fs -o /dev/null "http://$ADMIN/health"; do sleep 0.05; done
    until post /deployments '{"uri":"http://127.0.0.1:9080"}'; do sleep 0.2; done
    if [ "$mode" = limit ]; then
      for service in Greeter Steps; do
        post /limits "{\"name\":\"wide-$service\",\"service\":\"$service\",\"max_concurrency\":100000}"
      done
    fi
    sleep 2  # every partition applies the limits within about a second
    for spec in "greet|/Greeter/greet|\"bench\"|64" "greet|/Greeter/greet|\"bench\"|1" "steps|/Steps/run3|{}|1"; do
      IFS='|' read -r name path body clients <<<"$spec"
      "$BIN" bench http --url "http://$INGRESS$path" --body "$body" --concurrency "$clients" \
        --seconds "$SECONDS_EACH" |
        python3 -c "import json,sys; r=json.load(sys.stdin); r.update(bench='limits', round=$round, mode='$mode', workload='$name'); print(json.dumps(r))"
    done
    kill -TERM "$server"; wait "$server" || true
    kill "$services"; wait "$services" 2>/dev/null || true
  done
done
rm -rf "$WORK"
