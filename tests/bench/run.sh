#!/usr/bin/env bash
# `make bench`: measures the kernel on this machine and rewrites docs/benchmarks.md.
#
#   - raw fsync rate of the disk under the data dir (the physical limit of an fsync'd log)
#   - group commit: proposals/s and p50/p99 acknowledgement latency, 1 and 64 proposers,
#     on one partition and spread over all partitions (release build, fresh data dir each)
#   - start-up: process exec until /health reports every partition led
#   - resident memory of an idle node
#   - Restate 1.7.12's start-up and idle memory in the same run, when its anchor is available
#   - invocations beside Restate (tests/bench/invocations.sh), the floor (tests/bench/floor.sh)
#     and durable timers
#     (tests/bench/timers.sh: TIMERS_PENDING pending, a burst of TIMERS_BURST due at once)
#   - tracing overhead: the no-op invocation with span export off and on (tests/bench/tracing.sh)
#   - three nodes beside one node: invocation workloads, appends per fsync, leader loss
#     (tests/bench/cluster.sh)
#   - SQL introspection over 100,000 invocations and 1,000,000 state rows (`holdfast bench sql`)
#
# Env: SECONDS_PER_RUN (default 10), BENCH_DIR (default a fresh dir under $TMPDIR),
#      RESTATE_ANCHOR (default ../shared/bench/restate-anchor), OUT (default docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}"
RUN_SECONDS=${SECONDS_PER_RUN:-10}
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench.XXXXXX")}
OUT=${OUT:-docs/benchmarks.md}
ANCHOR=${RESTATE_ANCHOR:-../shared/bench/restate-anchor}
# Absolute, since the anchor is installed from inside another directory.
ANCHOR=$(cd "$ANCHOR" 2>/dev/null && pwd || echo "$ANCHOR")
mkdir -p "$WORK"

cargo build --release -p holdfast >&2
BIN=$CARGO_TARGET_DIR/release/holdfast
RESULTS=$WORK/results.jsonl
: >"$RESULTS"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
rss_mib() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }

echo "== fsync baseline" >&2
"$BIN" bench fsync --dir "$WORK" --seconds "$RUN_SECONDS" | tee -a "$RESULTS" >&2

for spread in one all; do
  for proposers in 1 64; do
    echo "== log: $proposers proposers, spread $spread" >&2
    rm -rf "$WORK/data"
    HOLDFAST_DATA_DIR=$WORK/data HOLDFAST_LOG=warn "$BIN" bench log --proposers "$proposers" \
      --spread "$spread" --seconds "$RUN_SECONDS" | tee -a "$RESULTS" >&2
  done
done

fsync_line="not measured (strace not installed)"
if command -v strace >/dev/null; then
  echo "== fsyncs per group commit (strace)" >&2
  rm -rf "$WORK/data"
  out=$(HOLDFAST_DATA_DIR=$WORK/data HOLDFAST__CLUSTER__PARTITIONS=1 HOLDFAST_LOG=warn \
    strace -f -qq -c -e trace=fsync,fdatasync,sync_file_range -o "$WORK/strace.txt" \
    "$BIN" bench log --proposers 64 --seconds 3)
  batches=$(field "$out" batches)
  syncs=$(awk '$NF ~ /^(fsync|fdatasync|sync_file_range)$/ {n += $4} END {print n+0}' "$WORK/strace.txt")
  fsync_line="$syncs fsync/fdatasync calls for $batches group commits on 1 partition (start-up, vote, periodic state flushes and shutdown included)"
fi

