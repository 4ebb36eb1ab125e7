#!/usr/bin/env bash
# Where one client's request spends its wall time, per workload: the partitions' threads, the raft
# log writer, the disk, the ingress, the Node endpoint and the load generator. Each workload of
# the invocation benchmark runs at one client against a fresh kernel while `perf sched record`
# (Debian package linux-perf; run as root) records every context switch of the machine for a few
# seconds; tests/bench/critical-path.py gives each instant to what ran then. Prints one markdown
# row per workload, in microseconds per request. Recording adds its own cost: compare the parts,
# not the totals, with runs made without it.
# Usage: tests/bench/critical-path.sh [BIN] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}/release/holdfast}
SECONDS_EACH=${2:-3}
command -v perf >/dev/null || { echo "critical-path: needs perf (Debian package linux-perf)" >&2; exit 1; }
source tests/bench/workloads.sh
WORK=$(mktemp -d)
kernel="" services="" loadgen=""
trap 'kill $kernel $services $loadgen 2>/dev/null || true; rm -rf "$WORK"' EXIT

parts=(partitions "log writer" disk ingress "kernel, other threads" endpoint "load generator" "two at once" idle "other processes")

printf '| workload | p50 ms |'; printf ' %s |' "${parts[@]}"; printf ' wall per request |\n'
printf '|---|---|'; printf -- '---|%.0s' "${parts[@]}"; printf -- '---|\n'
for spec in "${workloads[@]}"; do
  IFS='|' read -r name path body <<<"$spec"
  rm -rf "$WORK/data"
  PORT=9080 node "$ROOT/sdk-ts/test/fixtures/anchor-services.mjs" >"$WORK/services.log" 2>&1 &
  services=$!
  HOLDFAST_DATA_DIR=$WORK/data HOLDFAST_LOG=warn "$BIN" serve >"$WORK/kernel.log" 2>&1 &
  kernel=$!
  until curl -fs -o /dev/null http://127.0.0.1:9070/health; do
    kill -0 "$kernel" 2>/dev/null || { cat "$WORK/kernel.log" >&2; exit 1; }
    sleep 0.05
  done
  until curl -fs -o /dev/null -X POST http://127.0.0.1:9070/deployments -H 'content-type: application/json' \
      -d '{"uri":"http://127.0.0.1:9080"}'; do sleep 0.2; done
  # A warm-up, then the recorded run: the recording starts a second into it and ends a second
  # before it does.
  "$BIN" bench http --url "http://127.0.0.1:8080$path" --body "$body" --concurrency 1 --seconds 2 --keys 1000 >/dev/null
  "$BIN" bench http --url "http://127.0.0.1:8080$path" --body "$body" --concurrency 1 \
    --seconds $((SECONDS_EACH + 2)) --keys 1000 >"$WORK/run.json" &
  loadgen=$!
  sleep 1
  python3 - "$kernel" "$services" "$loadgen" >"$WORK/tids.json" <<'PY'
import json, os, sys
def tids(pid):
    return os.listdir(f"/proc/{pid}/task")
kernel, services, loadgen = sys.argv[1:]
print(json.dumps({
    "kernel": {t: open(f"/proc/{kernel}/task/{t}/comm").read().strip() for t in tids(kernel)},
    "endpoint": [int(t) for t in tids(services)],
    "loadgen": [int(t) for t in tids(loadgen)],
}))
PY
  perf sched record -q -o "$WORK/sched.data" -- sleep "$SECONDS_EACH" >/dev/null 2>&1
  wait "$loadgen"; loadgen=""
  perf script -i "$WORK/sched.data" -F cpu,time,event,trace 2>/dev/null >"$WORK/sched.txt"
  # Requests completed while recording: the run's rate over the recorded seconds.
  requests=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["per_second"]*float(sys.argv[2]))' \
    "$WORK/run.json" "$SECONDS_EACH")
  python3 tests/bench/critical-path.py "$WORK/sched.txt" "$WORK/tids.json" "$requests" >"$WORK/parts.json"
  python3 - "$name" "$WORK/run.json" "$WORK/parts.json" "${parts[@]}" <<'PY'
import json, sys
name, run, parts, order = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4:]
cells = [f"{parts.get(p, 0):.0f}" for p in order]
print(f"| {name} | {run['p50_ms']:.2f} | " + " | ".join(cells) + f" | {parts['wall']:.0f} |")
PY
  kill "$kernel" "$services"; wait "$kernel" "$services" 2>/dev/null || true
  kernel="" services=""
done
