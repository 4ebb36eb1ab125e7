//! `FireSchedule`: each tick of a schedule starts one invocation, once, on its target's
//! partition; a tick proposed again (a new leader) or an older one changes nothing. While a
//! tick's run goes on, the overlap policy skips, queues or allows the next ticks.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{ScheduleRun, Status};
use holdfast_fsm::{Config, Effect, Home};
use holdfast_types::{
    Command, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, Overlap, Source,
};

/// The request a leader resolves for tick `tick_ms` of schedule `nightly`, to `Greeter`.
fn tick_request(tick_ms: u64) -> InvocationRequest {
    let key = format!("schedule/nightly/{tick_ms}");
    let mut request = request(greeter(), HandlerKind::Shared, 0);
    request.id = InvocationId::idempotent(&request.target, &key);
    request.idempotency_key = Some(key);
    request.source = Source::Schedule {
        name: "nightly".into(),
        tick_ms,
    };
    request.response = false;
    request.at_ms = tick_ms + 3;
    request
}

fn fire(tick_ms: u64, skipped: u64) -> Command {
    fire_with(tick_ms, skipped, Overlap::Allow)
}

fn fire_with(tick_ms: u64, skipped: u64, overlap: Overlap) -> Command {
    Command::FireSchedule {
        name: "nightly".into(),
        tick_ms,
        skipped,
        overlap,
        request: Box::new(tick_request(tick_ms)),
    }
}

fn run_of(store: &MemoryStore) -> Option<ScheduleRun> {
    store.schedule_runs.get("nightly").cloned()
}

#[test]
fn a_tick_starts_its_invocation_and_is_recorded() {
    let mut store = MemoryStore::default();
    let tick = tick_request(60_000);
    let effects = step_quietly(&mut store, &home_of(tick.id), &[fire(60_000, 2)]);
    assert_eq!(effects, [run_attempt(tick.id, &greeter(), 1)]);
    assert!(matches!(
        status(&store, tick.id),
        Some(Status::Invoked { .. })
    ));
    let record = store.invocations.get(&tick.id).expect("the invocation");
    assert_eq!(
        record.source,
        Source::Schedule {
            name: "nightly".into(),
            tick_ms: 60_000
        }
    );
    assert_eq!(
        run_of(&store),
        Some(ScheduleRun {
            last_tick_ms: 60_000,
            fired: 1,
            skipped: 2,
            last_invocation: Some(tick.id),
            running: Vec::new(),
            queued: Vec::new(),
        })
    );
}

#[test]
fn a_tick_proposed_again_or_an_older_one_changes_nothing() {
    let mut store = MemoryStore::default();
    let config = home_of(tick_request(60_000).id);
    step_quietly(&mut store, &config, &[fire(60_000, 0), fire(120_000, 0)]);
    let before = store.clone();
    for again in [fire(120_000, 5), fire(60_000, 0)] {
        let effects = step_quietly(&mut store, &config, &[again]);
        assert_eq!(effects, []);
        assert_eq!(store, before);
    }
    let run = run_of(&store).expect("recorded");
    assert_eq!((run.last_tick_ms, run.fired, run.skipped), (120_000, 2, 0));
}

#[test]
fn a_tick_for_another_partition_goes_through_the_outbox() {
    let mut store = MemoryStore::default();
    let tick = tick_request(60_000);
    // A partition the invocation does not live on fires the schedule.
    let elsewhere = Config {
        home: Some(Home {
            partition: holdfast_types::PartitionId(
                (tick.id.partition(PARTITIONS).0 + 1) % PARTITIONS,
            ),
            partitions: PARTITIONS,
        }),
        ..Config::default()
    };
    let effects = step_quietly(&mut store, &elsewhere, &[fire(60_000, 0)]);
    assert!(matches!(
        effects.as_slice(),
        [Effect::ShuffleOut { message: OutboxMessage::Invoke(request), .. }] if **request == tick
    ));
    assert_eq!(
        outbox(&store),
        [OutboxMessage::Invoke(Box::new(tick.clone()))]
    );
    assert_eq!(status(&store, tick.id), None);
    assert_eq!(run_of(&store).map(|run| run.fired), Some(1));
}

#[test]
fn a_tick_delivered_twice_attaches_to_its_one_invocation() {
    // The same tick's request arriving again at the target (a schedule re-created under its old
    // name and firing the tick anew) finds the invocation by its idempotency key.
    let mut store = MemoryStore::default();
    let tick = tick_request(60_000);
    let config = home_of(tick.id);
    step_quietly(&mut store, &config, &[invoke(tick.clone())]);
    let before = store.invocations.clone();
    let effects = step_quietly(&mut store, &config, &[invoke(tick)]);
    assert_eq!(effects, []);
    assert_eq!(store.invocations, before);
}

/// Settings of the partition of tick 60 000's invocation; every tick request targets the
/// stateless `Greeter`, whose ids spread over partitions, so the tests route by their own home.
fn home() -> Config {
    home_of(tick_request(60_000).id)
}

/// The end of tick `tick_ms`'s run, as its invocation's partition reports it.
fn run_ended(tick_ms: u64) -> Command {
    Command::ShuffleIn {
        from: holdfast_types::PartitionId(7),
        seq: tick_ms,
        message: OutboxMessage::ScheduleRunEnded {
            name: "nightly".into(),
            tick_ms,
        },
        at_ms: tick_ms + 500,
    }
}

/// The requests `effects` and the outbox hand to the shuffle or start here, by tick.
fn started(store: &MemoryStore, ticks: &[u64]) -> Vec<bool> {
    ticks
        .iter()
        .map(|tick| {
            let id = tick_request(*tick).id;
            store.invocations.contains_key(&id)
                || outbox(store)
                    .iter()
                    .any(|m| matches!(m, OutboxMessage::Invoke(r) if r.id == id))
        })
        .collect()
}