echo "== start-up and idle memory" >&2
startups=()
for i in 1 2 3 4 5; do
  rm -rf "$WORK/data"
  admin=127.0.0.1:$(free_port)
  t0=$(now_ms)
  HOLDFAST_DATA_DIR=$WORK/data HOLDFAST__ADMIN__BIND_ADDRESS=$admin HOLDFAST_LOG=warn "$BIN" serve &
  pid=$!
  until curl -fs "http://$admin/health" 2>/dev/null | grep -q '"status":"ok"'; do sleep 0.002; done
  startups+=($(( $(now_ms) - t0 )))
  if [ "$i" = 5 ]; then sleep 3; idle_rss=$(rss_mib "$pid"); threads=$(awk '/^Threads/{print $2}' "/proc/$pid/status"); fi
  kill -TERM "$pid"; wait "$pid"
done
sorted=$(printf '%s\n' "${startups[@]}" | sort -n | tr '\n' ' ')
startup_median=$(printf '%s\n' "${startups[@]}" | sort -n | sed -n 3p)

restate_line="not measured (no Restate anchor at $ANCHOR)|not measured"
restate_dir=""
if [ -d "$ANCHOR" ]; then
  restate_dir=$HOME/.cache/holdfast/restate-anchor
  if [ ! -x "$restate_dir/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server" ]; then
    mkdir -p "$restate_dir"
    (cd "$restate_dir" && cp "$ANCHOR"/package.json "$ANCHOR"/package-lock.json . && npm ci --no-audit --no-fund >&2)
  fi
  cp "$ANCHOR"/restate.toml "$ANCHOR"/services.mjs "$restate_dir"/
  echo "== Restate 1.7.12 start-up and idle memory (same run)" >&2
  rbin=$restate_dir/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server
  rdata=$WORK/restate
  rm -rf "$rdata"; mkdir -p "$rdata"
  t0=$(now_ms)
  "$rbin" --config-file "$restate_dir/restate.toml" --base-dir "$rdata" --bind-ip 127.0.0.1 --no-logo >"$WORK/restate.log" 2>&1 &
  rpid=$!
  until curl -fs -o /dev/null http://127.0.0.1:9070/health 2>/dev/null; do sleep 0.002; done
  r_startup=$(( $(now_ms) - t0 ))
  sleep 3
  r_rss=$(rss_mib "$rpid"); r_threads=$(awk '/^Threads/{print $2}' "/proc/$rpid/status")
  kill -TERM "$rpid"; wait "$rpid" || true
  restate_line="${r_startup} ms|${r_rss} MiB, ${r_threads} threads"
fi

if [ -f sdk-ts/dist/src/index.js ]; then
  tests/bench/invocations.sh "$BIN" "$RESULTS" "$WORK" "$RUN_SECONDS" "$restate_dir"
  tests/bench/floor.sh "$BIN" "$RESULTS" "$WORK" "$RUN_SECONDS"
  tests/bench/timers.sh "$BIN" "$RESULTS" "$WORK" "${TIMERS_PENDING:-100000}" "${TIMERS_BURST:-20000}"
  tests/bench/tracing.sh "$BIN" "$RESULTS" "$WORK" "$RUN_SECONDS"
  tests/bench/cluster.sh "$BIN" "$RESULTS" "$WORK" "$RUN_SECONDS"
else
  echo "== invocations: skipped, build the SDK first (make sdk)" >&2
fi

echo "== sql: 100,000 invocations and 1,000,000 state rows" >&2
rm -rf "$WORK/sql"
"$BIN" bench sql --dir "$WORK/sql" --invocations 100000 --state-rows 1000000 | tee -a "$RESULTS" >&2
rm -rf "$WORK/sql"

echo "{\"bench\":\"startup\",\"all_ms\":\"${sorted% }\",\"median_ms\":$startup_median,\"idle_rss_mib\":$idle_rss,\"threads\":$threads}" >>"$RESULTS"
python3 - "$restate_line" "$fsync_line" "$RUN_SECONDS" >>"$RESULTS" <<'PY'
import json, sys
restate, fsyncs, secs = sys.argv[1:]
print(json.dumps({"bench": "context", "restate": restate, "fsyncs": fsyncs, "seconds": secs}))
PY
python3 tests/bench/report.py "$RESULTS" "$OUT"
echo "wrote $OUT" >&2
