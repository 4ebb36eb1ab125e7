//! `FireSchedule`: each tick of a schedule starts one invocation, once, on its target's
//! partition; a tick proposed again (a new leader) or an older one changes nothing.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{ScheduleRun, Status};
use holdfast_fsm::{Config, Effect, Home};
use holdfast_types::{
    Command, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, Source,
};

const PARTITIONS: u32 = 8;

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
    Command::FireSchedule {
        name: "nightly".into(),
        tick_ms,
        skipped,
        request: Box::new(tick_request(tick_ms)),
    }
}

/// Settings of the partition a tick's invocation lives on, so the schedule and its target share
/// it (the invocation starts within the command).
fn home_of(id: InvocationId) -> Config {
    Config {
        home: Some(Home {
            partition: id.partition(PARTITIONS),
            partitions: PARTITIONS,
        }),
        ..Config::default()
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
