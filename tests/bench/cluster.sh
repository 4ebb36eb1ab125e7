#!/usr/bin/env bash
# Three nodes beside one node on this machine: the same invocation workloads through node 1's
# ingress (every partition replicated on all three nodes, so each acknowledged step is fsync'd on
# two of three before it is answered), how many raft appends share one fsync of the node's
# raft-log file, and how long the partitions node 1 led take to answer again after a kill -9.
#
# Usage: cluster.sh BIN RESULTS WORKDIR SECONDS
# Appends `cluster_http` lines (mode single|three), one `cluster_log` line per node and one
# `cluster_failover` line to RESULTS.
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 SECONDS_EACH=$4
cd "$(dirname "$0")/../.."
source tests/bench/workloads.sh
ROOT=$PWD
SERVICES_PORT=9180
PARTITIONS=8
FAILOVER_KEYS=32

workloads=(
  "greet|/Greeter/greet|\"bench\""
  "counter_1k|/Counter/k{key}/add|1"
  "steps|/Steps/run3|{}"
)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
metric() { curl -fs "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }

pids=() services=""
cleanup() { kill ${pids[@]+"${pids[@]}"} $services 2>/dev/null || true; }
trap cleanup EXIT

# Node i's config: every listener on its own port, all three nodes listed.
declare -A ingress admin raft
write_config() {
  local id=$1 count=$2 file=$WORK/cluster/node-$id.toml
  {
    echo "[node]"; echo "id = $id"; echo "data_dir = \"$WORK/cluster/data-$id\""
    echo "[ingress]"; echo "bind_address = \"${ingress[$id]}\""
    echo "[admin]"; echo "bind_address = \"${admin[$id]}\""
    echo "[sql]"; echo "bind_address = \"127.0.0.1:$(free_port)\""
    echo "[cluster]"; echo "partitions = $PARTITIONS"; echo "replication_factor = $count"
    for n in $(seq 1 "$count"); do
      echo "[[cluster.nodes]]"; echo "id = $n"; echo "address = \"${raft[$n]}\""
    done
  } >"$file"
  echo "$file"
}

start_nodes() {
  local count=$1
  rm -rf "$WORK/cluster"; mkdir -p "$WORK/cluster"
  for id in $(seq 1 "$count"); do
    ingress[$id]=127.0.0.1:$(free_port); admin[$id]=127.0.0.1:$(free_port); raft[$id]=127.0.0.1:$(free_port)
  done
  pids=()
  for id in $(seq 1 "$count"); do
    HOLDFAST_LOG=warn "$BIN" serve --config "$(write_config "$id" "$count")" >"$WORK/cluster/node-$id.log" 2>&1 &
    pids+=($!)
  done
  for id in $(seq 1 "$count"); do
    until curl -fs "http://${admin[$id]}/health" 2>/dev/null | grep -q '"status":"ok"'; do sleep 0.05; done
  done
  until curl -fs -o /dev/null -X POST "http://${admin[1]}/deployments" -H 'content-type: application/json' \
      -d "{\"uri\":\"http://127.0.0.1:$SERVICES_PORT\"}"; do sleep 0.2; done
  for id in $(seq 1 "$count"); do
    until curl -fs "http://${admin[$id]}/services" | grep -q Greeter; do sleep 0.05; done
  done
  sleep 1
}

stop_nodes() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

PORT=$SERVICES_PORT node "$ROOT/sdk-ts/test/fixtures/anchor-services.mjs" >"$WORK/cluster-services.log" 2>&1 &
services=$!

for mode in single three; do
  count=1; [ "$mode" = three ] && count=3
  echo "== cluster bench: $mode node(s)" >&2
  start_nodes "$count"
  declare -A appends0 syncs0 commits0
  for id in $(seq 1 "$count"); do
    appends0[$id]=$(metric "${admin[$id]}" holdfast_log_appends_total)
    syncs0[$id]=$(metric "${admin[$id]}" holdfast_log_fsyncs_total)
    commits0[$id]=$(metric "${admin[$id]}" holdfast_log_commits_total)
  done
  run_workloads "$BIN" "${ingress[1]}" "$RESULTS" "$SECONDS_EACH" "{'bench': 'cluster_http', 'mode': '$mode'}"
  for id in $(seq 1 "$count"); do
    python3 - "$mode" "$id" "${appends0[$id]}" "$(metric "${admin[$id]}" holdfast_log_appends_total)" \
      "${syncs0[$id]}" "$(metric "${admin[$id]}" holdfast_log_fsyncs_total)" \
      "${commits0[$id]}" "$(metric "${admin[$id]}" holdfast_log_commits_total)" <<'PY' | tee -a "$RESULTS" >&2
import json, sys
mode, node, a0, a1, s0, s1, c0, c1 = sys.argv[1:]
print(json.dumps({"bench": "cluster_log", "mode": mode, "node": int(node),
                  "appends": int(float(a1) - float(a0)), "fsyncs": int(float(s1) - float(s0)),
                  "commits": int(float(c1) - float(c0))}))
PY
  done
  if [ "$mode" = three ]; then
    # kill -9 node 1 (it leads about a third of the partitions), then call FAILOVER_KEYS keys
    # (objects spread over every partition) through node 2 until each has answered.
    kill -9 "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
    t0=$(now_ms)
    pending=$(seq 0 $((FAILOVER_KEYS - 1)))
    while [ -n "$pending" ]; do
      left=""
      for k in $pending; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST "http://${ingress[2]}/Counter/failover$k/add" \
          -H 'content-type: application/json' -H "idempotency-key: failover-$k" -d 1 || true)
        [ "$code" = 200 ] || left="$left $k"
      done
      pending=$left
    done
    echo "{\"bench\":\"cluster_failover\",\"keys\":$FAILOVER_KEYS,\"all_answered_ms\":$(( $(now_ms) - t0 ))}" | tee -a "$RESULTS" >&2
    pids=("${pids[@]:1}")
  fi
  stop_nodes
done
