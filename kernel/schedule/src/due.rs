//! Which ticks to fire when the scheduler looks: those on time always, and of those it missed
//! (the node was down, leadership moved, the schedule was paused) what the catch-up policy says.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Spec;

/// A tick fired at most this late is on time, not missed.
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
    let mut on_time = Vec::new();
    let mut skipped = 0u64;
    let mut skipped_exact = true;
    let mut cursor = after_ms;
    let mut scanned = 0usize;
    while let Some(tick) = spec.next_after(cursor).filter(|tick| *tick <= now_ms) {
        if now_ms - tick <= GRACE_MS {
            on_time.push(tick);
        } else {
            missed.push_back(tick);
            if missed.len() > keep {
                missed.pop_front();
                skipped += 1;
            }
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
    if catch_up == CatchUp::Latest && !on_time.is_empty() {
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
    fn on_time_ticks_fire_whatever_the_policy() {
        // Ticks at 2 and 3 minutes, looked at 3m: 2m is a minute late, still on time.
        for policy in [CatchUp::Skip, CatchUp::Latest, CatchUp::All { max: 5 }] {
            let due = due(&every_minute(), 90_000, 3 * MINUTE, policy);
            assert_eq!(due.fire, [2 * MINUTE, 3 * MINUTE], "{policy:?}");
            assert_eq!(due.skipped, 0);
            assert_eq!(due.next, Some(4 * MINUTE));
        }
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
        // Every 3 s, looked at 25 s: every tick is within the grace and fires.
        let spec = Spec::every(3_000).expect("valid");
        let due = super::due(&spec, 0, 25_000, CatchUp::Latest);
        assert_eq!(
            due.fire,
            [3_000, 6_000, 9_000, 12_000, 15_000, 18_000, 21_000, 24_000]
        );
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
        let newest_missed = (now - GRACE_MS - 1) / 1000 * 1000;
        assert_eq!(
            due.fire.len(),
            5 + 61,
            "five missed, a minute's worth on time"
        );
        assert_eq!(due.fire[4], newest_missed);
        assert_eq!(due.fire[5], newest_missed + 1000);
        assert!(!due.skipped_exact);
        assert!(due.skipped > 0);
    }
}
