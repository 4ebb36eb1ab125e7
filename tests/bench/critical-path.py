#!/usr/bin/env python3
"""Where one client's request spends its wall time, from a `perf sched record` of the machine.

Usage: critical-path.py SCHED_SCRIPT TIDS_JSON REQUESTS
  SCHED_SCRIPT  `perf script -F cpu,time,event,trace` of a `perf sched record`
  TIDS_JSON     {"kernel": {tid: comm}, "endpoint": [tid], "loadgen": [tid]}
  REQUESTS      requests completed during the recording

With one client, the request is the machine's only work, so at every instant the threads on the
CPUs are what the request is waiting on. Each instant of the recording is given to what ran then:
one thread alone goes to its part (below); two threads at once go to "two at once"; no thread
running goes to "disk" while a thread of the kernel sleeps uninterruptibly (in fdatasync),
otherwise to "idle" (a wake-up on its way, or a timer). Prints one JSON object: microseconds per
request by part.
"""
import json
import re
import sys
from collections import Counter

SWITCH = re.compile(
    r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch: prev_comm=.+? prev_pid=(\d+) prev_prio=\d+ "
    r"prev_state=(\S+) ==> next_comm=.+? next_pid=(\d+)"
)


def part_of(tid, tids):
    """The part a running thread's time belongs to."""
    comm = tids["kernel"].get(str(tid))
    if comm is not None:
        if comm.startswith("holdfast-part"):
            return "partitions"
        if comm.startswith("holdfast-log"):
            return "log writer"
        # actix-web's workers serve the ingress and the admin API; with one client calling
        # the ingress, the admin API is idle.
        if comm.startswith("actix-rt"):
            return "ingress"
        return "kernel, other threads"
    if tid in tids["endpoint"]:
        return "endpoint"
    if tid in tids["loadgen"]:
        return "load generator"
    return "other processes"


def main():
    script, tids_path, requests = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with open(tids_path) as f:
        tids = json.load(f)
    events = []
    with open(script) as f:
        for line in f:
            m = SWITCH.search(line)
            if m:
                events.append((float(m[2]), int(m[1]), int(m[3]), m[4], int(m[5])))
    events.sort()
    running = {}
    sleeping_on_disk = set()
    spent = Counter()
    last = events[0][0]
    for at, cpu, prev, prev_state, nxt in events:
        busy = [tid for tid in running.values() if tid != 0]
        span = at - last
        if not busy:
            spent["disk" if sleeping_on_disk else "idle"] += span
        elif len(busy) == 1:
            spent[part_of(busy[0], tids)] += span
        else:
            spent["two at once"] += span
        if prev_state.startswith("D") and str(prev) in tids["kernel"]:
            sleeping_on_disk.add(prev)
        sleeping_on_disk.discard(nxt)
        running[cpu] = nxt
        last = at
    out = {part: round(seconds * 1e6 / requests, 1) for part, seconds in spent.items()}
    out["wall"] = round(sum(spent.values()) * 1e6 / requests, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
