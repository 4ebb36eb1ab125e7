#!/usr/bin/env bash
# `make cluster`: three nodes of deploy/cluster.toml on 127.0.0.1-3 (data in ./holdfast-data/node-N),
# the example services registered once (every node sees them), and how to call any node and kill one.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}/debug/holdfast}
PORT=${EXAMPLES_PORT:-9080}
mkdir -p holdfast-data

TICKET_EXPIRY_MS=${TICKET_EXPIRY_MS:-60000} node examples/services.mjs &
services=$!
pids=()
for n in 1 2 3; do
  HOLDFAST__NODE__ID=$n HOLDFAST_DATA_DIR=./holdfast-data/node-$n \
  HOLDFAST__INGRESS__BIND_ADDRESS=127.0.0.$n:8080 \
  HOLDFAST__ADMIN__BIND_ADDRESS=127.0.0.$n:9070 \
  HOLDFAST__SQL__BIND_ADDRESS=127.0.0.$n:9071 \
    "$BIN" serve --config deploy/cluster.toml >"holdfast-data/node-$n.log" 2>&1 &
  pids+=($!)
done
stop() {
  kill "$services" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

for n in 1 2 3; do
  until curl -fs "http://127.0.0.$n:9070/health" 2>/dev/null | grep -q '"status":"ok"'; do
    kill -0 "${pids[$((n - 1))]}" 2>/dev/null || { echo "node $n exited; see holdfast-data/node-$n.log" >&2; exit 1; }
    sleep 0.2
  done
done
for attempt in $(seq 1 50); do
  status=$(curl -s -o /tmp/holdfast-register.$$ -w '%{http_code}' -X POST http://127.0.0.2:9070/deployments \
    -H 'content-type: application/json' -d "{\"uri\":\"http://127.0.0.1:$PORT\"}")
  case $status in 200|201) break ;; esac
  sleep 0.2
done
case $status in 200|201) rm -f /tmp/holdfast-register.$$ ;;
  *) echo "registering the examples failed (HTTP $status): $(cat /tmp/holdfast-register.$$)" >&2; exit 1 ;;
esac
cat <<MSG

a three-node holdfast cluster is running (16 partitions, each on all three nodes):
  node 1: ingress http://127.0.0.1:8080  admin http://127.0.0.1:9070  psql 127.0.0.1:9071  pid ${pids[0]}
  node 2: ingress http://127.0.0.2:8080  admin http://127.0.0.2:9070  psql 127.0.0.2:9071  pid ${pids[1]}
  node 3: ingress http://127.0.0.3:8080  admin http://127.0.0.3:9070  psql 127.0.0.3:9071  pid ${pids[2]}
(logs and data in ./holdfast-data). Any node serves any request:

  curl -s -X POST http://127.0.0.1:8080/greeter/Ada/greet
  curl -s -X POST http://127.0.0.2:8080/greeter/Ada/greet          # the count goes on
  curl -s -X POST http://127.0.0.3:8080/UserSession/alice/addTicket -H 'content-type: application/json' -d '"seat-12A"'
  curl -s http://127.0.0.1:9070/cluster                              # members, leaders, replicas

Kill a node and keep calling the others (its partitions move within a few seconds):

  kill -9 ${pids[0]}
  curl -s -X POST http://127.0.0.2:8080/greeter/Ada/greet

Ctrl-C stops all three.
MSG
wait "${pids[@]}"
