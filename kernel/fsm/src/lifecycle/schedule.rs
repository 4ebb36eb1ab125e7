//! A schedule's ticks. `FireSchedule` starts one invocation per tick, once: the partition that
//! fires a schedule records its newest tick, and a tick at or before it is a repeat (a new leader
//! proposing again what its predecessor proposed) that changes nothing. The invocation goes to
//! its target's partition like a one-way send, with the tick in its idempotency key, so even a
//! schedule re-created under the same name cannot start one tick's invocation twice.
//!
//! While a tick's invocation runs, the schedule's overlap policy decides what a new tick does:
//! `allow` starts it too, `skip` counts it skipped, `queue` keeps its request (at most
//! [`Overlap::MAX_QUEUED`]) and starts it when the runs before it ended. Only `skip` and `queue`
//! track what runs (one run at a time); under `allow` nothing waits for a run. An invocation started
//! by a tick reports its end to the schedule's partition (`ScheduleRunEnded`, see
//! [`super::complete`]).

use super::observe::observe;
use super::{Ctx, send};
use crate::state::ScheduleRun;
use crate::{Observation, Store};
use holdfast_types::{InvocationRequest, OutboxMessage, Overlap};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    name: &str,
    tick_ms: u64,
    skipped: u64,
    overlap: Overlap,
    request: &InvocationRequest,
) -> Result<(), S::Error> {
    let mut run = cx.store.get_schedule_run(name)?.unwrap_or_default();
    // Ticks come strictly after an instant, so they are at least 1 and a new record's 0 is below
    // every one.
    if tick_ms <= run.last_tick_ms {
        return Ok(());
    }
    run.last_tick_ms = tick_ms;
    let busy = !run.running.is_empty();
    let dropped = match overlap {
        Overlap::Skip => busy,
        Overlap::Queue => busy && run.queued.len() >= Overlap::MAX_QUEUED,
        Overlap::Allow => false,
    };
    let skipped = skipped.saturating_add(u64::from(dropped));
    run.skipped = run.skipped.saturating_add(skipped);
    counted(cx, name, 0, skipped);
    if dropped {
        return cx.store.put_schedule_run(name, &run);
    }
    if overlap == Overlap::Queue && (busy || !run.queued.is_empty()) {
        run.queued.push(request.clone());
        return cx.store.put_schedule_run(name, &run);
    }
    // Under `allow` nothing waits for a run to end, so runs are not tracked: a handler that
    // never ends must not grow the record by one run per tick.
    let tracked = overlap != Overlap::Allow;
    start(cx, name, run, request.clone(), tick_ms, tracked)
}

/// Tells the leader's metrics about ticks fired and skipped.
fn counted<S: Store>(cx: &mut Ctx<'_, S>, name: &str, fired: u64, skipped: u64) {
    if fired + skipped > 0 {
        let name = name.to_owned();
        observe(
            cx,
            Observation::ScheduleTicks {
                name,
                fired,
                skipped,
            },
        );
    }
}

/// The invocation of tick `tick_ms` of schedule `name` ended: forgets it, and starts the oldest
/// queued tick once nothing runs.
pub(crate) fn run_ended<S: Store>(
    cx: &mut Ctx<'_, S>,
    name: &str,
    tick_ms: u64,
) -> Result<(), S::Error> {
    let Some(mut run) = cx.store.get_schedule_run(name)? else {
        return Ok(());
    };
    run.running.retain(|(tick, _)| *tick != tick_ms);
    if run.running.is_empty() && !run.queued.is_empty() {
        let next = run.queued.remove(0);
        let tick = match &next.source {
            holdfast_types::Source::Schedule { tick_ms, .. } => *tick_ms,
            _ => run.last_tick_ms,
        };
        return start(cx, name, run, next, tick, true);
    }
    cx.store.put_schedule_run(name, &run)
}

/// Records tick `tick_ms` as fired (and running, if `tracked`) and sends its invocation.
fn start<S: Store>(
    cx: &mut Ctx<'_, S>,
    name: &str,
    mut run: ScheduleRun,
    request: InvocationRequest,
    tick_ms: u64,
    tracked: bool,
) -> Result<(), S::Error> {
    run.fired = run.fired.saturating_add(1);
    counted(cx, name, 1, 0);
    run.last_invocation = Some(request.id);
    if tracked {
        run.running.push((tick_ms, request.id));
    }
    cx.store.put_schedule_run(name, &run)?;
    let at_ms = request.at_ms;
    send(cx, OutboxMessage::Invoke(Box::new(request)), at_ms)
}
