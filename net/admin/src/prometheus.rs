//! Renders the node's metrics in the Prometheus text exposition format (version 0.0.4): partition
//! statuses, per-handler invocation counters summed over partitions, ingress responses by status
//! code and the span pipeline's counters.
//!
//! Every family is written as one block, `# HELP`, `# TYPE`, then all its samples, so no family
//! is declared twice or interleaved with another; label values are escaped as the format asks.

use holdfast_otlp::TraceSnapshot;
use holdfast_partition::{Histogram, PartitionStatus};
use holdfast_types::NodeId;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};

/// Everything one scrape renders.
pub(crate) struct Scrape<'a> {
    /// This node.
    pub node: NodeId,
    /// The partitions that answered in time.
    pub statuses: &'a [PartitionStatus],
    /// Ingress responses by status code, codes never seen left out.
    pub ingress: &'a [(u16, u64)],
    /// The span pipeline's counters.
    pub traces: TraceSnapshot,
    /// The node's raft-log writer: commits, fsyncs and the appends they carried.
    pub log: holdfast_raft_store::LogWriterStats,
}

/// A sample value that prints as the format spells floats (`+Inf`, `-Inf`, `NaN`).
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_nan() {
            f.write_str("NaN")
        } else if self.0.is_infinite() {
            f.write_str(if self.0 > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A label value with backslash, double quote and line feed escaped.
fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &dyn Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// One histogram's samples: cumulative buckets, sum and count, all under `labels`.
fn histogram_samples(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (bound, count) in h.cumulative() {
        let le = Float(bound).to_string();
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, &count);
    }
    sample(out, &format!("{name}_sum"), labels, &Float(h.sum));
    sample(out, &format!("{name}_count"), labels, &h.count);
}

/// A family with one sample per partition.
fn per_partition(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    statuses: &[PartitionStatus],
    value: impl Fn(&PartitionStatus) -> f64,
) {
    header(out, name, kind, help);
    for s in statuses {
        let partition = s.partition.to_string();
        sample(out, name, &[("partition", &partition)], &Float(value(s)));
    }
}

/// A histogram family with one series per partition.
fn per_partition_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    statuses: &[PartitionStatus],
    pick: impl Fn(&PartitionStatus) -> &Histogram,
) {
    header(out, name, "histogram", help);
    for s in statuses {
        let partition = s.partition.to_string();
        histogram_samples(out, name, &[("partition", &partition)], pick(s));
    }
}

/// Adds `from` into `into`. With equal bounds the buckets add up; otherwise each of `from`'s
/// buckets lands in the first bucket of `into` whose bound holds its bound, so counts and sum
/// stay exact and no observation is placed below its true value.
fn merge(into: &mut Histogram, from: &Histogram) {
    into.sum += from.sum;
    into.count += from.count;
    if into.bounds == from.bounds {
        for (total, n) in into.counts.iter_mut().zip(&from.counts) {
            *total += n;
        }
        return;
    }
    let bounds = from
        .bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY));
    for (bound, n) in bounds.zip(&from.counts) {
        let slot = into
            .bounds
            .iter()
            .position(|b| bound <= *b)
            .unwrap_or(into.bounds.len());
        if let Some(total) = into.counts.get_mut(slot) {
            *total += n;
        }
    }
}

/// One handler's counters summed over the partitions.
struct HandlerTotals {
    started: u64,
    completed: u64,
    failed: u64,
    attempts: u64,
    retries: u64,
    duration: Histogram,
}

/// Per-handler counters of every partition, summed by (service, handler), in name order.
fn handler_totals(statuses: &[PartitionStatus]) -> BTreeMap<(&str, &str), HandlerTotals> {
    let mut totals: BTreeMap<(&str, &str), HandlerTotals> = BTreeMap::new();
    for m in statuses.iter().flat_map(|s| &s.handlers) {
        match totals.get_mut(&(m.service.as_str(), m.handler.as_str())) {
            Some(t) => {
                t.started += m.started;
                t.completed += m.completed;
                t.failed += m.failed;
                t.attempts += m.attempts;
                t.retries += m.retries;
                merge(&mut t.duration, &m.duration);
            }
            None => {
                totals.insert(
                    (&m.service, &m.handler),
                    HandlerTotals {
                        started: m.started,
                        completed: m.completed,
                        failed: m.failed,
                        attempts: m.attempts,
                        retries: m.retries,
                        duration: m.duration.clone(),
                    },
                );
            }
        }
    }
    totals
}

/// Reads one counter out of a handler's totals.
type Pick = fn(&HandlerTotals) -> u64;

