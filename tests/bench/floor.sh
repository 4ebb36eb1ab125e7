#!/usr/bin/env bash
# The floor beside the engines: `holdfast bench floor` (one thread, the kernel's HTTP/2 client and
# codec, one group commit per durable point and nothing else) runs the invocation benchmark's
# workloads with the same endpoint and load generator: with a redb log, with a plain file, and with
# the redb log committed on a thread of its own (as the kernel's log writer commits). What an engine
# spends above the floor is its own design; what the floor spends, any engine on this machine with
# this endpoint spends too.
#
# Usage: floor.sh BIN RESULTS WORKDIR SECONDS
# Appends one JSON line per workload, client count and variant to RESULTS, tagged `engine`
# `floor-redb`, `floor-file` or `floor-redb-thread`, with the CPU of the floor and of the endpoint
# per request, and one `floor-counters` line per variant (requests, records, group commits).
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 SECONDS_EACH=$4
cd "$(dirname "$0")/../.."
source tests/bench/workloads.sh
ROOT=$PWD
INGRESS=127.0.0.1:8080
DRAIN_TIMEOUT_S=120

# A one-way `send` returns once accepted: wait until the floor has run what it accepted, so the
# run's CPU covers whole invocations, as the engines' runs do.
after_workload() {
  [ "$1" = send ] || return 0
  local t0 start left
  t0=$(date +%s%3N)
  start=$(curl -fs -m 5 "http://$INGRESS/in-flight" || echo -1)
  left=$start
  until [ "$left" = 0 ]; do
    [ $(( $(date +%s%3N) - t0 )) -lt $(( DRAIN_TIMEOUT_S * 1000 )) ] || { echo "floor: backlog not drained" >&2; return 1; }
    sleep 0.1
    left=$(curl -fs -m 5 "http://$INGRESS/in-flight" || echo -1)
  done
  echo "{\"bench\":\"drain\",\"engine\":\"floor-$floor_name\",\"workload\":\"$1\",\"concurrency\":$2,\"invocations\":$start,\"left\":0,\"drained\":true,\"seconds\":$(python3 -c "print(round(($(date +%s%3N) - $t0) / 1000, 3))")}" \
    | tee -a "$RESULTS" >&2
}

services="" floor=""
trap 'kill $services $floor 2>/dev/null || true' EXIT
for variant in "redb|redb|" "file|file|" "redb-thread|redb|--log-thread"; do
  # Not `name`: run_workloads has a local of that name, which after_workload would see.
  IFS='|' read -r floor_name log extra <<<"$variant"
  echo "== floor ($floor_name)" >&2
  rm -rf "$WORK/floor-$floor_name"
  PORT=9080 node "$ROOT/sdk-ts/test/fixtures/anchor-services.mjs" >"$WORK/floor-services.log" 2>&1 &
  services=$!
  "$BIN" bench floor --listen "$INGRESS" --endpoint http://127.0.0.1:9080 --dir "$WORK/floor-$floor_name" \
    --log "$log" $extra >"$WORK/floor-$floor_name.json" 2>"$WORK/floor-$floor_name.log" &
  floor=$!
  until curl -fs -o /dev/null "http://$INGRESS/in-flight" && curl -s -o /dev/null --http2-prior-knowledge \
      http://127.0.0.1:9080/discover; do
    kill -0 "$floor" 2>/dev/null || { cat "$WORK/floor-$floor_name.log" >&2; exit 1; }
    sleep 0.05
  done
  run_workloads "$BIN" "$INGRESS" "$RESULTS" "$SECONDS_EACH" "{'engine': 'floor-$floor_name'}" "server:$floor" "sdk:$services"
  kill -TERM "$floor"; wait "$floor" || true
  # Every invocation must have completed, the one-way ones too, or the figures mean nothing.
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["bench"]="floor-counters"; print(json.dumps(r))
sys.exit(1 if r["failures"] else 0)' "$WORK/floor-$floor_name.json" | tee -a "$RESULTS" >&2
  kill "$services" 2>/dev/null || true; wait "$services" 2>/dev/null || true
  services="" floor=""
done
