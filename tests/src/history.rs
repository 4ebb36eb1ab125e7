//! A Jepsen-style history: client threads record when each operation was invoked and how it
//! ended, and checkers decide afterwards whether the results are consistent with the guarantees.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What an operation tried to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Add an element to a set.
    Add(i64),
    /// Increment the counter `key`; the ok value is the counter's new value.
    Increment {
        /// Which counter.
        key: String,
    },
}

/// How an operation ended, as far as its client could tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, with the value the system answered.
    Ok(Option<i64>),
    /// Definitely not applied (refused before the request was processed).
    Fail,
    /// Unknown: it may have been applied, now or at any later time (timeouts, dropped
    /// connections, 500s, and operations never completed).
    Info,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Its position in the history, used to name it in violations.
    pub id: usize,
    /// The client (thread) that issued it.
    pub process: usize,
    /// What it did.
    pub kind: OpKind,
    /// When the client was about to send it.
    pub invoked: Instant,
    /// When the client learnt its outcome (`None` while unknown).
    pub completed: Option<Instant>,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op #{} (process {}, ", self.id, self.process)?;
        match &self.kind {
            OpKind::Add(element) => write!(f, "add {element}")?,
            OpKind::Increment { key } => write!(f, "increment {key:?}")?,
        }
        match &self.outcome {
            Outcome::Ok(Some(value)) => write!(f, " -> ok {value})"),
            Outcome::Ok(None) => write!(f, " -> ok)"),
            Outcome::Fail => write!(f, " -> fail)"),
            Outcome::Info => write!(f, " -> info)"),
        }
    }
}

/// The operations of a test run, shared by every client thread (clones share one history).
#[derive(Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
}

/// An invoked operation awaiting its outcome; dropping it leaves the outcome unknown (info).
#[must_use = "complete the operation with ok, fail or info"]
pub struct Invocation {
    history: History,
    id: usize,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `process` is about to send `kind`, timestamped now.
    pub fn invoke(&self, process: usize, kind: OpKind) -> Invocation {
        let mut ops = self.ops.lock().expect("history lock");
        let id = ops.len();
        ops.push(Op {
            id,
            process,
            kind,
            invoked: Instant::now(),
            completed: None,
            outcome: Outcome::Info,
        });
        Invocation {
            history: self.clone(),
            id,
        }
    }

    /// Appends a complete operation with explicit times (for hand-built histories); its id is
    /// replaced by its position.
    pub fn push(&self, mut op: Op) -> usize {
        let mut ops = self.ops.lock().expect("history lock");
        op.id = ops.len();
        ops.push(op);
        ops.len() - 1
    }

    /// A snapshot of every operation so far, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }

    fn complete(&self, id: usize, outcome: Outcome) {
        let completed = Instant::now();
        let mut ops = self.ops.lock().expect("history lock");
        let op = &mut ops[id];
        op.completed = Some(completed);
        op.outcome = outcome;
    }
}

impl Invocation {
    /// The operation was applied; `value` is what the system answered (if anything).
    pub fn ok(self, value: Option<i64>) {
        self.history.complete(self.id, Outcome::Ok(value));
    }

    /// The operation was definitely not applied.
    pub fn fail(self) {
        self.history.complete(self.id, Outcome::Fail);
    }

    /// The outcome is unknown.
    pub fn info(self) {
        self.history.complete(self.id, Outcome::Info);
    }
}

/// Counts a checker reports when the history is valid (and uses in its violations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations acknowledged.
    pub ok: usize,
    /// Operations definitely not applied.
    pub fail: usize,
    /// Operations with an unknown outcome.
    pub info: usize,
    /// Acknowledged effects missing from the final state (set: elements; counter: increments).
    pub lost: usize,
    /// Effects in the final state nobody could have caused.
    pub unexpected: usize,
    /// Set: elements present more than once.
    pub duplicated: usize,
    /// Set: info adds whose element is present (applied although the client never knew).
    pub recovered: usize,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok(_) => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Info => self.info += 1,
        }
    }
}