/// The per-handler counter families, each a block of one sample per (service, handler).
const HANDLER_COUNTERS: [(&str, &str, Pick); 5] = [
    (
        "holdfast_invocations_started_total",
        "Invocations accepted (created, scheduled ones included), summed over partitions.",
        |t| t.started,
    ),
    (
        "holdfast_invocations_completed_total",
        "Invocations completed, successfully or not, summed over partitions.",
        |t| t.completed,
    ),
    (
        "holdfast_invocations_failed_total",
        "Invocations completed with a failure, summed over partitions.",
        |t| t.failed,
    ),
    (
        "holdfast_invocation_attempts_total",
        "Attempts started (the first included), summed over partitions.",
        |t| t.attempts,
    ),
    (
        "holdfast_invocation_retries_total",
        "Retries scheduled after a failed attempt, summed over partitions.",
        |t| t.retries,
    ),
];

fn render_handlers(out: &mut String, statuses: &[PartitionStatus]) {
    let totals = handler_totals(statuses);
    for (name, help, value) in HANDLER_COUNTERS {
        header(out, name, "counter", help);
        for ((service, handler), t) in &totals {
            sample(
                out,
                name,
                &[("service", service), ("handler", handler)],
                &value(t),
            );
        }
    }
    let name = "holdfast_invocation_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from an invocation's acceptance to its completion, summed over partitions.",
    );
    for ((service, handler), t) in &totals {
        histogram_samples(
            out,
            name,
            &[("service", service), ("handler", handler)],
            &t.duration,
        );
    }
}

/// Ticks per schedule fired by the partitions this node leads.
fn render_schedules(out: &mut String, statuses: &[PartitionStatus]) {
    let name = "holdfast_schedule_ticks_total";
    header(
        out,
        name,
        "counter",
        "Ticks of each schedule this node's partitions fired (outcome fired) or skipped.",
    );
    for (schedule, fired, skipped) in statuses.iter().flat_map(|s| &s.schedule_ticks) {
        for (outcome, value) in [("fired", fired), ("skipped", skipped)] {
            sample(
                out,
                name,
                &[("schedule", schedule), ("outcome", outcome)],
                value,
            );
        }
    }
}

/// Per limit granted by a partition this node leads: permits out, requests waiting, and
/// permits granted.
fn render_limits(out: &mut String, statuses: &[PartitionStatus]) {
    let series = [
        (
            "holdfast_limit_running",
            "gauge",
            "Permits of each limit out now: attempts running under it (limits with max_concurrency).",
        ),
        (
            "holdfast_limit_queued",
            "gauge",
            "Invocations waiting for a permit of each limit.",
        ),
        (
            "holdfast_limit_granted_total",
            "counter",
            "Permits each limit granted since it was created.",
        ),
    ];
    for (i, (name, kind, help)) in series.into_iter().enumerate() {
        header(out, name, kind, help);
        for (limit, running, queued, granted) in statuses.iter().flat_map(|s| &s.limits) {
            let value = [running, queued, granted][i];
            sample(out, name, &[("limit", limit)], value);
        }
    }
}

/// Per replica of the partitions this node leads, labelled by the node holding it: how far it
/// is behind the leader's log, so one scrape of each leader shows every node's lag.
fn render_replicas(out: &mut String, statuses: &[PartitionStatus], me: NodeId) {
    header(
        out,
        "holdfast_replica_lag_entries",
        "gauge",
        "Log entries a replica is behind, per partition this node leads and replica node.",
    );
    for status in statuses {
        let partition = status.partition.0.to_string();
        for replica in status.replica_progress(me) {
            let Some(lag) = replica.lag else { continue };
            let node = replica.node.0.to_string();
            sample(
                out,
                "holdfast_replica_lag_entries",
                &[("partition", &partition), ("node", &node)],
                &lag,
            );
        }
    }
}

