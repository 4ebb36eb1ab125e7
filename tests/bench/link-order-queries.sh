#!/usr/bin/env bash
# The introspection queries a user runs, over HTTP (`POST /query`) and psql (when installed), so
# tests/bench/link-order.sh profiles the SQL paths beyond the benchmark's one count.
set -uo pipefail
ADMIN=${ADMIN:-127.0.0.1:9070} PSQL_PORT=${PSQL_PORT:-9071}
queries=(
  "SELECT count(*) AS n FROM sys_invocation WHERE status <> 'completed'"
  "SELECT target_service_name, status, count(*) AS n FROM sys_invocation GROUP BY 1, 2 ORDER BY 1, 2"
  "SELECT * FROM sys_invocation ORDER BY id LIMIT 5"
  "SELECT service, method, id, status, invoked_by_service, invoked_by_id FROM sys_status LIMIT 20"
  "SELECT service, service_key_utf8, key, value_utf8 FROM state LIMIT 20"
  "SELECT * FROM sys_journal LIMIT 20"
)
for q in "${queries[@]}"; do
  curl -s -o /dev/null -m 30 -X POST "http://$ADMIN/query" -H 'accept: application/json' \
    -H 'content-type: application/json' -d "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$q")"
  if command -v psql >/dev/null; then
    psql -h 127.0.0.1 -p "$PSQL_PORT" -X -q -c "$q" >/dev/null 2>&1 </dev/null || true
  fi
done
