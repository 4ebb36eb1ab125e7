# Sourced by the invocation benchmarks: runs every workload of the array `workloads`
# ("name|path|body", `{key}` in a path spreads over 1000 keys) at 1 and 64 clients.
#
# run_workloads BIN INGRESS RESULTS SECONDS TAGS
#   TAGS: a Python dict literal merged into each result line, e.g. "{'engine': 'holdfast'}".
run_workloads() {
  local bin=$1 ingress=$2 results=$3 seconds=$4 tags=$5 spec name path body conc
  for spec in "${workloads[@]}"; do
    IFS='|' read -r name path body <<<"$spec"
    for conc in 1 64; do
      "$bin" bench http --url "http://$ingress$path" --body "$body" --concurrency "$conc" \
        --seconds "$seconds" --keys 1000 \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r.update($tags); r.update(workload='$name'); print(json.dumps(r))" \
        | tee -a "$results" >&2
    done
  done
}
