#!/usr/bin/env python3
"""Renders docs/benchmarks.md from the JSON lines `tests/bench/run.sh` collected.

Usage: report.py RESULTS OUT — RESULTS is the run's results.jsonl (kept in its work directory),
so a report can be rendered again without measuring again.
"""
import json, sys, platform, datetime, os
results, out = sys.argv[1:]
rows = [json.loads(l) for l in open(results) if l.strip()]
# Results of a partial run (e.g. tests/bench/invocations.sh alone) lack some rows: the sections
# they feed are left out.
context = next((r for r in rows if r["bench"] == "context"), None)
startup = next((r for r in rows if r["bench"] == "startup"), None)
if context:
    restate, fsyncs, secs = context["restate"], context["fsyncs"], context["seconds"]
else:
    restate, fsyncs = "not measured|not measured", None
    secs = next((f"{r['seconds']:.0f}" for r in rows if r["bench"] == "http"), "?")
if startup:
    startups, median = startup["all_ms"], startup["median_ms"]
    rss, threads = startup["idle_rss_mib"], startup["threads"]

def cluster_section(rows, cluster, secs):
    """Three nodes beside one node (tests/bench/cluster.sh)."""
    def cell(mode, name, conc):
        return next((r for r in cluster if r["mode"] == mode and r["workload"] == name and r["concurrency"] == conc), None)
    out = [
    "",
    "## Three nodes beside one node",
    "",
    f"`tests/bench/cluster.sh` (run by `make bench`): the same handler code and load generator "
    f"(`holdfast bench http --concurrency C --seconds {secs}`) through node 1's ingress, first against one "
    "node, then against three release-build nodes on this machine with every partition replicated on all "
    "three (an acknowledged step is fsync'd on two of three: the leader and one follower). The three "
    "nodes, the Node endpoint and the load generator share the cores.",
    "",
    "| workload | clients | one node req/s | p50 / p99 ms | three nodes req/s | p50 / p99 ms | throughput three / one | p50 three / one |",
    "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["workload"] for r in cluster):
        for conc in (1, 64):
            one, three = cell("single", name, conc), cell("three", name, conc)
            if not (one and three):
                continue
            out.append(f"| {name} | {conc} | {one['per_second']:.0f} | {one['p50_ms']:.1f} / {one['p99_ms']:.1f} | "
                       f"{three['per_second']:.0f} | {three['p50_ms']:.1f} / {three['p99_ms']:.1f} | "
                       f"{three['per_second'] / max(one['per_second'], 1e-9):.2f}× | {three['p50_ms'] / max(one['p50_ms'], 1e-9):.2f} |")
    logs = [r for r in rows if r["bench"] == "cluster_log"]
    if logs:
        out += ["", "Raft appends per fsync of each node's one raft-log file over those workloads "
                "(`holdfast_log_appends_total` / `holdfast_log_fsyncs_total` from `/metrics`):", "",
                "| nodes | node | appends | fsyncs | appends per fsync |", "|---|---|---|---|---|"]
        for r in logs:
            out.append(f"| {'one' if r['mode'] == 'single' else 'three'} | {r['node']} | {r['appends']} | {r['fsyncs']} | "
                       f"{r['appends'] / max(r['fsyncs'], 1):.1f} |")
    failover = next((r for r in rows if r["bench"] == "cluster_failover"), None)
    if failover:
        out += ["", f"Leader loss: after `kill -9` of node 1, {failover['keys']} calls to objects spread over every "
                f"partition, sent through node 2 and retried until answered, had all answered after "
                f"{failover['all_answered_ms']} ms (a new election on each partition node 1 led)."]
    return out

def ratio(ours, theirs):
    """ours / theirs from the leading numbers of two cells, or a dash when one is missing."""
    try:
        return f"{float(str(ours).split()[0]) / float(theirs.split()[0]):.3f}×"
    except (ValueError, IndexError, ZeroDivisionError):
        return "—"
fsync = next((r for r in rows if r["bench"] == "fsync"), None)
logs = [r for r in rows if r["bench"] == "log"]
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = [
"# Benchmarks",
"",
"Produced by `make bench` (`tests/bench/run.sh`), release build, on "
f"{datetime.date.today()}: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}. "
"Load generator and kernel share the machine; figures are percentiles of one run, compare ratios, "
"not absolute values, across machines.",
]
def cpu_per_op(r):
    """The process's CPU per operation of a `bench log` or `bench fsync` line, if it has one."""
    return f"{r['cpu_ms_per_op']:.3f}" if "cpu_ms_per_op" in r else "—"


if fsync:
    lines += [
"",
"## Group commit through the partition log",
"",
f"`holdfast bench log --proposers N --spread one|all --seconds {secs}` on a fresh data dir: "
"N proposers each propose a 100-byte `SetState` and wait for its acknowledgement, which is sent "
"only after the batch holding it is fsync'd in the raft log and applied. Beside it, "
f"`holdfast bench fsync --seconds {secs}`: 4 KiB append + fdatasync in a loop on the same disk, the "
"physical limit of one fsync'd log. CPU: the benchmark process's user and system time over the run "
"(`getrusage`), per proposal or per fsync; the OS's side of an fsync counts as system time.",
"",
"| workload | proposals/s | p50 ms | p99 ms | commands per raft entry | raft appends per fsync | vs raw fsync rate | CPU ms per proposal |",
"|---|---|---|---|---|---|---|---|",
f"| raw fsync (4 KiB + fdatasync) | {fsync['per_second']:.0f} fsync/s | {fsync['p50_ms']:.3f} | {fsync['p99_ms']:.3f} | 1 | 1 | 1.00× | {cpu_per_op(fsync)} |",
    ]
for r in logs if fsync else []:
    where = "1 partition" if r["spread"] == "one" else f"{r['partitions']} partitions"
    per_batch = r["ops"] / max(r["batches"], 1)
    per_fsync = f"{r['log_appends'] / max(r['log_fsyncs'], 1):.1f}" if "log_fsyncs" in r else "—"
    lines.append(f"| {r['proposers']} proposer(s), {where} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {per_batch:.1f} | {per_fsync} | {r['per_second']/fsync['per_second']:.2f}× | {cpu_per_op(r)} |")
inv = [r for r in rows if r["bench"] == "http"]
servers = {r["engine"]: r for r in rows if r["bench"] == "server"}
drains = [r for r in rows if r["bench"] == "drain"]
# The engines compared; the floor's runs (engine `floor-…`) have a section of their own.
ENGINES = ("holdfast", "restate")
WORKLOADS = ["greet", "counter_hot", "counter_1k", "steps", "chain", "send", "sleep"]
verdict = lambda ok: "met" if ok else "not met"

def per_req(row, role):
    """CPU ms per completed request of one process in one run, None in results without it."""
    return row.get(f"{role}_cpu_ms_per_req") if row else None

def fmt(value, spec=".2f"):
    return "—" if value is None else format(value, spec)

def disk_per_invocation(server, state):
    """(allocated, apparent) bytes per invocation of the data dir, state running|stopped, or None."""
    try:
        return (server[f"disk_{state}_kib"] * 1024 / server["invocations"],
                server[f"disk_{state}_apparent_kib"] * 1024 / server["invocations"])
    except (KeyError, TypeError, ZeroDivisionError):
        return None

def completed_per_second(row, drains):
    """Invocations of a one-way run completed per second, the backlog it left included: requests
    accepted, over the run plus the time the engine took to execute what was still queued."""
    drain = next((d for d in drains if d["engine"] == row["engine"] and d["workload"] == row["workload"]
                  and d.get("concurrency") == row["concurrency"]), None)
    if not drain or not drain.get("drained", True):
        return None
    extra = drain["seconds"] if drain["invocations"] else 0.0
    return row["ops"] / (row["seconds"] + extra)

def throughput(a, b):
    """Throughput of run `a` over run `b`; a one-way send is work done when it completes, not when it is
    accepted."""
    if a["workload"] == "send":
        ca, cb = completed_per_second(a, drains), completed_per_second(b, drains)
        return ca / cb if ca and cb else None
    return a["per_second"] / b["per_second"] if b["per_second"] else None

def bar_table(cell, h, r, hd, rd):
    """The project's bar, one row per criterion: measured value, bar, met or not."""
    rows_out = ["", "Against the project's bar:", "",
                "| criterion | measured | bar | verdict |", "|---|---|---|---|"]
    def row(criterion, measured, bar, ok):
        rows_out.append(f"| {criterion} | {measured} | {bar} | {'not measured' if ok is None else verdict(ok)} |")
    def worst(conc, value, pick):
        pairs = [(n, cell("holdfast", n, conc), cell("restate", n, conc)) for n in WORKLOADS]
        found = [(value(a, b), n) for n, a, b in pairs if a and b and value(a, b) is not None]
        return pick(found) if found else None
    tput = worst(64, throughput, min)
    row("throughput at 64 clients, every workload; `send` counted to completion (lowest Holdfast / Restate)",
        f"{tput[0]:.2f}× ({tput[1]})" if tput else "—", "≥ 3×", tput and tput[0] >= 3)
    p50 = worst(1, lambda a, b: a["p50_ms"] / b["p50_ms"] if b["p50_ms"] else None, max)
    row("p50 latency at 1 client, every workload (highest Holdfast / Restate)",
        f"{p50[0]:.2f} ({p50[1]})" if p50 else "—", "≤ 0.5", p50 and p50[0] <= 0.5)
    cpu_worst = None
    for conc in (1, 64):
        found = worst(conc, lambda a, b: per_req(a, "server") / per_req(b, "server")
                      if per_req(a, "server") is not None and per_req(b, "server") else None, max)
        if found and (cpu_worst is None or found[0] > cpu_worst[0]):
            cpu_worst = (found[0], f"{found[1]}, {conc} client{'s' if conc > 1 else ''}")
    overall = ""
    if h.get("invocations") and r.get("invocations") and r.get("cpu_s"):
        overall = f"; all workloads together {(h['cpu_s'] / h['invocations']) / (r['cpu_s'] / r['invocations']):.2f}×"
    row("server CPU per invocation (highest Holdfast / Restate over workloads and client counts)",
        f"{cpu_worst[0]:.2f}× ({cpu_worst[1]}){overall}" if cpu_worst else "—", "≤ 0.25×",
        cpu_worst and cpu_worst[0] <= 0.25)
    mem = h["peak_rss_mib"] / r["peak_rss_mib"]
    row("peak memory over the invocation workloads (Holdfast / Restate)",
        f"{mem:.2f}× ({h['peak_rss_mib']} / {r['peak_rss_mib']} MiB)", "≤ 0.25× and < 128 MiB",
        mem <= 0.25 and h["peak_rss_mib"] < 128)
    if startup:
        row("idle memory (Holdfast, after 3 s idle)", f"{rss} MiB", "< 50 MiB", float(rss) < 50)
        row("start-up to healthy (Holdfast, median of 5)", f"{median} ms", "< 100 ms", float(median) < 100)
    else:
        row("idle memory (Holdfast, after 3 s idle)", "—", "< 50 MiB", None)
        row("start-up to healthy (Holdfast, median of 5)", "—", "< 100 ms", None)
    disk = [(hd[s][0] / rd[s][0], s) for s in ("running", "stopped") if hd.get(s) and rd.get(s) and rd[s][0]]
    high = max(disk) if disk else None
    row("disk per invocation, allocated (higher Holdfast / Restate of running and after a graceful stop)",
        f"{high[0]:.2f}× ({high[1]})" if high else "—", "≤ 1×", high and high[0] <= 1)
    return rows_out

if inv:
    def cell(engine, name, conc):
        return next((r for r in inv if r["engine"] == engine and r["workload"] == name and r["concurrency"] == conc), None)
    # Results from before CPU was sampled get the table without its CPU columns.
    with_cpu = any("server_cpu_ms_per_req" in x for x in inv)
    lines += [
    "",
    "## Invocations, beside Restate 1.7.12 in the same run",
    "",
    "Same machine, same handler code (the anchor's `services.mjs`; Holdfast's copy differs only in its import), "
    f"same load generator: `holdfast bench http --concurrency C --seconds {secs}` (closed loop, one keep-alive "
    "HTTP/1.1 connection per client) against each engine's ingress, one engine after the other on fresh data dirs, "
    "durability on (Holdfast fsyncs every acknowledged step). Workloads: `greet` = `POST /Greeter/greet` (no durable "
    "step); `counter_hot` = `POST /Counter/hot/add` (one key); `counter_1k` = `/Counter/k<0..999>/add`; `steps` = "
    "`/Steps/run3` (three `ctx.run`); `chain` = `/Chain/call` (a durable call to Greeter); `send` = "
    "`POST /Greeter/greet/send` (one-way: the ingress answers 202 once the invocation is durably accepted, so its "
    "rates and latencies are those of acceptance, and a backlog builds up that the engine executes afterwards); "
    "`sleep` = `/Sleeper/nap` with body `10` (the handler sleeps 10 ms on a durable timer).",
    ]
    if with_cpu:
        lines += [
    "",
    "CPU per request: utime + stime of the server process and of the Node endpoint process "
    "(`/proc/PID/stat`) before and after each run, divided by the requests the run completed. For `send` the "
    "interval also covers executing the backlog the run left behind, so the figure is the cost of a whole invocation.",
    "",
    "| workload | clients | Holdfast req/s | p50 / p99 ms | Restate req/s | p50 / p99 ms | throughput × | p50 ratio "
    "| server CPU ms/req, Holdfast / Restate | server CPU ratio | SDK CPU ms/req, Holdfast / Restate |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines += [
    "",
    "| workload | clients | Holdfast req/s | p50 / p99 ms | Restate req/s | p50 / p99 ms | throughput × | p50 ratio |",
    "|---|---|---|---|---|---|---|---|",
        ]
    for name in WORKLOADS:
        for conc in [1, 64]:
            h, r = cell("holdfast", name, conc), cell("restate", name, conc)
            if not h:
                continue
            hs = f"{h['per_second']:.0f} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f}"
            if r:
                rs = f"{r['per_second']:.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
                ratios = f"{h['per_second']/max(r['per_second'],1e-9):.2f}× | {h['p50_ms']/max(r['p50_ms'],1e-9):.2f}"
            else:
                rs, ratios = "— | —", "— | —"
            hc, rc = per_req(h, "server"), per_req(r, "server")
            cpu_ratio = f"{hc / rc:.2f}" if hc is not None and rc else "—"
            cpus = (f" {fmt(hc)} / {fmt(rc)} | {cpu_ratio} | "
                    f"{fmt(per_req(h, 'sdk'))} / {fmt(per_req(r, 'sdk'))} |") if with_cpu else ""
            fails = h.get("failures", 0) + (r.get("failures", 0) if r else 0)
            lines.append(f"| {name} | {conc} | {hs} | {rs} | {ratios} |{cpus}" + (f" ({fails} failed requests)" if fails else ""))
    loadgen = [x["loadgen_cpu_ms_per_req"] for x in inv if "loadgen_cpu_ms_per_req" in x and x["engine"] in ENGINES]
    if loadgen:
        lines += ["", f"The load generator itself spent {min(loadgen):.2f}–{max(loadgen):.2f} ms of CPU per request "
                  "(all runs, both engines)."]
    engine_drains = [d for d in drains if d["engine"] in ENGINES]
    sent = [d for d in engine_drains if d.get("concurrency") == 64] or engine_drains
    if sent:
        def drained(d):
            engine = "Holdfast" if d["engine"] == "holdfast" else "Restate"
            if d["invocations"] == 0:
                return f"{engine} none (the first query found every invocation completed)"
            if not d.get("drained", True):
                return f"{engine} {d['invocations']:,}, gave up after {d['seconds']:.0f} s with {d['left']:,} left"
            return f"{engine} {d['invocations']:,}, all completed {d['seconds']:.1f} s after the run ended"
        lines += ["", f"Backlog after the `send` run with {sent[0].get('concurrency', 64)} clients (invocations accepted "
                  "but not completed when the run ended, counted with `SELECT count(*) FROM sys_invocation WHERE "
                  "status <> 'completed'` on `POST /query`, polled every 0.1 s until none was left; the time includes "
                  "the queries' own): " + "; ".join(drained(d) for d in sent) + "."]
        h64, r64 = cell("holdfast", "send", sent[0].get("concurrency", 64)), cell("restate", "send", sent[0].get("concurrency", 64))
        ch, cr = (completed_per_second(x, drains) if x else None for x in (h64, r64))
        if ch and cr:
            lines += ["", f"Counted to completion (requests accepted over the run plus the time to execute the backlog), "
                      f"`send` at {h64['concurrency']} clients completed {ch:.0f} invocations/s on Holdfast and {cr:.0f}/s on "
                      f"Restate: {ch / cr:.2f}×. The bar's throughput row counts `send` this way."]
    h, r = servers.get("holdfast"), servers.get("restate")
    if h:
        rr = f"{r['peak_rss_mib']} MiB" if r else "—"
        memory = f"{h['peak_rss_mib']/r['peak_rss_mib']:.2f}×" if r else "—"
        lines += ["", f"Peak resident memory of the server over all invocation workloads (VmHWM): Holdfast {h['peak_rss_mib']} MiB, "
                  f"Restate {rr} (ratio {memory}). Server CPU over the workloads: Holdfast {h['cpu_s']} s"
                  + (f", Restate {r['cpu_s']} s." if r else ".")]
        hd = {state: disk_per_invocation(h, state) for state in ("running", "stopped")}
        rd = {state: disk_per_invocation(r, state) for state in ("running", "stopped")} if r else {}
        if hd["running"]:
            def bytes_cell(d):
                return "—" if not d else f"{d[0]:,.0f} B ({d[1]:,.0f} B apparent)"
            def disk_ratio(state):
                return f"{hd[state][0] / rd[state][0]:.2f}×" if rd.get(state) and hd[state] and rd[state][0] else "—"
            counts = f"Holdfast {h['invocations']:,}" + (f", Restate {r['invocations']:,}" if r and "invocations" in r else "")
            lines += ["", "Disk per invocation: the data dir's allocated size (`du -sk`; apparent size beside it) after "
                      f"all workloads, divided by the requests the engine completed ({counts}). Running: Holdfast "
                      f"{bytes_cell(hd['running'])}, Restate {bytes_cell(rd.get('running'))}, ratio {disk_ratio('running')}. "
                      f"After a graceful stop (SIGTERM): Holdfast {bytes_cell(hd['stopped'])}, Restate "
                      f"{bytes_cell(rd.get('stopped'))}, ratio {disk_ratio('stopped')}."]
        if r:
            lines += bar_table(cell, h, r, hd, rd)
FLOORS = [("floor-redb", "floor, redb"), ("floor-redb-thread", "floor, redb, log thread"), ("floor-file", "floor, file")]
if any(r["engine"].startswith("floor") for r in inv):
    def run_of(engine, name, conc):
        return next((r for r in inv if r["engine"] == engine and r["workload"] == name and r["concurrency"] == conc), None)
    engines = [("holdfast", "Holdfast")] + [f for f in FLOORS if any(r["engine"] == f[0] for r in inv)] + [("restate", "Restate")]
    names = " / ".join(label for _, label in engines)
    lines += [
    "",
    "## The floor, in the same run",
    "",
    "`holdfast bench floor` (`tests/bench/floor.sh`, run by `make bench` after the engines) is the least a durable "
    "engine can do per request on this machine: one thread serves HTTP/1.1, runs each invocation against the same "
    "Node endpoint with the kernel's own HTTP/2 client and protocol codec, and commits every durable point the "
    "kernel commits (the accepted invocation, each acknowledged run, a sleep before its timer and its firing, a call "
    "and its result, the output with the end) in a group commit with fdatasync shared by every record waiting: a redb "
    "transaction, or a plain file write. No consensus, actors, state machine, kept state or retries. What the floor "
    "spends, any engine on this machine with this endpoint spends too; what Holdfast spends above it is its own design. "
    "The `log thread` variant commits on a thread of its own, as the kernel's log writer does.",
    "",
    f"| workload | clients | req/s: {names} | p50 ms | server CPU ms/req | endpoint CPU ms/req |",
    "|---|---|---|---|---|---|",
    ]
    for name in WORKLOADS:
        for conc in [1, 64]:
            cells = [run_of(e, name, conc) for e, _ in engines]
            if not any(cells):
                continue
            def col(key, spec):
                return " / ".join("—" if c is None or c.get(key) is None else format(c[key], spec) for c in cells)
            lines.append(f"| {name} | {conc} | {col('per_second', '.0f')} | {col('p50_ms', '.2f')} "
                         f"| {col('server_cpu_ms_per_req', '.3f')} | {col('sdk_cpu_ms_per_req', '.3f')} |")
    def extreme(a_engine, b_engine, conc, value, pick):
        found = []
        for name in WORKLOADS:
            a, b = run_of(a_engine, name, conc), run_of(b_engine, name, conc)
            v = value(a, b) if a and b else None
            if v is not None:
                found.append((v, name))
        return pick(found) if found else None
    p50 = lambda a, b: a["p50_ms"] / b["p50_ms"] if b["p50_ms"] else None
    cpu = lambda a, b: (per_req(a, "server") / per_req(b, "server")
                        if per_req(a, "server") is not None and per_req(b, "server") else None)
    def span(a_engine, b_engine, conc, value):
        lo, hi = extreme(a_engine, b_engine, conc, value, min), extreme(a_engine, b_engine, conc, value, max)
        return f"{lo[0]:.2f} ({lo[1]}) to {hi[0]:.2f} ({hi[1]})" if lo and hi else "—"
    if run_of("restate", "greet", 1):
        lines += ["", "The floor (redb) against Restate, the bar's terms: throughput at 64 clients "
                  f"{span('floor-redb', 'restate', 64, throughput)}×; p50 at one client {span('floor-redb', 'restate', 1, p50)}; "
                  f"server CPU per request {span('floor-redb', 'restate', 1, cpu)} at one client and "
                  f"{span('floor-redb', 'restate', 64, cpu)} at 64."]
    lines += ["", "Holdfast against the floor (redb): throughput at 64 clients "
              f"{span('holdfast', 'floor-redb', 64, throughput)}×; p50 at one client {span('holdfast', 'floor-redb', 1, p50)}×; "
              f"server CPU per request {span('holdfast', 'floor-redb', 1, cpu)}× at one client and "
              f"{span('holdfast', 'floor-redb', 64, cpu)}× at 64."]
tracing = [r for r in rows if r["bench"] == "tracing"]
if tracing:
    def traced(mode, conc):
        return next((r for r in tracing if r["mode"] == mode and r["concurrency"] == conc), None)
    lines += [
    "",
    "## Tracing overhead",
    "",
    f"`tests/bench/tracing.sh` (run by `make bench`): the no-op invocation `POST /Greeter/greet` with "
    f"`holdfast bench http --concurrency C --seconds {secs}`, span export off, then on (every span sent over "
    "OTLP/HTTP protobuf to `otlp-sink`, a receiver that decodes and counts them), fresh data dir each.",
    "",
    "| clients | off: req/s | p50 / p99 ms | on: req/s | p50 / p99 ms | throughput on/off | p50 on/off | p99 on/off | spans received (dropped) |",
    "|---|---|---|---|---|---|---|---|---|",
    ]
    for conc in [1, 64]:
        off, on = traced("off", conc), traced("on", conc)
        if not (off and on):
            continue
        lines.append(
            f"| {conc} | {off['per_second']:.0f} | {off['p50_ms']:.2f} / {off['p99_ms']:.2f} | "
            f"{on['per_second']:.0f} | {on['p50_ms']:.2f} / {on['p99_ms']:.2f} | "
            f"{on['per_second']/max(off['per_second'],1e-9):.2f}× | {on['p50_ms']/max(off['p50_ms'],1e-9):.2f} | "
            f"{on['p99_ms']/max(off['p99_ms'],1e-9):.2f} | {on['spans_received']:,} ({on['spans_dropped_total']:.0f}) |")
timers = next((r for r in rows if r["bench"] == "timers"), None)
if timers:
    t = timers
    lines += [
    "",
    "## Durable timers",
    "",
    f"`tests/bench/timers.sh` (run by `make bench`): every timer is a delayed one-way send through the ingress "
    f"(`POST /Tick/at/send?delay=…` with `holdfast bench http`), so registering one is an fsync'd group commit and "
    f"firing one starts an invocation of a no-op Node handler that prints when it started. First {t['pending']:,} "
    f"timers due in a day are registered (64 clients) and stay pending; then a burst of {t['burst']:,} due at one "
    f"instant 25 s later (`--until-ms`) measures firing throughput; then {t['steady']:,} more, sent by 4 clients with "
    f"`?delay=3s`, measure lateness = the handler's start minus (send time + 3 s), which includes dispatching the "
    f"invocation to the endpoint.",
    "",
    "| metric | value |",
    "|---|---|",
    f"| registration with up to {t['pending']:,} pending (64 clients) | {t['register_per_s']:.0f} timers/s, p50 {t['register_p50_ms']:.1f} ms, p99 {t['register_p99_ms']:.1f} ms |",
    f"| registration of the burst, {t['pending']:,} pending | {t['burst_register_per_s']:.0f} timers/s |",
    f"| firing of the burst ({t['burst']:,} due at once, invocations included) | {t['fire_per_s']:.0f} timers/s; the last started {t['burst_last_ms']} ms after the deadline |",
    f"| lateness at a steady pace ({t['steady_register_per_s']:.0f} timers/s), p50 / p99 / max | {t['lateness_p50_ms']} / {t['lateness_p99_ms']} / {t['lateness_max_ms']} ms |",
    f"| kernel resident memory: {t['pending']:,} pending / after the burst / after the steady run | {t['rss_pending_mib']} / {t['rss_after_burst_mib']} / {t['rss_after_steady_mib']} MiB |",
    f"| kernel peak resident memory (VmHWM) through the burst | {t.get('peak_through_burst_mib', 'not measured')} MiB |",
    "",
    "Memory with pending timers is bounded by the stores' page caches (`[storage] log_cache_bytes` for the raft log "
    "and `state_cache_bytes` per partition), not by the number of timers: the timer wheel keeps at most 1,024 per partition "
    "in memory. A burst is bounded by "
    "`invocation.max_concurrent_attempts` (256 per partition by default): the stated bound for 20,000 timers due at "
    "once on the default 8 partitions is a peak below 256 MiB. The end-to-end test "
    "`cargo test -p holdfast-e2e --test timers ten_thousand -- --nocapture` prints the kernel's RSS with 100 and with "
    "10,100 pending sleeps on 4 partitions with 1 MiB caches, measured before any of them comes due.",
    ]
    if not t["burst_registered_before_due"]:
        lines += ["", "(The burst took longer to register than its 25 s lead: the last timers were registered after their deadline.)"]
sql = next((r for r in rows if r["bench"] == "sql"), None)
if sql:
    q = sql
    lines += [
    "",
    "## SQL introspection",
    "",
    f"`holdfast bench sql --invocations {q['invocations']} --state-rows {q['state_rows']}` (run by `make bench`): "
    f"real partition stores ({q['partitions']} partitions, loaded through the state machine in {q['load_seconds']:.1f} s) "
    "queried through the same `QueryEngine` that serves psql and `POST /query`.",
    "",
    "| query | latency |",
    "|---|---|",
    f"| point lookup `SELECT id, status FROM sys_invocation WHERE id = '…'` (reads one partition, one record) | p50 {q['lookup_p50_ms']:.2f} ms, p99 {q['lookup_p99_ms']:.2f} ms |",
    f"| `SELECT count(*) FROM sys_invocation` ({q['invocations']:,} rows) | {q['count_invocations_ms']:.0f} ms (median of 3) |",
    f"| `SELECT count(*) FROM state` ({q['state_rows']:,} rows) | {q['count_state_ms']:.0f} ms (median of 3) |",
    f"| web UI overview: counts by status (`GROUP BY status, completion_result` over {q['invocations']:,} invocations) | {q['ui_overview_ms']:.0f} ms (median of 3) |",
    f"| web UI invocations page: 50 newest (`ORDER BY created_at DESC, id LIMIT 51`) | {q['ui_list_page_ms']:.0f} ms (median of 3) |",
    f"| web UI invocations page filtered by service and status | {q['ui_list_page_filtered_ms']:.0f} ms (median of 3) |",
    "",
    f"Resident memory of the process before the scans {q['rss_before_scans_mib']:.1f} MiB, highest while they streamed "
    f"{q['rss_peak_during_scans_mib']:.1f} MiB (sampled every 5 ms): scans stream batches of 1,024 rows through a "
    "bounded channel instead of materializing the table; what grows is the stores' page caches (`[storage] "
    "state_cache_bytes` per partition's state.redb) filling as the scans read every page.",
    ]
cluster = [r for r in rows if r["bench"] == "cluster_http"]
if cluster:
    lines += cluster_section(rows, cluster, secs)
if context:
    lines += [
"",
f"Fsyncs on the acknowledgement path, counted with `strace -f -c` around `holdfast bench log --proposers 64 "
f"--seconds 3` on one partition: {fsyncs}. Each group commit costs one fdatasync of the raft log; applied "
"state is flushed in the background.",
    ]
if startup:
    lines += [
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
    ]
lines += [
"",
"Command: `make bench` (`SECONDS_PER_RUN` sets the run length). Raw results of the last run are JSON lines "
"printed by each `holdfast bench` command.",
]
# Sections measured by hand (profiles, before/after comparisons) sit below this marker in the
# report and are carried over when it is rendered again.
MARKER = "<!-- Sections below are measured by hand and kept when `make bench` rewrites this file. -->"
kept = ""
if os.path.exists(out):
    previous = open(out).read()
    if MARKER in previous:
        kept = previous[previous.index(MARKER):]
text = "\n".join(lines) + "\n"
open(out, "w").write(text + ("\n" + kept if kept else ""))
