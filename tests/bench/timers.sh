#!/usr/bin/env bash
# Durable timers: registration throughput with PENDING timers already stored, then a burst of
# BURST delayed sends that all come due at one instant — how fast they fire and how late.
#
# Every timer is a delayed one-way send through the ingress (`POST /Tick/at/send?delay=…`), so
# registering one is an fsync'd group commit and firing one starts an invocation of a no-op
# handler, which prints when it started. Lateness = that start minus the deadline.
#
# Usage: timers.sh BIN RESULTS WORKDIR [PENDING] [BURST]
# Appends one `timers` JSON line to RESULTS.
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 PENDING=${4:-100000} BURST=${5:-20000}
cd "$(dirname "$0")/../.."
INGRESS=127.0.0.1:8080
ADMIN=127.0.0.1:9070
PORT=9080
now_ms() { date +%s%3N; }
rss_mib() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }

rm -rf "$WORK/timers-data"
PORT=$PORT node tests/bench/timer-services.mjs >"$WORK/timer-services.log" 2>&1 &
services=$!
HOLDFAST_DATA_DIR=$WORK/timers-data HOLDFAST_LOG=warn "$BIN" serve >"$WORK/timers-server.log" 2>&1 &
server=$!
trap 'kill $services 2>/dev/null || true; kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
until curl -fs -o /dev/null "http://$ADMIN/health"; do sleep 0.05; done
until curl -fs -o /dev/null -X POST "http://$ADMIN/deployments" -H 'content-type: application/json' \
    -d "{\"uri\":\"http://127.0.0.1:$PORT\"}"; do sleep 0.2; done

echo "== timers: $PENDING pending (due in a day)" >&2
pending=$("$BIN" bench http --url "http://$INGRESS/Tick/at/send?delay=1d" --concurrency 64 \
  --requests "$PENDING" --seconds 3600)
echo "$pending" >&2
rss_pending=$(rss_mib "$server")

echo "== timers: $BURST more, all due at one instant" >&2
due=$(( $(now_ms) + 25000 ))
burst=$("$BIN" bench http --url "http://$INGRESS/Tick/at/send?delay={until}" --until-ms "$due" \
  --concurrency 64 --requests "$BURST" --seconds 3600)
echo "$burst" >&2
registered_at=$(now_ms)
until [ "$(grep -c '^fired ' "$WORK/timer-services.log" || true)" -ge "$BURST" ]; do
  [ $(( $(now_ms) - due )) -gt 300000 ] && { echo "the burst did not fire within 5 minutes" >&2; exit 1; }
  sleep 0.2
done
rss_fired=$(rss_mib "$server")

python3 - "$pending" "$burst" "$due" "$registered_at" "$WORK/timer-services.log" "$PENDING" "$BURST" \
  "$rss_pending" "$rss_fired" >>"$RESULTS" <<'PY'
import json, sys
pending, burst = json.loads(sys.argv[1]), json.loads(sys.argv[2])
due, registered_at = int(sys.argv[3]), int(sys.argv[4])
fired = sorted(int(l.split()[1]) for l in open(sys.argv[5]) if l.startswith("fired "))
late = [t - due for t in fired]
def pct(p):
    return late[min(len(late) - 1, int(p / 100 * len(late)))]
span_s = max(1, fired[-1] - max(due, fired[0])) / 1000
print(json.dumps({
    "bench": "timers",
    "pending": int(sys.argv[6]),
    "burst": int(sys.argv[7]),
    "register_per_s": pending["per_second"],
    "register_p50_ms": pending["p50_ms"],
    "register_p99_ms": pending["p99_ms"],
    "burst_register_per_s": burst["per_second"],
    "burst_registered_before_due": registered_at <= due,
    "fired": len(fired),
    "fire_per_s": round(len(fired) / span_s, 1),
    "lateness_p50_ms": pct(50),
    "lateness_p99_ms": pct(99),
    "lateness_max_ms": late[-1],
    "rss_pending_mib": float(sys.argv[8]),
    "rss_after_burst_mib": float(sys.argv[9]),
}))
PY
tail -n 1 "$RESULTS" >&2
