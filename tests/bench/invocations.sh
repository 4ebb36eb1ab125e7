#!/usr/bin/env bash
# Invocation throughput, latency and peak memory of Holdfast and Restate 1.7.12, one after the
# other in the same run, driving the same handler code (the anchor's services.mjs; Holdfast's copy
# differs only in its import) with the same load generator (`holdfast bench http`).
#
# Usage: invocations.sh BIN RESULTS WORKDIR SECONDS RESTATE_DIR
#   RESTATE_DIR: a directory where the anchor's npm packages are installed (empty: Holdfast only).
# Appends one JSON line per workload, client count and engine to RESULTS (with the CPU the server,
# the Node endpoint and the load generator spent per completed request), one `drain` line per run
# of the one-way `send` workload (how long the engine took to execute the backlog it accepted), and
# one `server` line per engine: peak memory, CPU, and the data dir's size while running and after a
# graceful stop, beside the number of invocations the run completed.
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

DRAIN_TIMEOUT_S=120

# One number from the engine's SQL endpoint (both engines answer `{"rows":[{"n":…}]}`).
sql_count() {
  curl -fs -m 10 -X POST "http://$ADMIN/query" -H 'accept: application/json' -H 'content-type: application/json' \
    -d "{\"query\":\"$1\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["n"])'
}
unfinished() { sql_count "SELECT count(*) AS n FROM sys_invocation WHERE status <> 'completed'"; }

# Called by run_workloads after each run: a `send` run returns once its invocations are accepted,
# so wait until the engine has executed them (or DRAIN_TIMEOUT_S passed) and record how long that took.
after_workload() {
  [ "$1" = send ] || return 0
  local t0 left drained=0 start now
  t0=$(date +%s%3N)
  start=$(unfinished || echo -1)
  left=$start
  while [ "$left" != 0 ]; do
    now=$(date +%s%3N)
    [ $(( now - t0 )) -ge $(( DRAIN_TIMEOUT_S * 1000 )) ] && break
    sleep 0.1
    left=$(unfinished || echo -1)
  done
  [ "$left" = 0 ] && drained=1
  echo "{\"bench\":\"drain\",\"engine\":\"$engine\",\"workload\":\"$1\",\"concurrency\":$2,\"invocations\":$start,\"left\":$left,\"drained\":$([ $drained = 1 ] && echo true || echo false),\"seconds\":$(python3 -c "print(round(($(date +%s%3N) - $t0) / 1000, 3))")}" \
    | tee -a "$RESULTS" >&2
}

# Allocated and apparent KiB of a directory.
disk_kib() { echo "$(du -sk "$1" | cut -f1) $(du -sk --apparent-size "$1" | cut -f1)"; }

run_engine() {
  local services_cmd=$2 server_cmd=$3 data_dir=$4
  engine=$1
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
  run_workloads "$BIN" "$INGRESS" "$RESULTS" "$SECONDS_EACH" "{'engine': '$engine'}" "server:$server" "sdk:$services"
  local cpu1; cpu1=$(cpu_s "$server")
  local peak; peak=$(rss_peak_mib "$server")
  local recorded; recorded=$(sql_count "SELECT count(*) AS n FROM sys_invocation" || echo null)
  local running; running=$(disk_kib "$data_dir")
  # A hook for tests/bench/link-order.sh: more work on the loaded engine, after the figures are taken.
  [ -z "${BENCH_BEFORE_STOP:-}" ] || $BENCH_BEFORE_STOP
  kill -TERM "$server"; wait "$server" || true
  local stopped; stopped=$(disk_kib "$data_dir")
  python3 - "$engine" "$peak" "$cpu0" "$cpu1" "$workloads_ops" "$recorded" $running $stopped <<'PY' | tee -a "$RESULTS" >&2
import json, sys
engine, peak, cpu0, cpu1, ops, recorded, run_kib, run_app_kib, stop_kib, stop_app_kib = sys.argv[1:]
print(json.dumps({"bench": "server", "engine": engine, "peak_rss_mib": float(peak),
                  "cpu_s": round(float(cpu1) - float(cpu0), 2),
                  "invocations": int(ops), "sys_invocation_rows": json.loads(recorded),
                  "disk_running_kib": int(run_kib), "disk_running_apparent_kib": int(run_app_kib),
                  "disk_stopped_kib": int(stop_kib), "disk_stopped_apparent_kib": int(stop_app_kib)}))
PY
  kill "$services" 2>/dev/null || true; wait "$services" 2>/dev/null || true
}

services="" server="" engine=""
# Whatever happens, leave no engine or endpoint running (the next engine needs the same ports).
trap 'kill $services $server 2>/dev/null || true' EXIT

rm -rf "$WORK/holdfast-data"
run_engine holdfast "node $ROOT/sdk-ts/test/fixtures/anchor-services.mjs" \
  "env HOLDFAST_DATA_DIR=$WORK/holdfast-data HOLDFAST_LOG=warn $BIN serve" "$WORK/holdfast-data"

if [ -n "$RESTATE_DIR" ]; then
  rm -rf "$WORK/restate-data"; mkdir -p "$WORK/restate-data"
  run_engine restate "node $RESTATE_DIR/services.mjs" \
    "$RESTATE_DIR/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server --config-file $RESTATE_DIR/restate.toml --base-dir $WORK/restate-data --bind-ip 127.0.0.1 --no-logo" "$WORK/restate-data"
fi
