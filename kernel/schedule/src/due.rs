//! Which ticks to fire when the scheduler looks. Of the ticks due since the last one fired, the
//! newest is on time if it is at most [`GRACE_MS`] late, and fires whatever the policy; every
//! other one is missed (a later tick came due before it fired: the node was down, leadership
//! moved), and the catch-up policy says which of those fire.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Spec;

/// The newest due tick fired at most this late is on time, not missed: a leader that takes over
/// within it fires the tick it found due.
pub const GRACE_MS: u64 = 60_000;

/// How many ticks one look enumerates before it jumps ahead (halving what is left): only the
/// newest missed ticks can fire, and a look must stay short.
const SCAN_LIMIT: usize = 10_000;

/// What to do with ticks that were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire none of them: the schedule resumes with its next tick.
    Skip,
    /// Fire the newest one once, unless a tick on time fires in the same look.
    Latest,
    /// Fire the newest `max` of them, oldest first; older ones are skipped.
    All {
        /// At most this many missed ticks fire.
        max: u32,
    },
}

impl CatchUp {
    /// The policy's name as the admin API and SQL show it: `skip`, `latest` or `all`.
    pub fn name(&self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Latest => "latest",
            CatchUp::All { .. } => "all",
        }
    }
}

/// The outcome of one look at a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The ticks to fire now, oldest first.
    pub fire: Vec<u64>,
    /// Missed ticks that will not fire.
    pub skipped: u64,
    /// Whether `skipped` is exact; a look over very many missed ticks jumps ahead, and then
    /// `skipped` counts only those it saw.
    pub skipped_exact: bool,
    /// The first tick after `now`, when the timer should look again.
    pub next: Option<u64>,
}

