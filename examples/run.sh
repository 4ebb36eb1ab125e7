#!/usr/bin/env bash
# `make run`: a single-node kernel on the embedded default configuration, with the example
# services started and registered, and the commands to call them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}/debug/holdfast}
PORT=${EXAMPLES_PORT:-9080}

# Reservations expire after a minute here (15 minutes by default), so the timer can be watched.
TICKET_EXPIRY_MS=${TICKET_EXPIRY_MS:-60000} node examples/services.mjs &
services=$!
"$BIN" serve &
kernel=$!
trap 'kill "$services" 2>/dev/null; kill -TERM "$kernel" 2>/dev/null; wait "$kernel" 2>/dev/null || true' EXIT INT TERM

until curl -fs http://127.0.0.1:9070/health 2>/dev/null | grep -q '"status":"ok"'; do
  kill -0 "$kernel" 2>/dev/null || { echo "holdfast exited" >&2; exit 1; }
  sleep 0.1
done
# The services may still be starting: retry registration for a while, then show why it failed.
for attempt in $(seq 1 50); do
  status=$(curl -s -o /tmp/holdfast-register.$$ -w '%{http_code}' -X POST http://127.0.0.1:9070/deployments \
    -H 'content-type: application/json' -d "{\"uri\":\"http://127.0.0.1:$PORT\"}")
  case $status in 200|201) break ;; esac
  kill -0 "$services" 2>/dev/null || { echo "the example services exited" >&2; exit 1; }
  sleep 0.2
done
case $status in 200|201) rm -f /tmp/holdfast-register.$$ ;;
  *) echo "registering the examples failed (HTTP $status): $(cat /tmp/holdfast-register.$$)" >&2; exit 1 ;;
esac
cat <<MSG

holdfast is running: ingress http://127.0.0.1:8080, admin http://127.0.0.1:9070, psql 127.0.0.1:9071
(data in ./holdfast-data)

web UI: http://127.0.0.1:9070/ui   (invocations, journals, state, deployments, SQL, cluster)
example services registered from http://127.0.0.1:$PORT. Try:

  curl -s -X POST http://127.0.0.1:8080/greeter/Ada/greet
  curl -s -X POST http://127.0.0.1:8080/greeter/Ada/greet          # counts per name
  curl -s -X POST http://127.0.0.1:8080/UserSession/alice/addTicket -H 'content-type: application/json' -d '"seat-12A"'
  curl -s -X POST http://127.0.0.1:8080/UserSession/bob/addTicket   -H 'content-type: application/json' -d '"seat-12A"'   # false: taken
  curl -s -X POST http://127.0.0.1:8080/UserSession/alice/cart      # ["seat-12A"]; empty again after 1 minute
  curl -s -X POST http://127.0.0.1:8080/UserSession/alice/checkout  # within the minute: the ticket is sold
  curl -s -X POST http://127.0.0.1:8080/TicketService/seat-12A/status
  curl -s http://127.0.0.1:9070/services
  psql -h 127.0.0.1 -p 9071 -c 'SELECT service, method, id, status FROM sys_status;'
  curl -s http://127.0.0.1:9070/health
  curl -s http://127.0.0.1:9070/metrics | grep holdfast_invocations_completed_total

Traces: \`HOLDFAST__TRACING__ENDPOINT=http://127.0.0.1:4318 make run\` exports every invocation's
trace to an OTLP collector listening there, such as Jaeger (deploy/jaeger/README.md).

Ctrl-C stops both (in-flight commits finish, stores close cleanly).
MSG
wait "$kernel"
