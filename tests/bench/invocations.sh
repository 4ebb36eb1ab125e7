#!/usr/bin/env bash
# Invocation throughput, latency and peak memory of Holdfast and Restate 1.7.12, one after the
# other in the same run, driving the same handler code (the anchor's services.mjs; Holdfast's copy
# differs only in its import) with the same load generator (`holdfast bench http`).
#
# Usage: invocations.sh BIN RESULTS WORKDIR SECONDS RESTATE_DIR
#   RESTATE_DIR: a directory where the anchor's npm packages are installed (empty: Holdfast only).
# Appends one JSON line per workload and engine to RESULTS, plus one `server` line per engine.
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 SECONDS_EACH=$4 RESTATE_DIR=${5:-}
cd "$(dirname "$0")/../.."
source tests/bench/workloads.sh
ROOT=$PWD
INGRESS=127.0.0.1:8080
ADMIN=127.0.0.1:9070
SERVICES_PORT=9080

rss_peak_mib() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat"; }

workloads=(
  "greet|/Greeter/greet|\"bench\""
  "counter_hot|/Counter/hot/add|1"
  "counter_1k|/Counter/k{key}/add|1"
  "steps|/Steps/run3|{}"
  "chain|/Chain/call|\"bench\""
)

run_engine() {
  local engine=$1 services_cmd=$2 server_cmd=$3
  echo "== $engine: invocations" >&2
  PORT=$SERVICES_PORT RESTATE_LOGGING=WARN ${services_cmd} >"$WORK/$engine-services.log" 2>&1 &
  services=$!
  bash -c "exec $server_cmd" >"$WORK/$engine-server.log" 2>&1 &
  server=$!
  until curl -fs -o /dev/null "http://$ADMIN/health"; do
    kill -0 "$server" 2>/dev/null || { echo "$engine exited; see $WORK/$engine-server.log" >&2; return 1; }
    sleep 0.05
  done
  until curl -fs -o /dev/null -X POST "http://$ADMIN/deployments" -H 'content-type: application/json' \
      -d "{\"uri\":\"http://127.0.0.1:$SERVICES_PORT\"}"; do sleep 0.2; done
  sleep 1
  local cpu0; cpu0=$(cpu_s "$server")
  run_workloads "$BIN" "$INGRESS" "$RESULTS" "$SECONDS_EACH" "{'engine': '$engine'}"
  local cpu1; cpu1=$(cpu_s "$server")
  echo "{\"bench\":\"server\",\"engine\":\"$engine\",\"peak_rss_mib\":$(rss_peak_mib "$server"),\"cpu_s\":$(python3 -c "print(round($cpu1-$cpu0,2))")}" | tee -a "$RESULTS" >&2
  kill -TERM "$server"; wait "$server" || true
  kill "$services" 2>/dev/null || true; wait "$services" 2>/dev/null || true
}

services="" server=""
# Whatever happens, leave no engine or endpoint running (the next engine needs the same ports).
trap 'kill $services $server 2>/dev/null || true' EXIT

rm -rf "$WORK/holdfast-data"
run_engine holdfast "node $ROOT/sdk-ts/test/fixtures/anchor-services.mjs" \
  "env HOLDFAST_DATA_DIR=$WORK/holdfast-data HOLDFAST_LOG=warn $BIN serve"

if [ -n "$RESTATE_DIR" ]; then
  rm -rf "$WORK/restate-data"; mkdir -p "$WORK/restate-data"
  run_engine restate "node $RESTATE_DIR/services.mjs" \
    "$RESTATE_DIR/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server --config-file $RESTATE_DIR/restate.toml --base-dir $WORK/restate-data --bind-ip 127.0.0.1 --no-logo"
fi