/// Checks a set of [`OpKind::Add`] operations against the set read after the run: every
/// acknowledged element is present, and nothing is present that was never attempted or whose
/// every attempt definitely failed.
pub fn check_set(history: &History, final_read: &BTreeSet<i64>) -> Result<Summary, Vec<String>> {
    let mut summary = Summary::default();
    let mut violations = Vec::new();
    let mut attempts: BTreeMap<i64, Vec<Op>> = BTreeMap::new();
    for op in history.ops() {
        if let OpKind::Add(element) = op.kind {
            summary.count(&op.outcome);
            attempts.entry(element).or_default().push(op);
        }
    }
    for (element, ops) in &attempts {
        let present = final_read.contains(element);
        for op in ops {
            if matches!(op.outcome, Outcome::Ok(_)) && !present {
                summary.lost += 1;
                violations.push(format!(
                    "{op} was acknowledged but {element} is missing from the final read"
                ));
            }
        }
        let maybe_applied = ops.iter().any(|op| op.outcome != Outcome::Fail);
        if present && !maybe_applied {
            summary.unexpected += 1;
            let failed: Vec<String> = ops.iter().map(Op::to_string).collect();
            violations.push(format!(
                "{element} is in the final read but every add of it definitely failed: {}",
                failed.join(", ")
            ));
        }
        if present && !ops.iter().any(|op| matches!(op.outcome, Outcome::Ok(_))) && maybe_applied {
            summary.recovered += 1;
        }
    }
    for element in final_read.iter().filter(|e| !attempts.contains_key(e)) {
        summary.unexpected += 1;
        violations.push(format!(
            "{element} is in the final read but no operation ever added it"
        ));
    }
    if violations.is_empty() {
        Ok(summary)
    } else {
        Err(violations)
    }
}

/// [`check_set`] for a final read that may list an element more than once; each repeat is a
/// violation too (an add applied twice).
pub fn check_set_multiset(history: &History, final_read: &[i64]) -> Result<Summary, Vec<String>> {
    let mut occurrences: BTreeMap<i64, usize> = BTreeMap::new();
    for element in final_read {
        *occurrences.entry(*element).or_default() += 1;
    }
    let distinct: BTreeSet<i64> = occurrences.keys().copied().collect();
    let (mut summary, mut violations) = match check_set(history, &distinct) {
        Ok(summary) => (summary, Vec::new()),
        Err(violations) => (Summary::default(), violations),
    };
    let ops = history.ops();
    for (element, times) in occurrences.iter().filter(|(_, times)| **times > 1) {
        summary.duplicated += 1;
        let adds: Vec<String> = ops
            .iter()
            .filter(|op| op.kind == OpKind::Add(*element))
            .map(Op::to_string)
            .collect();
        violations.push(format!(
            "{element} appears {times} times in the final read; added by {}",
            if adds.is_empty() {
                "no operation".to_string()
            } else {
                adds.join(", ")
            }
        ));
    }
    if violations.is_empty() {
        Ok(summary)
    } else {
        Err(violations)
    }
}

