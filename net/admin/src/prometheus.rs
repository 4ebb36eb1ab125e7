//! Renders partition statuses in the Prometheus text exposition format (version 0.0.4).

use holdfast_partition::{Histogram, PartitionStatus};
use holdfast_types::NodeId;
use std::fmt::Write;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn series(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    statuses: &[PartitionStatus],
    value: impl Fn(&PartitionStatus) -> f64,
) {
    header(out, name, kind, help);
    for s in statuses {
        let _ = writeln!(out, "{name}{{partition=\"{}\"}} {}", s.partition, value(s));
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    statuses: &[PartitionStatus],
    pick: impl Fn(&PartitionStatus) -> &Histogram,
) {
    header(out, name, "histogram", help);
    for s in statuses {
        let h = pick(s);
        for (bound, count) in h.cumulative() {
            let le = if bound.is_infinite() {
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{partition=\"{}\",le=\"{le}\"}} {count}",
                s.partition
            );
        }
        let _ = writeln!(out, "{name}_sum{{partition=\"{}\"}} {}", s.partition, h.sum);
        let _ = writeln!(
            out,
            "{name}_count{{partition=\"{}\"}} {}",
            s.partition, h.count
        );
    }
}

/// The full metrics page for one node.
pub(crate) fn render(node: NodeId, statuses: &[PartitionStatus]) -> String {
    let mut out = String::with_capacity(4096);
    header(
        &mut out,
        "holdfast_node_id",
        "gauge",
        "The id of this node.",
    );
    let _ = writeln!(out, "holdfast_node_id {node}");
    series(
        &mut out,
        "holdfast_partition_proposals_total",
        "counter",
        "Proposals acknowledged since start.",
        statuses,
        |s| s.proposals as f64,
    );
    series(
        &mut out,
        "holdfast_partition_batches_total",
        "counter",
        "Group commits (raft entries) written since start.",
        statuses,
        |s| s.batches as f64,
    );
    series(
        &mut out,
        "holdfast_partition_applied_index",
        "gauge",
        "Index of the last applied log entry.",
        statuses,
        |s| s.applied_index.0 as f64,
    );
    series(
        &mut out,
        "holdfast_partition_last_log_index",
        "gauge",
        "Index of the last entry in the local log.",
        statuses,
        |s| s.last_log_index.0 as f64,
    );
    series(
        &mut out,
        "holdfast_partition_term",
        "gauge",
        "Current raft term.",
        statuses,
        |s| s.term.0 as f64,
    );
    series(
        &mut out,
        "holdfast_partition_is_leader",
        "gauge",
        "1 if this node leads the partition.",
        statuses,
        |s| if s.leader == Some(node) { 1.0 } else { 0.0 },
    );
    series(
        &mut out,
        "holdfast_partition_pending_timers",
        "gauge",
        "Timers registered and not fired yet.",
        statuses,
        |s| s.pending_timers as f64,
    );
    histogram(
        &mut out,
        "holdfast_partition_batch_size",
        "Commands per group commit.",
        statuses,
        |s| &s.batch_size,
    );
    histogram(
        &mut out,
        "holdfast_partition_commit_latency_seconds",
        "Time from a proposal's arrival to its acknowledgement.",
        statuses,
        |s| &s.commit_latency,
    );
    out
}
