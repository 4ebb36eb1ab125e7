#!/usr/bin/env bash
# Durable timers, with PENDING timers already stored:
#   1. registration throughput: PENDING delayed sends due in a day (64 clients);
#   2. firing throughput: BURST more, all due at one instant;
#   3. firing lateness: STEADY timers registered at a moderate pace (4 clients), each due 3 s after
#      it was sent, so lateness shows the timer's precision rather than a queue draining.
#
# Every timer is a delayed one-way send through the ingress (`POST /Tick/at/send?delay=…`), so
# registering one is an fsync'd group commit and firing one starts an invocation of a no-op
# handler, which prints when it started. Lateness = that start minus the deadline.
#
# Usage: timers.sh BIN RESULTS WORKDIR [PENDING] [BURST] [STEADY]
# Appends one `timers` JSON line to RESULTS.
set -euo pipefail
BIN=$1 RESULTS=$2 WORK=$3 PENDING=${4:-100000} BURST=${5:-20000} STEADY=${6:-10000}
cd "$(dirname "$0")/../.."
INGRESS=127.0.0.1:8080
ADMIN=127.0.0.1:9070
PORT=9080
LOG=$WORK/timer-services.log
now_ms() { date +%s%3N; }
rss_mib() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
# The process's peak resident memory so far (the kernel's high-water mark).
peak_mib() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
fired() { grep -c "^fired $1" "$LOG" || true; }
wait_fired() { # pattern count deadline-ms
  until [ "$(grep -cE "$1" "$LOG" || true)" -ge "$2" ]; do
    [ "$(now_ms)" -gt "$3" ] && { echo "timers did not fire in time" >&2; exit 1; }
    sleep 0.2
  done
}

mkdir -p "$WORK"
rm -rf "$WORK/timers-data"
PORT=$PORT node tests/bench/timer-services.mjs >"$LOG" 2>&1 &
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

echo "== timers: a burst of $BURST, all due at one instant" >&2
due=$(( $(now_ms) + 25000 ))
burst=$("$BIN" bench http --url "http://$INGRESS/Tick/at/send?delay={until}" --until-ms "$due" \
  --concurrency 64 --requests "$BURST" --seconds 3600)
echo "$burst" >&2
registered_at=$(now_ms)
wait_fired '^fired [0-9]+$' "$BURST" $(( due + 300000 ))
rss_burst=$(rss_mib "$server")
peak_burst=$(peak_mib "$server")

echo "== timers: $STEADY at a steady pace, each due 3 s after it was sent" >&2
steady=$("$BIN" bench http --url "http://$INGRESS/Tick/at/send?delay=3s" --body '{now}' \
  --concurrency 4 --requests "$STEADY" --seconds 3600)
echo "$steady" >&2
wait_fired '^fired [0-9]+ [0-9]+$' "$STEADY" $(( $(now_ms) + 300000 ))
rss_steady=$(rss_mib "$server")

python3 - "$pending" "$burst" "$steady" "$due" "$registered_at" "$LOG" "$PENDING" "$BURST" \
  "$rss_pending" "$rss_burst" "$rss_steady" "$peak_burst" >>"$RESULTS" <<'PY'
import json, sys
pending, burst, steady = (json.loads(a) for a in sys.argv[1:4])
due, registered_at = int(sys.argv[4]), int(sys.argv[5])
lines = [l.split() for l in open(sys.argv[6]) if l.startswith("fired ")]
burst_fired = sorted(int(l[1]) for l in lines if len(l) == 2)
steady_late = sorted(int(l[1]) - int(l[2]) - 3000 for l in lines if len(l) == 3)
def pct(values, p):
    return values[min(len(values) - 1, int(p / 100 * len(values)))]
span_s = max(1, burst_fired[-1] - max(due, burst_fired[0])) / 1000
burst_late = [t - due for t in burst_fired]
print(json.dumps({
    "bench": "timers",
    "pending": int(sys.argv[7]),
    "burst": int(sys.argv[8]),
    "steady": len(steady_late),
    "register_per_s": pending["per_second"],
    "register_p50_ms": pending["p50_ms"],
    "register_p99_ms": pending["p99_ms"],
    "burst_register_per_s": burst["per_second"],
    "burst_registered_before_due": registered_at <= due,
    "fire_per_s": round(len(burst_fired) / span_s, 1),
    "burst_last_ms": burst_late[-1],
    "steady_register_per_s": steady["per_second"],
    "lateness_p50_ms": pct(steady_late, 50),
    "lateness_p99_ms": pct(steady_late, 99),
    "lateness_max_ms": steady_late[-1],
    "rss_pending_mib": float(sys.argv[9]),
    "rss_after_burst_mib": float(sys.argv[10]),
    "rss_after_steady_mib": float(sys.argv[11]),
    "peak_through_burst_mib": float(sys.argv[12]),
}))
PY
tail -n 1 "$RESULTS" >&2