/// Checks the [`OpKind::Increment`] operations on `key` against the counter's value read after
/// the run: acknowledged values are distinct and between 1 and the final value, an increment
/// that completed before another was invoked got the smaller value, and the final value counts
/// every acknowledged increment and at most the unknown ones besides.
pub fn check_counter(
    history: &History,
    key: &str,
    final_value: i64,
) -> Result<Summary, Vec<String>> {
    let mut summary = Summary::default();
    let mut violations = Vec::new();
    let mut acknowledged: Vec<(Op, i64)> = Vec::new();
    for op in history.ops() {
        if !matches!(&op.kind, OpKind::Increment { key: k } if k == key) {
            continue;
        }
        summary.count(&op.outcome);
        match op.outcome {
            Outcome::Ok(Some(value)) => acknowledged.push((op, value)),
            Outcome::Ok(None) => violations.push(format!("{op} was acknowledged without a value")),
            Outcome::Fail | Outcome::Info => {}
        }
    }

    let mut by_value: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for (op, value) in &acknowledged {
        by_value.entry(*value).or_default().push(op);
        if *value < 1 || *value > final_value {
            violations.push(format!(
                "{op}: the value is outside 1..={final_value} (the final value)"
            ));
        }
    }
    for (value, ops) in by_value.iter().filter(|(_, ops)| ops.len() > 1) {
        let names: Vec<String> = ops.iter().map(|op| op.to_string()).collect();
        violations.push(format!(
            "{} increments were acknowledged with the same value {value}: {}",
            ops.len(),
            names.join(", ")
        ));
    }
    violations.extend(real_time_violations(&acknowledged));

    let ok = i64::try_from(summary.ok).expect("op count fits i64");
    let info = i64::try_from(summary.info).expect("op count fits i64");
    summary.lost = usize::try_from(ok - final_value).unwrap_or(0);
    summary.unexpected = usize::try_from(final_value - ok - info).unwrap_or(0);
    if final_value < ok || final_value > ok + info {
        violations.push(format!(
            "the final value of {key:?} is {final_value}, outside [{ok}, {}] \
             ({ok} acknowledged increments, {info} unknown)",
            ok + info
        ));
    }
    if violations.is_empty() {
        Ok(summary)
    } else {
        Err(violations)
    }
}