/// The full metrics page for one node.
pub(crate) fn render(scrape: &Scrape<'_>) -> String {
    let statuses = scrape.statuses;
    let node = scrape.node;
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "holdfast_node_id",
        "gauge",
        "The id of this node.",
    );
    sample(&mut out, "holdfast_node_id", &[], &node);
    render_replicas(&mut out, statuses, node);
    per_partition(
        &mut out,
        "holdfast_partition_proposals_total",
        "counter",
        "Proposals acknowledged since start.",
        statuses,
        |s| s.proposals as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_batches_total",
        "counter",
        "Group commits (raft entries) written since start.",
        statuses,
        |s| s.batches as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_applied_index",
        "gauge",
        "Index of the last applied log entry.",
        statuses,
        |s| s.applied_index.0 as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_last_log_index",
        "gauge",
        "Index of the last entry in the local log.",
        statuses,
        |s| s.last_log_index.0 as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_term",
        "gauge",
        "Current raft term.",
        statuses,
        |s| s.term.0 as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_is_leader",
        "gauge",
        "1 if this node leads the partition.",
        statuses,
        |s| if s.leader == Some(node) { 1.0 } else { 0.0 },
    );
    per_partition(
        &mut out,
        "holdfast_partition_pending_timers",
        "gauge",
        "Timers registered and not fired yet.",
        statuses,
        |s| s.pending_timers as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_suspended_invocations",
        "gauge",
        "Invocations suspended, waiting for a completion.",
        statuses,
        |s| s.suspended as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_inbox_depth",
        "gauge",
        "Invocations queued in object inboxes behind a lock holder.",
        statuses,
        |s| s.inbox_depth as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_journal_entries_total",
        "counter",
        "Journal entries appended while this node led the partition.",
        statuses,
        |s| s.journal_entries as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_running_attempts",
        "gauge",
        "Attempts running now (at most invocation.max_concurrent_attempts).",
        statuses,
        |s| s.running_attempts as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_waiting_attempts",
        "gauge",
        "Attempts waiting in memory for a free slot.",
        statuses,
        |s| s.waiting_attempts as f64,
    );
    per_partition(
        &mut out,
        "holdfast_partition_reconciled_total",
        "counter",
        "Invocations found running with no attempt and restarted by the leader's reconciler.",
        statuses,
        |s| s.reconciled as f64,
    );
    per_partition_histogram(
        &mut out,
        "holdfast_partition_batch_size",
        "Commands per group commit.",
        statuses,
        |s| &s.batch_size,
    );
    per_partition_histogram(
        &mut out,
        "holdfast_partition_commit_latency_seconds",
        "Time from a proposal's arrival to its acknowledgement.",
        statuses,
        |s| &s.commit_latency,
    );
    render_handlers(&mut out, statuses);
    render_schedules(&mut out, statuses);
    render_limits(&mut out, statuses);
    let name = "holdfast_ingress_requests_total";
    header(
        &mut out,
        name,
        "counter",
        "Ingress responses by HTTP status code.",
    );
    for (code, n) in scrape.ingress {
        sample(&mut out, name, &[("status_code", &code.to_string())], n);
    }
    let traces = scrape.traces;
    let log = scrape.log;
    for (name, help, value) in [
        (
            "holdfast_log_commits_total",
            "Commits of the node's raft-log file (every group's appends, votes and truncations).",
            log.commits,
        ),
        (
            "holdfast_log_fsyncs_total",
            "Durable commits of the raft-log file: one fsync each, however many groups they carry.",
            log.syncs,
        ),
        (
            "holdfast_log_appends_total",
            "Raft appends written, each acknowledged only after its commit's fsync.",
            log.appends,
        ),
        (
            "holdfast_log_group_writes_total",
            "Groups written per commit, summed over commits (divide by commits for the mean).",
            log.group_writes,
        ),
        (
            "holdfast_log_parked_total",
            "Appends nobody waited for, parked to share the next commit's fsync.",
            log.parked,
        ),
        (
            "holdfast_trace_spans_emitted_total",
            "Spans handed to the exporter queue.",
            traces.emitted,
        ),
        (
            "holdfast_trace_spans_exported_total",
            "Spans the OTLP collector accepted.",
            traces.exported,
        ),
        (
            "holdfast_trace_spans_dropped_total",
            "Spans lost: the queue was full or their export failed.",
            traces.dropped,
        ),
        (
            "holdfast_trace_export_failures_total",
            "OTLP export requests that failed.",
            traces.failed_exports,
        ),
    ] {
        header(&mut out, name, "counter", help);
        sample(&mut out, name, &[], &value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_partition::HandlerMetrics;
    use holdfast_types::{LogIndex, PartitionId, Term};
    use std::collections::HashSet;

    fn handler(service: &str, name: &str, n: u64, durations: &[f64]) -> HandlerMetrics {
        let mut m = HandlerMetrics::new(service, name);
        m.started = n;
        m.completed = n.saturating_sub(1);
        m.failed = 1;
        m.attempts = n + 2;
        m.retries = 2;
        for d in durations {
            m.duration.observe(*d);
        }
        m
    }

    fn status(partition: u32, handlers: Vec<HandlerMetrics>) -> PartitionStatus {
        PartitionStatus {
            hosted: true,
            partition: PartitionId(partition),
            leader: Some(NodeId(1)),
            term: Term(3),
            applied_index: LogIndex(10),
            last_log_index: LogIndex(11),
            purged_index: None,
            proposals: 5,
            batches: 4,
            batch_size: Histogram::batch_sizes(),
            commit_latency: Histogram::latency_seconds(),
            pending_timers: 2,
            suspended: u64::from(partition) + 1,
            inbox_depth: 7,
            journal_entries: 40,
            schedule_ticks: vec![("nightly".into(), 5, 2)],
            limits: vec![("api".into(), 5, 195, 805)],
            reconciled: 3,
            running_attempts: 2,
            waiting_attempts: 0,
            handlers,
            replicas: Vec::new(),
        }
    }

    fn scrape_text(statuses: &[PartitionStatus], ingress: &[(u16, u64)]) -> String {
        render(&Scrape {
            node: NodeId(1),
            statuses,
            ingress,
            traces: TraceSnapshot {
                emitted: 9,
                exported: 6,
                dropped: 3,
                failed_exports: 1,
            },
            log: holdfast_raft_store::LogWriterStats {
                commits: 4,
                syncs: 3,
                appends: 12,
                group_writes: 9,
                parked: 2,
                ..Default::default()
            },
        })
    }

    /// The value of the sample line that starts with `series ` exactly.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn a_leader_reports_each_replicas_lag_under_the_replicas_node() {
        let mut led = status(0, Vec::new());
        led.last_log_index = holdfast_types::LogIndex(50);
        led.replicas = vec![
            (NodeId(1), None),
            (NodeId(2), Some(holdfast_types::LogIndex(45))),
        ];
        let text = scrape_text(&[led], &[]);
        assert_eq!(
            value(
                &text,
                "holdfast_replica_lag_entries{partition=\"0\",node=\"2\"}"
            )
            .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn handlers_shared_by_two_partitions_are_summed() {
        let statuses = [
            status(
                0,
                vec![
                    handler("Greeter", "greet", 3, &[0.002, 0.3]),
                    handler("Cart", "add", 1, &[]),
                ],
            ),
            status(1, vec![handler("Greeter", "greet", 4, &[0.002, 5000.0])]),
        ];
        let text = scrape_text(&statuses, &[(200, 12), (404, 1)]);
        let greet = "{service=\"Greeter\",handler=\"greet\"}";
        for (family, expected) in [
            ("holdfast_invocations_started_total", "7"),
            ("holdfast_invocations_completed_total", "5"),
            ("holdfast_invocations_failed_total", "2"),
            ("holdfast_invocation_attempts_total", "11"),
            ("holdfast_invocation_retries_total", "4"),
            ("holdfast_invocation_duration_seconds_count", "4"),
        ] {
            assert_eq!(
                value(&text, &format!("{family}{greet}")).as_deref(),
                Some(expected),
                "{family}"
            );
        }
        assert_eq!(
            value(
                &text,
                "holdfast_invocations_started_total{service=\"Cart\",handler=\"add\"}"
            )
            .as_deref(),
            Some("1")
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!(
                    "holdfast_invocation_duration_seconds_bucket{{service=\"Greeter\",handler=\"greet\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.0025").as_deref(), Some("2"));
        assert_eq!(bucket("0.5").as_deref(), Some("3"));
        assert_eq!(bucket("3600").as_deref(), Some("3"));
        assert_eq!(bucket("+Inf").as_deref(), Some("4"));
        let sum: f64 = value(
            &text,
            &format!("holdfast_invocation_duration_seconds_sum{greet}"),
        )
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
        assert!((sum - 5000.304).abs() < 1e-6, "{sum}");
        // One series per handler, not one per partition.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("holdfast_invocations_started_total{"))
                .count(),
            2
        );
        // Per-partition gauges and the new counters.
        for (series, expected) in [
            (
                "holdfast_partition_suspended_invocations{partition=\"0\"}",
                "1",
            ),
            (
                "holdfast_partition_suspended_invocations{partition=\"1\"}",
                "2",
            ),
            ("holdfast_partition_inbox_depth{partition=\"1\"}", "7"),
            (
                "holdfast_partition_journal_entries_total{partition=\"0\"}",
                "40",
            ),
            ("holdfast_partition_reconciled_total{partition=\"0\"}", "3"),
            (
                "holdfast_schedule_ticks_total{schedule=\"nightly\",outcome=\"fired\"}",
                "5",
            ),
            (
                "holdfast_schedule_ticks_total{schedule=\"nightly\",outcome=\"skipped\"}",
                "2",
            ),
            ("holdfast_limit_running{limit=\"api\"}", "5"),
            ("holdfast_limit_queued{limit=\"api\"}", "195"),
            ("holdfast_limit_granted_total{limit=\"api\"}", "805"),
            ("holdfast_ingress_requests_total{status_code=\"200\"}", "12"),
            ("holdfast_ingress_requests_total{status_code=\"404\"}", "1"),
            ("holdfast_trace_spans_emitted_total", "9"),
            ("holdfast_trace_spans_exported_total", "6"),
            ("holdfast_trace_spans_dropped_total", "3"),
            ("holdfast_trace_export_failures_total", "1"),
            ("holdfast_log_commits_total", "4"),
            ("holdfast_log_fsyncs_total", "3"),
            ("holdfast_log_appends_total", "12"),
            ("holdfast_log_group_writes_total", "9"),
            ("holdfast_log_parked_total", "2"),
            ("holdfast_partition_batch_size_count{partition=\"1\"}", "0"),
            (
                "holdfast_partition_commit_latency_seconds_bucket{partition=\"0\",le=\"+Inf\"}",
                "0",
            ),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(expected), "{series}");
        }
        assert!(!text.contains("status_code=\"500\""), "only codes seen");
    }

    #[test]
    fn histograms_with_different_bounds_merge_without_losing_observations() {
        let mut into = Histogram::new(vec![1.0, 10.0]);
        into.observe(0.5);
        let mut from = Histogram::new(vec![2.0, 5.0, 20.0]);
        for v in [1.5, 4.0, 15.0, 30.0] {
            from.observe(v);
        }
        merge(&mut into, &from);
        assert_eq!(into.counts, [1, 2, 2]);
        assert_eq!(into.count, 5);
        assert!((into.sum - 51.0).abs() < 1e-9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape("line\nbreak"), "line\\nbreak");
        let statuses = [status(0, vec![handler("Odd\"Svc\\", "h\nx", 1, &[])])];
        let text = scrape_text(&statuses, &[]);
        assert!(
            text.contains(
                "holdfast_invocations_started_total{service=\"Odd\\\"Svc\\\\\",handler=\"h\\nx\"} 1\n"
            ),
            "{text}"
        );
        // The escaped value never breaks the line.
        assert!(text.lines().all(|l| !l.starts_with("x\"")));
    }

    /// Checks the exposition's structure: every family declared once by HELP then TYPE, every
    /// sample line belonging to the family declared last (so a family's samples are contiguous),
    /// label blocks well formed and values numeric.
    fn check_structure(text: &str) -> Result<usize, String> {
        let mut declared = HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut pending_help: Option<String> = None;
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                pending_help = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
                if pending_help.take().as_deref() != Some(name) {
                    return Err(format!("TYPE without its HELP: {line}"));
                }
                if !declared.insert(name.to_owned()) {
                    return Err(format!("family declared twice: {name}"));
                }
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            let (name, kind) = current
                .as_ref()
                .ok_or(format!("sample before TYPE: {line}"))?;
            let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
            let metric = series.split('{').next().unwrap_or_default();
            let belongs = metric == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| metric.strip_suffix(suffix) == Some(name)));
            if !belongs {
                return Err(format!("sample of {metric} inside family {name}"));
            }
            if series.contains('{') && !series.ends_with('}') {
                return Err(format!("bad label block: {line}"));
            }
            if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                return Err(format!("value is not a number: {line}"));
            }
            samples += 1;
        }
        Ok(samples)
    }

    #[test]
    fn every_sample_belongs_to_the_family_declared_before_it() {
        let statuses = [
            status(0, vec![handler("Greeter", "greet", 3, &[0.1])]),
            status(
                1,
                vec![
                    handler("Greeter", "greet", 1, &[]),
                    handler("A", "b", 1, &[]),
                ],
            ),
        ];
        let text = scrape_text(&statuses, &[(200, 1), (503, 2)]);
        let samples = check_structure(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(samples > 100, "{samples}");
        // An empty node still renders every family, each declared once.
        let empty = scrape_text(&[], &[]);
        check_structure(&empty).unwrap_or_else(|e| panic!("{e}\n{empty}"));
        assert_eq!(
            empty.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            text.lines().filter(|l| l.starts_with("# TYPE ")).count()
        );
        // The checker itself catches an interleaved family.
        let broken = "# HELP a x\n# TYPE a counter\na 1\n# HELP b x\n# TYPE b counter\nb 1\na 2\n";
        assert!(check_structure(broken).is_err());
    }
}