#[test]
fn skip_drops_a_tick_while_an_earlier_one_runs() {
    let mut store = MemoryStore::default();
    let config = home();
    step_quietly(
        &mut store,
        &config,
        &[
            fire_with(60_000, 0, Overlap::Skip),
            fire_with(120_000, 0, Overlap::Skip),
        ],
    );
    assert_eq!(started(&store, &[60_000, 120_000]), [true, false]);
    let run = run_of(&store).expect("recorded");
    assert_eq!((run.fired, run.skipped, run.last_tick_ms), (1, 1, 120_000));
    // Once the run ended, the next tick starts.
    step_quietly(
        &mut store,
        &config,
        &[run_ended(60_000), fire_with(180_000, 0, Overlap::Skip)],
    );
    assert_eq!(started(&store, &[180_000]), [true]);
    let run = run_of(&store).expect("recorded");
    assert_eq!(run.running, [(180_000, tick_request(180_000).id)]);
}

#[test]
fn queue_starts_waiting_ticks_in_order_as_runs_end() {
    let mut store = MemoryStore::default();
    let config = home();
    step_quietly(
        &mut store,
        &config,
        &[
            fire_with(60_000, 0, Overlap::Queue),
            fire_with(120_000, 0, Overlap::Queue),
            fire_with(180_000, 0, Overlap::Queue),
        ],
    );
    assert_eq!(
        started(&store, &[60_000, 120_000, 180_000]),
        [true, false, false]
    );
    assert_eq!(run_of(&store).map(|r| r.queued.len()), Some(2));
    step_quietly(&mut store, &config, &[run_ended(60_000)]);
    assert_eq!(started(&store, &[120_000, 180_000]), [true, false]);
    step_quietly(&mut store, &config, &[run_ended(120_000)]);
    assert_eq!(started(&store, &[180_000]), [true]);
    let run = run_of(&store).expect("recorded");
    assert_eq!((run.fired, run.skipped, run.queued.len()), (3, 0, 0));
    // A repeated end changes nothing.
    let before = store.clone();
    step_quietly(&mut store, &config, &[run_ended(120_000)]);
    assert_eq!(store.schedule_runs, before.schedule_runs);
}

#[test]
fn queue_is_bounded_and_skips_beyond_it() {
    let mut store = MemoryStore::default();
    let config = home();
    let ticks: Vec<Command> = (1..=102)
        .map(|n| fire_with(n * 60_000, 0, Overlap::Queue))
        .collect();
    step_quietly(&mut store, &config, &ticks);
    let run = run_of(&store).expect("recorded");
    assert_eq!(run.queued.len(), Overlap::MAX_QUEUED);
    assert_eq!((run.fired, run.skipped), (1, 1));
}

#[test]
fn allow_starts_every_tick_and_keeps_no_run_list() {
    let mut store = MemoryStore::default();
    let config = home();
    let ticks: Vec<Command> = (1..=50).map(|n| fire(n * 60_000, 0)).collect();
    step_quietly(&mut store, &config, &ticks);
    assert_eq!(started(&store, &[60_000, 3_000_000]), [true, true]);
    let run = run_of(&store).expect("recorded");
    assert_eq!((run.fired, run.running.len()), (50, 0));
    // Their ends change nothing.
    step_quietly(&mut store, &config, &[run_ended(60_000)]);
    assert_eq!(run_of(&store).map(|r| r.running.len()), Some(0));
}

#[test]
fn a_tick_s_invocation_reports_its_end_to_the_schedule() {
    let mut store = MemoryStore::default();
    let tick = tick_request(60_000);
    let config = home_of(tick.id);
    step_quietly(&mut store, &config, &[fire_with(60_000, 0, Overlap::Skip)]);
    // The invocation completes: the schedule's partition hears of it (within the same command
    // when it is this one).
    let index = store.invocations[&tick.id].journal_len;
    step_quietly(
        &mut store,
        &config,
        &[
            append(tick.id, 1, index, output("done")),
            ended(tick.id, 1, holdfast_types::Ending::Completed),
        ],
    );
    let end = OutboxMessage::ScheduleRunEnded {
        name: "nightly".into(),
        tick_ms: 60_000,
    };
    let schedules_partition = holdfast_types::routing::partition_for_key(
        holdfast_types::routing::schedule_partition_key("nightly"),
        PARTITIONS,
    );
    if schedules_partition == tick.id.partition(PARTITIONS) {
        assert_eq!(run_of(&store).map(|run| run.running), Some(Vec::new()));
    } else {
        assert!(outbox(&store).contains(&end), "{:?}", outbox(&store));
    }
}

#[test]
fn ticks_fired_and_skipped_are_observed_for_the_metrics() {
    let mut store = MemoryStore::default();
    let config = home();
    let observed = |effects: Vec<Effect>| -> Vec<(u64, u64)> {
        effects
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Observe(holdfast_fsm::Observation::ScheduleTicks {
                    fired,
                    skipped,
                    ..
                }) => Some((fired, skipped)),
                _ => None,
            })
            .collect()
    };
    let first = step_with(&mut store, &config, &[fire_with(60_000, 3, Overlap::Skip)]);
    assert_eq!(observed(first), [(0, 3), (1, 0)]);
    let second = step_with(&mut store, &config, &[fire_with(120_000, 0, Overlap::Skip)]);
    assert_eq!(observed(second), [(0, 1)]);
    let again = step_with(&mut store, &config, &[fire_with(120_000, 0, Overlap::Skip)]);
    assert_eq!(observed(again), []);
}