/// Pairs of acknowledged increments where one completed before the other was invoked but did
/// not get a smaller value; each later op is reported once, against the largest earlier value.
fn real_time_violations(acknowledged: &[(Op, i64)]) -> Vec<String> {
    let mut by_completion: Vec<&(Op, i64)> = acknowledged.iter().collect();
    by_completion.sort_by_key(|(op, _)| op.completed);
    let mut by_invocation: Vec<&(Op, i64)> = acknowledged.iter().collect();
    by_invocation.sort_by_key(|(op, _)| op.invoked);

    let mut violations = Vec::new();
    let mut finished = by_completion.iter().peekable();
    // The largest value among ops completed strictly before the current invocation.
    let mut largest: Option<&(Op, i64)> = None;
    for later in by_invocation {
        while let Some(earlier) = finished.next_if(|(op, _)| {
            op.completed
                .is_some_and(|completed| completed < later.0.invoked)
        }) {
            if largest.is_none_or(|(_, value)| earlier.1 > *value) {
                largest = Some(earlier);
            }
        }
        if let Some((earlier, value)) = largest
            && *value >= later.1
        {
            violations.push(format!(
                "{later_op} was invoked after {earlier} completed but got a value not above {value}",
                later_op = later.0
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Builds histories on a fake clock: times are milliseconds after `start`.
    struct Builder {
        history: History,
        start: Instant,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                history: History::new(),
                start: Instant::now(),
            }
        }

        fn op(&self, process: usize, kind: OpKind, from: u64, to: u64, outcome: Outcome) -> usize {
            self.history.push(Op {
                id: 0,
                process,
                kind,
                invoked: self.start + Duration::from_millis(from),
                completed: Some(self.start + Duration::from_millis(to)),
                outcome,
            })
        }

        fn add(&self, element: i64, from: u64, to: u64, outcome: Outcome) -> usize {
            self.op(0, OpKind::Add(element), from, to, outcome)
        }

        fn inc(&self, process: usize, from: u64, to: u64, outcome: Outcome) -> usize {
            let kind = OpKind::Increment { key: "k".into() };
            self.op(process, kind, from, to, outcome)
        }
    }

    fn set(elements: &[i64]) -> BTreeSet<i64> {
        elements.iter().copied().collect()
    }

    fn one_violation(result: Result<Summary, Vec<String>>, mentions: &[&str]) -> String {
        let violations = result.expect_err("the history must be rejected");
        assert_eq!(violations.len(), 1, "{violations:#?}");
        for needle in mentions {
            assert!(
                violations[0].contains(needle),
                "{needle:?} not in {violations:?}"
            );
        }
        violations[0].clone()
    }

    #[test]
    fn recorded_operations_complete_and_dropped_ones_stay_unknown() {
        let history = History::new();
        let clone = history.clone();
        let worker = std::thread::spawn(move || {
            clone.invoke(1, OpKind::Add(1)).ok(None);
            clone.invoke(1, OpKind::Add(2)).fail();
            clone.invoke(1, OpKind::Add(3)).info();
            let _abandoned = clone.invoke(1, OpKind::Add(4));
        });
        worker.join().expect("worker");
        let ops = history.ops();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0].outcome, Outcome::Ok(None));
        assert!(ops[0].completed.expect("completed") >= ops[0].invoked);
        assert_eq!(ops[1].outcome, Outcome::Fail);
        assert_eq!(ops[2].outcome, Outcome::Info);
        assert_eq!(
            (ops[3].outcome.clone(), ops[3].completed),
            (Outcome::Info, None)
        );
        let summary = check_set(&history, &set(&[1, 3])).expect("valid");
        assert_eq!((summary.ok, summary.fail, summary.info), (1, 1, 2));
        assert_eq!(summary.recovered, 1);
    }

    #[test]
    fn a_valid_set_history_passes() {
        let b = Builder::new();
        b.add(1, 0, 10, Outcome::Ok(None));
        b.add(2, 5, 15, Outcome::Ok(None));
        b.add(3, 5, 15, Outcome::Info); // lost in flight: fine
        b.add(4, 5, 15, Outcome::Info); // applied although unknown: fine
        b.add(5, 5, 15, Outcome::Fail);
        b.add(6, 5, 15, Outcome::Fail); // retried below, and the retry applied it
        b.add(6, 20, 30, Outcome::Info);
        let summary = check_set(&b.history, &set(&[1, 2, 4, 6])).expect("valid");
        assert_eq!(
            summary,
            Summary {
                ok: 2,
                fail: 2,
                info: 3,
                recovered: 2,
                ..Summary::default()
            }
        );
        check_set_multiset(&b.history, &[6, 4, 2, 1]).expect("valid without repeats");
    }

    #[test]
    fn a_lost_acknowledged_add_is_named() {
        let b = Builder::new();
        b.add(1, 0, 10, Outcome::Ok(None));
        let lost = b.add(2, 0, 10, Outcome::Ok(None));
        one_violation(
            check_set(&b.history, &set(&[1])),
            &[&format!("op #{lost} "), "add 2", "missing"],
        );
    }

    #[test]
    fn an_element_never_sent_is_named() {
        let b = Builder::new();
        b.add(1, 0, 10, Outcome::Ok(None));
        one_violation(
            check_set(&b.history, &set(&[1, 99])),
            &["99", "no operation"],
        );
    }

    #[test]
    fn a_definitely_failed_add_that_appears_is_named() {
        let b = Builder::new();
        let failed = b.add(7, 0, 10, Outcome::Fail);
        let violation = one_violation(check_set(&b.history, &set(&[7])), &["definitely failed"]);
        assert!(violation.contains(&format!("op #{failed} ")), "{violation}");
    }

    #[test]
    fn a_duplicate_element_is_named() {
        let b = Builder::new();
        b.add(1, 0, 10, Outcome::Ok(None));
        let twice = b.add(2, 0, 10, Outcome::Ok(None));
        let result = check_set_multiset(&b.history, &[1, 2, 2]);
        one_violation(result, &["2 appears 2 times", &format!("op #{twice} ")]);
    }

    #[test]
    fn the_multiset_check_reports_set_violations_too() {
        let b = Builder::new();
        b.add(1, 0, 10, Outcome::Ok(None));
        b.add(2, 0, 10, Outcome::Ok(None));
        let violations = check_set_multiset(&b.history, &[1, 1, 3]).expect_err("invalid");
        assert_eq!(violations.len(), 3, "{violations:#?}");
    }

    #[test]
    fn a_valid_counter_history_passes() {
        let b = Builder::new();
        b.inc(0, 0, 10, Outcome::Ok(Some(1)));
        // Concurrent with each other: either order is fine.
        b.inc(1, 20, 40, Outcome::Ok(Some(3)));
        b.inc(2, 25, 35, Outcome::Ok(Some(2)));
        b.inc(3, 30, 50, Outcome::Info); // applied (value 4) but the client never knew
        b.inc(0, 45, 60, Outcome::Fail);
        b.inc(1, 70, 80, Outcome::Ok(Some(5)));
        b.inc(2, 90, 95, Outcome::Info); // never applied
        // Another key is ignored.
        b.op(
            0,
            OpKind::Increment {
                key: "other".into(),
            },
            0,
            1,
            Outcome::Ok(Some(1)),
        );
        b.add(1, 0, 1, Outcome::Ok(None));
        let summary = check_counter(&b.history, "k", 5).expect("valid");
        assert_eq!((summary.ok, summary.fail, summary.info), (4, 1, 2));
        check_counter(&b.history, "k", 4).expect_err("value 5 was acknowledged");
        check_counter(&b.history, "k", 6).expect("6 is within [4, 6]");
    }

    #[test]
    fn two_acknowledgements_with_the_same_value_are_named() {
        let b = Builder::new();
        let first = b.inc(0, 0, 10, Outcome::Ok(Some(1)));
        let second = b.inc(1, 5, 15, Outcome::Ok(Some(1)));
        b.inc(2, 5, 15, Outcome::Info);
        one_violation(
            check_counter(&b.history, "k", 2),
            &[
                "same value 1",
                &format!("op #{first} "),
                &format!("op #{second} "),
            ],
        );
    }

    #[test]
    fn a_real_time_order_violation_is_named() {
        let b = Builder::new();
        let earlier = b.inc(0, 0, 10, Outcome::Ok(Some(2)));
        let later = b.inc(1, 11, 20, Outcome::Ok(Some(1)));
        let violation = one_violation(check_counter(&b.history, "k", 2), &["invoked after"]);
        assert!(
            violation.starts_with(&format!("op #{later} "))
                && violation.contains(&format!("op #{earlier} ")),
            "{violation}"
        );
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        let b = Builder::new();
        b.inc(0, 0, 10, Outcome::Ok(Some(2)));
        b.inc(1, 10, 20, Outcome::Ok(Some(1))); // invoked at the instant the other completed
        check_counter(&b.history, "k", 2).expect("not strictly after");
    }

    #[test]
    fn a_final_counter_out_of_range_is_named() {
        let b = Builder::new();
        b.inc(0, 0, 10, Outcome::Ok(Some(1)));
        b.inc(0, 20, 30, Outcome::Ok(Some(2)));
        b.inc(1, 20, 30, Outcome::Info);
        one_violation(
            check_counter(&b.history, "k", 4),
            &["final value", "outside [2, 3]"],
        );
        let summary = check_counter(&b.history, "k", 3).expect("the info op applied");
        assert_eq!((summary.lost, summary.unexpected), (0, 0));
    }

    #[test]
    fn an_acknowledged_value_above_the_final_value_is_named() {
        let b = Builder::new();
        b.inc(0, 0, 10, Outcome::Ok(Some(1)));
        let high = b.inc(0, 20, 30, Outcome::Ok(Some(5)));
        one_violation(
            check_counter(&b.history, "k", 2),
            &[&format!("op #{high} "), "outside 1..=2"],
        );
    }
}
