#!/usr/bin/env bash
# Regenerates kernel/holdfast/link-order.txt: the functions the release kernel executes over the
# benchmark's workloads and SQL queries, which build.rs asks the linker to place side by side.
# Each round builds the release binary with the current list, runs the Holdfast half of
# tests/bench/invocations.sh, then the introspection queries of link-order-queries.sh, under
# `perf record` of instruction-fetch page faults (Debian package linux-perf; run as root), and
# appends every function on those faults' call stacks that the list lacks. For the run, read-ahead
# on the binary's disk is 0 and the binary is dropped from the page cache, so every page of code
# the kernel executes faults on its own instead of being mapped with its neighbours (read-ahead is
# restored after). A page faults once, naming the first function run on it, so each round finds
# functions the previous one hid; stop when a round adds few.
# Usage: tests/bench/link-order.sh [ROUNDS] [SECONDS_EACH]
set -euo pipefail
ROUNDS=${1:-5} SECONDS_EACH=${2:-2}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/holdfast/target}"
LIST=$PWD/kernel/holdfast/link-order.txt
BIN=$CARGO_TARGET_DIR/release/holdfast
command -v perf >/dev/null || { echo "link-order: needs perf (Debian package linux-perf)" >&2; exit 1; }
WORK=$(mktemp -d)
READ_AHEAD=/sys/class/bdi/$(findmnt -no MAJ:MIN -T "$CARGO_TARGET_DIR" | head -1 | tr -d " ")/read_ahead_kb
[ -w "$READ_AHEAD" ] || { echo "link-order: cannot set $READ_AHEAD (run as root on a block device)" >&2; exit 1; }
SAVED_READ_AHEAD=$(cat "$READ_AHEAD")
trap 'echo "$SAVED_READ_AHEAD" > "$READ_AHEAD"; rm -rf "$WORK"' EXIT
make sdk >&2

# Only `serve` runs under perf; the load generator (`holdfast bench http`) runs from a copy, so the
# pages it executes do not enter the page cache of the binary `serve` maps.
cat > "$WORK/holdfast" <<WRAP
#!/usr/bin/env bash
if [ "\$1" = serve ]; then
  exec perf record -q -e exceptions:page_fault_user --filter 'error_code & 16' \\
    --call-graph dwarf,8192 -o "$WORK/faults.data" -- "$BIN" "\$@"
fi
exec "$WORK/loadgen" "\$@"
WRAP
chmod +x "$WORK/holdfast"

for round in $(seq "$ROUNDS"); do
  echo "== link order: round $round of $ROUNDS" >&2
  cargo build --release -p holdfast >&2
  cp "$BIN" "$WORK/loadgen"
  sync "$BIN"
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$BIN"
  echo 0 > "$READ_AHEAD"
  BENCH_BEFORE_STOP=tests/bench/link-order-queries.sh tests/bench/invocations.sh "$WORK/holdfast" "$WORK/results.jsonl" "$WORK" "$SECONDS_EACH" "" >/dev/null
  echo "$SAVED_READ_AHEAD" > "$READ_AHEAD"
  DEBUGINFOD_URLS='' perf script --no-inline -i "$WORK/faults.data" -F ip,sym,dso --no-demangle 2>/dev/null \
    | python3 tests/bench/link-order.py "$LIST" "$BIN"
done
cargo build --release -p holdfast >&2
