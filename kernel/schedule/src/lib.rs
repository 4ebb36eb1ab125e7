//! When a schedule fires. A schedule's *spec* is a cron expression in an IANA time zone or a
//! fixed interval; its *ticks* are the instants it fires at, in Unix milliseconds. Everything
//! here is a pure function of its arguments (the caller supplies "now"), so the partition leader
//! that fires a schedule and the tests that check it compute the same ticks.
//!
//! - [`Cron`]: 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), the
//!   `@hourly`-style aliases, names for months and weekdays.
//! - [`Spec`]: a cron expression in a zone, or an interval; [`Spec::next_after`] gives the next
//!   tick. Local times a daylight-saving change skips fire once, at the end of the gap; local
//!   times it repeats fire once, at their first occurrence.
//! - [`CatchUp`] and [`due`]: which ticks to fire when the scheduler looks after a while (a
//!   restart, a failover, a pause): on time, the latest missed one, or every missed one up to a
//!   bound.

mod cron;
mod due;
mod error;
mod spec;

pub use cron::Cron;
pub use due::{CatchUp, Due, GRACE_MS, due};
pub use error::ScheduleError;
pub use spec::Spec;