/// The ticks in (`after_ms`, `now_ms`] and what to do with them; `after_ms` is the last tick
/// fired (or when the schedule was created or resumed).
pub fn due(spec: &Spec, after_ms: u64, now_ms: u64, catch_up: CatchUp) -> Due {
    let keep = match catch_up {
        CatchUp::Skip => 0,
        CatchUp::Latest => 1,
        CatchUp::All { max } => usize::try_from(max).unwrap_or(usize::MAX),
    };
    let mut missed: VecDeque<u64> = VecDeque::new();
    let mut skipped = 0u64;
    let mut skipped_exact = true;
    // Every due tick but the newest is missed: a later one came due before it fired.
    let mut miss = |tick: u64, missed: &mut VecDeque<u64>| {
        missed.push_back(tick);
        if missed.len() > keep {
            missed.pop_front();
            skipped += 1;
        }
    };
    let mut newest: Option<u64> = None;
    let mut cursor = after_ms;
    let mut scanned = 0usize;
    while let Some(tick) = spec.next_after(cursor).filter(|tick| *tick <= now_ms) {
        if let Some(older) = newest.replace(tick) {
            miss(older, &mut missed);
        }
        cursor = tick;
        scanned += 1;
        let late_end = now_ms.saturating_sub(GRACE_MS);
        if scanned >= SCAN_LIMIT && cursor < late_end {
            // The ticks between here and halfway to the end of the missed ones are skipped
            // uncounted.
            cursor += (late_end - cursor) / 2;
            scanned = 0;
            skipped_exact = false;
        }
    }
    let on_time = match newest {
        Some(tick) if now_ms - tick <= GRACE_MS => Some(tick),
        Some(tick) => {
            miss(tick, &mut missed);
            None
        }
        None => None,
    };
    if catch_up == CatchUp::Latest && on_time.is_some() {
        skipped += missed.len() as u64;
        missed.clear();
    }
    let mut fire: Vec<u64> = missed.into_iter().collect();
    fire.extend(on_time);
    Due {
        fire,
        skipped,
        skipped_exact,
        next: spec.next_after(now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    fn every_minute() -> Spec {
        Spec::every(MINUTE).expect("valid")
    }

    fn every_five() -> Spec {
        Spec::every(5 * MINUTE).expect("valid")
    }

    #[test]
    fn the_newest_tick_fires_on_time_whatever_the_policy() {
        // Ticks at 2 and 3 minutes, looked at 3m30s: 3m is on time; 2m was missed, because 3m
        // came due before it fired.
        let now = 3 * MINUTE + 30_000;
        for (policy, fire, skipped) in [
            (CatchUp::Skip, vec![3 * MINUTE], 1),
            (CatchUp::Latest, vec![3 * MINUTE], 1),
            (CatchUp::All { max: 5 }, vec![2 * MINUTE, 3 * MINUTE], 0),
        ] {
            let due = due(&every_minute(), 90_000, now, policy);
            assert_eq!((due.fire, due.skipped), (fire, skipped), "{policy:?}");
            assert_eq!(due.next, Some(4 * MINUTE));
        }
        // One tick due, a minute late: still on time.
        let due = super::due(&every_five(), 0, 6 * MINUTE, CatchUp::Skip);
        assert_eq!((due.fire, due.skipped), (vec![5 * MINUTE], 0));
    }

    #[test]
    fn skip_fires_only_what_is_on_time() {
        // Down from 0 to 10m10s: ticks 1..=10 minutes; 10m is on time, 1..=9 missed.
        let due = due(&every_minute(), 0, 10 * MINUTE + 10_000, CatchUp::Skip);
        assert_eq!(due.fire, [10 * MINUTE]);
        assert_eq!((due.skipped, due.skipped_exact), (9, true));
        // Looked at between ticks, after downtime: nothing fires.
        let due = super::due(
            &every_minute(),
            0,
            10 * MINUTE + 59_999 + MINUTE,
            CatchUp::Skip,
        );
        assert_eq!(due.fire, [11 * MINUTE]);
        assert_eq!(due.skipped, 10);
    }

    #[test]
    fn latest_fires_the_newest_missed_once() {
        // Every 5 minutes: ticks 5m..=50m, looked at 50m + 61 s: all missed; the newest fires.
        let due = due(&every_five(), 0, 50 * MINUTE + 61_000, CatchUp::Latest);
        assert_eq!(due.fire, [50 * MINUTE]);
        assert_eq!(due.skipped, 9);
        // Looked at 50m30s: 50m is on time and covers the missed ones.
        let due = super::due(&every_five(), 0, 50 * MINUTE + 30_000, CatchUp::Latest);
        assert_eq!(due.fire, [50 * MINUTE]);
        assert_eq!(due.skipped, 9);
        // Every 3 s, looked at 25 s: 24 s is on time, 3..=21 s were missed.
        let spec = Spec::every(3_000).expect("valid");
        let due = super::due(&spec, 0, 25_000, CatchUp::Latest);
        assert_eq!((due.fire, due.skipped), (vec![24_000], 7));
    }

    #[test]
    fn all_fires_up_to_the_bound_oldest_first() {
        let now = 50 * MINUTE + 61_000; // 50m is missed, nothing on time
        let due = due(&every_five(), 0, now, CatchUp::All { max: 3 });
        assert_eq!(due.fire, [40 * MINUTE, 45 * MINUTE, 50 * MINUTE]);
        assert_eq!(due.skipped, 7);
        let due = super::due(&every_five(), 0, now, CatchUp::All { max: 100 });
        assert_eq!(
            due.fire,
            (1..=10).map(|n| n * 5 * MINUTE).collect::<Vec<_>>()
        );
        assert_eq!(due.skipped, 0);
        assert_eq!(due.next, Some(55 * MINUTE));
    }

    #[test]
    fn nothing_is_due_before_the_first_tick() {
        let due = due(&every_minute(), 0, 59_999, CatchUp::All { max: 10 });
        assert!(due.fire.is_empty());
        assert_eq!((due.skipped, due.next), (0, Some(MINUTE)));
    }

    #[test]
    fn a_long_downtime_of_a_fast_schedule_stays_short_to_look_at() {
        // Every second for 30 days: 2.6 million ticks; only the newest can fire.
        let spec = Spec::cron("* * * * * *", "UTC").expect("valid");
        let start = 1_790_000_000_000;
        let now = start + 30 * 24 * 3600 * 1000;
        let due = due(&spec, start, now, CatchUp::All { max: 5 });
        assert_eq!(
            due.fire,
            [
                now - 5000,
                now - 4000,
                now - 3000,
                now - 2000,
                now - 1000,
                now
            ],
            "the five newest missed, then the one on time"
        );
        assert!(!due.skipped_exact);
        assert!(due.skipped > 0);
    }
}
