# Sourced by the invocation benchmarks: runs every workload of the array `workloads`
# ("name|path|body", `{key}` in a path spreads over 1000 keys) at 1 and 64 clients.
#
# run_workloads BIN INGRESS RESULTS SECONDS TAGS [ROLE:PID ...]
#   TAGS: a Python dict literal merged into each result line, e.g. "{'engine': 'holdfast'}".
#   ROLE:PID: processes whose CPU time (utime + stime) is sampled before and after each run, e.g.
#     server:1234 sdk:5678; each adds `ROLE_cpu_ms` and `ROLE_cpu_ms_per_req` (per completed
#     request) to the run's line. The load generator's own CPU is always added as `loadgen_cpu_ms`
#     and `loadgen_cpu_ms_per_req`.
# If the caller defines a shell function `after_workload`, it is called as
# `after_workload NAME CLIENTS` after each run and before the CPU is sampled again, so work a run
# leaves queued (one-way sends) counts toward that run.
# Sets `workloads_ops` to the number of requests completed over all runs.

# The invocation benchmark's workloads, beside Restate's (invocations.sh) and part by part
# (critical-path.sh); a script with other workloads sets `workloads` after sourcing this.
workloads=(
  "greet|/Greeter/greet|\"bench\""
  "counter_hot|/Counter/hot/add|1"
  "counter_1k|/Counter/k{key}/add|1"
  "steps|/Steps/run3|{}"
  "chain|/Chain/call|\"bench\""
  "send|/Greeter/greet/send|\"bench\""
  "sleep|/Sleeper/nap|10"
)

# CPU time of a process so far, in clock ticks (utime + stime of /proc/PID/stat; the fields are
# counted after the command name, which may contain spaces).
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  awk '{print $12 + $13}' <<<"$stat"
}

run_workloads() {
  local bin=$1 ingress=$2 results=$3 seconds=$4 tags=$5 spec name path body conc line
  shift 5
  local samplers=("$@") sampler before after timing
  local tck; tck=$(getconf CLK_TCK)
  timing=$(mktemp)
  workloads_ops=0
  for spec in "${workloads[@]}"; do
    IFS='|' read -r name path body <<<"$spec"
    for conc in 1 64; do
      before=""
      for sampler in ${samplers[@]+"${samplers[@]}"}; do before="$before ${sampler%%:*}=$(cpu_ticks "${sampler#*:}")"; done
      # bash's `time` reports the load generator's user and system seconds.
      if ! line=$( { TIMEFORMAT='%U %S'; time "$bin" bench http --url "http://$ingress$path" --body "$body" \
          --concurrency "$conc" --seconds "$seconds" --keys 1000; } 2>"$timing"); then
        cat "$timing" >&2; rm -f "$timing"; return 1
      fi
      head -n -1 "$timing" >&2
      if declare -F after_workload >/dev/null; then after_workload "$name" "$conc"; fi
      after=""
      for sampler in ${samplers[@]+"${samplers[@]}"}; do after="$after ${sampler%%:*}=$(cpu_ticks "${sampler#*:}")"; done
      line=$(python3 - "$line" "$before" "$after" "$tck" "$(tail -n 1 "$timing")" <<PY
import json, sys
r = json.loads(sys.argv[1])
before = dict(kv.split("=") for kv in sys.argv[2].split())
after = dict(kv.split("=") for kv in sys.argv[3].split())
tck = float(sys.argv[4])
ops = max(r.get("ops", 0), 1)
for role, t0 in before.items():
    ms = (float(after[role]) - float(t0)) * 1000 / tck
    r[role + "_cpu_ms"] = round(ms, 1)
    r[role + "_cpu_ms_per_req"] = round(ms / ops, 4)
try:
    user, system = map(float, sys.argv[5].split())
    r["loadgen_cpu_ms"] = round((user + system) * 1000, 1)
    r["loadgen_cpu_ms_per_req"] = round((user + system) * 1000 / ops, 4)
except ValueError:
    pass
r.update($tags)
r.update(workload="$name")
print(json.dumps(r))
PY
)
      echo "$line" | tee -a "$results" >&2
      workloads_ops=$(( workloads_ops + $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ops'])" "$line") ))
    done
  done
  rm -f "$timing"
}
