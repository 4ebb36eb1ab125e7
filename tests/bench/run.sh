#!/usr/bin/env bash
# `make bench`: measures the kernel on this machine and rewrites docs/benchmarks.md.
#
#   - raw fsync rate of the disk under the data dir (the physical limit of an fsync'd log)
#   - group commit: proposals/s and p50/p99 acknowledgement latency, 1 and 64 proposers,
#     on one partition and spread over all partitions (release build, fresh data dir each)
#   - start-up: process exec until /health reports every partition led
#   - resident memory of an idle node
#   - Restate 1.7.12's start-up and idle memory in the same run, when its anchor is available
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
else
  echo "== invocations: skipped, build the SDK first (make sdk)" >&2
fi

python3 - "$RESULTS" "$OUT" "$RUN_SECONDS" "$sorted" "$startup_median" "$idle_rss" "$threads" "$restate_line" "$fsync_line" <<'PY'
import json, sys, platform, datetime, os
results, out, secs, startups, median, rss, threads, restate, fsyncs = sys.argv[1:]
rows = [json.loads(l) for l in open(results) if l.strip()]

def ratio(ours, theirs):
    """ours / theirs from the leading numbers of two cells, or a dash when one is missing."""
    try:
        return f"{float(str(ours).split()[0]) / float(theirs.split()[0]):.3f}×"
    except (ValueError, IndexError, ZeroDivisionError):
        return "—"
fsync = next(r for r in rows if r["bench"] == "fsync")
logs = [r for r in rows if r["bench"] == "log"]
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
"# Benchmarks",
"",
"Produced by `make bench` (`tests/bench/run.sh`), release build, on "
f"{datetime.date.today()}: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}. "
"Load generator and kernel share the machine; figures are percentiles of one run, compare ratios, "
"not absolute values, across machines.",
"",
"## Group commit through the partition log",
"",
f"`holdfast bench log --proposers N --spread one|all --seconds {secs}` on a fresh data dir: "
"N proposers each propose a 100-byte `SetState` and wait for its acknowledgement, which is sent "
"only after the batch holding it is fsync'd in the raft log and applied. Beside it, "
f"`holdfast bench fsync --seconds {secs}`: 4 KiB append + fdatasync in a loop on the same disk, the "
"physical limit of one fsync'd log.",
"",
"| workload | proposals/s | p50 ms | p99 ms | commands per fsync | vs raw fsync rate |",
"|---|---|---|---|---|---|",
f"| raw fsync (4 KiB + fdatasync) | {fsync['per_second']:.0f} fsync/s | {fsync['p50_ms']:.3f} | {fsync['p99_ms']:.3f} | 1 | 1.00× |",
]
for r in logs:
    where = "1 partition" if r["spread"] == "one" else f"{r['partitions']} partitions"
    per_batch = r["ops"] / max(r["batches"], 1)
    lines.append(f"| {r['proposers']} proposer(s), {where} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {per_batch:.1f} | {r['per_second']/fsync['per_second']:.2f}× |")
inv = [r for r in rows if r["bench"] == "http"]
servers = {r["engine"]: r for r in rows if r["bench"] == "server"}
if inv:
    def cell(engine, name, conc):
        return next((r for r in inv if r["engine"] == engine and r["workload"] == name and r["concurrency"] == conc), None)
    lines += [
    "",
    "## Invocations, beside Restate 1.7.12 in the same run",
    "",
    "Same machine, same handler code (the anchor's `services.mjs`; Holdfast's copy differs only in its import), "
    f"same load generator: `holdfast bench http --concurrency C --seconds {secs}` (closed loop, one keep-alive "
    "HTTP/1.1 connection per client) against each engine's ingress, one engine after the other on fresh data dirs, "
    "durability on (Holdfast fsyncs every acknowledged step). Workloads: `greet` = `POST /Greeter/greet` (no durable "
    "step); `counter_hot` = `POST /Counter/hot/add` (one key); `counter_1k` = `/Counter/k<0..999>/add`; `steps` = "
    "`/Steps/run3` (three `ctx.run`); `chain` = `/Chain/call` (a durable call to Greeter).",
    "",
    "| workload | clients | Holdfast req/s | p50 / p99 ms | Restate req/s | p50 / p99 ms | throughput × | p50 ratio |",
    "|---|---|---|---|---|---|---|---|",
    ]
    for name in ["greet", "counter_hot", "counter_1k", "steps", "chain"]:
        for conc in [1, 64]:
            h, r = cell("holdfast", name, conc), cell("restate", name, conc)
            if not h:
                continue
            hs = f"{h['per_second']:.0f} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f}"
            if r:
                rs = f"{r['per_second']:.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
                ratio = f"{h['per_second']/max(r['per_second'],1e-9):.2f}× | {h['p50_ms']/max(r['p50_ms'],1e-9):.2f}"
            else:
                rs, ratio = "— | —", "— | —"
            fails = h.get("failures", 0) + (r.get("failures", 0) if r else 0)
            lines.append(f"| {name} | {conc} | {hs} | {rs} | {ratio} |" + (f" ({fails} failed requests)" if fails else ""))
    h, r = servers.get("holdfast"), servers.get("restate")
    if h:
        rr = f"{r['peak_rss_mib']} MiB" if r else "—"
        ratio = f"{h['peak_rss_mib']/r['peak_rss_mib']:.2f}×" if r else "—"
        lines += ["", f"Peak resident memory of the server over all invocation workloads (VmHWM): Holdfast {h['peak_rss_mib']} MiB, "
                  f"Restate {rr} (ratio {ratio}). Server CPU over the workloads: Holdfast {h['cpu_s']} s"
                  + (f", Restate {r['cpu_s']} s." if r else ".")]
lines += [
"",
f"Fsyncs on the acknowledgement path, counted with `strace -f -c` around `holdfast bench log --proposers 64 "
f"--seconds 3` on one partition: {fsyncs}. Each group commit costs one fdatasync of the raft log; applied "
"state is flushed in the background.",
"",
"## Start-up and memory",
"",
"`holdfast serve` on a fresh data dir with the default 8 partitions: time from exec until `GET /health` "
"reports every partition led, five starts; then resident memory after 3 s idle.",
"",
"| metric | Holdfast | Restate 1.7.12 (same run) | Holdfast / Restate |",
"|---|---|---|---|",
f"| start-up to healthy, median (all runs, ms) | {median} ms ({startups.strip()}) | {restate.split('|')[0]} | {ratio(median, restate.split('|')[0])} |",
f"| idle resident memory | {rss} MiB, {threads} threads | {restate.split('|')[1]} | {ratio(rss, restate.split('|')[1])} |",
"",
"Command: `make bench` (`SECONDS_PER_RUN` sets the run length). Raw results of the last run are JSON lines "
"printed by each `holdfast bench` command.",
]
open(out, "w").write("\n".join(lines) + "\n")
PY
echo "wrote $OUT" >&2
