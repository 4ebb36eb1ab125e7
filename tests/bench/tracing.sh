#!/usr/bin/env bash
# The cost of tracing: the no-op invocation (`POST /Greeter/greet`, the anchor's handler code) with
# span export off and on, one after the other in the same run, each on a fresh data dir. With
# tracing on, every span goes over OTLP/HTTP to `otlp-sink` (a receiver that decodes and counts
# them), so the export path is real: encode, batch, POST.
#
# Usage: tracing.sh BIN RESULTS WORKDIR SECONDS
# Appends one JSON line per mode and concurrency (bench "tracing") to RESULTS.
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 SECONDS_EACH=$4
cd "$(dirname "$0")/../.."
ROOT=$PWD
INGRESS=127.0.0.1:8080
ADMIN=127.0.0.1:9070
SERVICES_PORT=9080
SINK_PORT=${SINK_PORT:-4318}

cargo build --release -p holdfast-e2e --bin otlp-sink >&2
SINK=$CARGO_TARGET_DIR/release/otlp-sink

services="" server="" sink=""
trap 'kill $services $server $sink 2>/dev/null || true' EXIT

"$SINK" --port "$SINK_PORT" >"$WORK/otlp-sink.log" 2>&1 &
sink=$!
until curl -fs -o /dev/null "http://127.0.0.1:$SINK_PORT/count"; do sleep 0.05; done

spans() { curl -fs "http://127.0.0.1:$SINK_PORT/count"; }
metric() { curl -fs "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

for mode in off on; do
  echo "== tracing $mode: no-op invocations" >&2
  rm -rf "$WORK/tracing-data"
  endpoint=""
  [ "$mode" = on ] && endpoint="http://127.0.0.1:$SINK_PORT"
  PORT=$SERVICES_PORT node "$ROOT/sdk-ts/test/fixtures/anchor-services.mjs" >"$WORK/tracing-services.log" 2>&1 &
  services=$!
  HOLDFAST_DATA_DIR=$WORK/tracing-data HOLDFAST_LOG=warn HOLDFAST__TRACING__ENDPOINT=$endpoint \
    "$BIN" serve >"$WORK/tracing-$mode.log" 2>&1 &
  server=$!
  until curl -fs -o /dev/null "http://$ADMIN/health"; do
    kill -0 "$server" 2>/dev/null || { echo "holdfast exited; see $WORK/tracing-$mode.log" >&2; exit 1; }
    sleep 0.05
  done
  until curl -fs -o /dev/null -X POST "http://$ADMIN/deployments" -H 'content-type: application/json' \
      -d "{\"uri\":\"http://127.0.0.1:$SERVICES_PORT\"}"; do sleep 0.2; done
  sleep 1
  for conc in 1 64; do
    before=$(spans)
    result=$("$BIN" bench http --url "http://$INGRESS/Greeter/greet" --body '"bench"' \
      --concurrency "$conc" --seconds "$SECONDS_EACH")
    sleep 1
    after=$(spans)
    dropped=$(metric holdfast_trace_spans_dropped_total)
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); r.update(bench='tracing', mode='$mode', spans_received=int(sys.argv[2])-int(sys.argv[3]), spans_dropped_total=float(sys.argv[4] or 0)); print(json.dumps(r))" \
      "$result" "$after" "$before" "${dropped:-0}" | tee -a "$RESULTS" >&2
  done
  kill -TERM "$server"; wait "$server" || true
  kill "$services" 2>/dev/null || true; wait "$services" 2>/dev/null || true
  server="" services=""
done
