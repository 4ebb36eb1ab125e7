//! Limits: an attempt of a covered invocation starts only with a permit of every limit covering
//! it; the limit's home grants permits in arrival order within `max_concurrency` and its token
//! bucket, and gets them back when attempts suspend, back off, pause or end.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{LimitState, Status};
use holdfast_fsm::{Config, Effect, Home};
use holdfast_types::{
    Command, Ending, Epoch, HandlerKind, InvocationId, Limit, OutboxMessage, PartitionId, Rate,
};

/// One partition: every limit's home and every invocation's, so messages are delivered at once.
fn alone() -> Config {
    Config {
        home: Some(Home {
            partition: PartitionId(0),
            partitions: 1,
        }),
        ..Config::default()
    }
}

fn limit(name: &str, max: Option<u32>, rate: Option<Rate>) -> Limit {
    Limit {
        name: name.into(),
        service: "Greeter".into(),
        handler: None,
        key_prefix: None,
        max_concurrency: max,
        rate,
    }
}

/// One partition ([`alone`]) applying `limits` since `T0`.
fn under(limits: Vec<Limit>) -> (Config, MemoryStore) {
    let config = alone();
    let mut store = MemoryStore::default();
    step_with(&mut store, &config, &[set(limits, T0)]);
    (config, store)
}

fn set(limits: Vec<Limit>, at_ms: u64) -> Command {
    Command::SetLimits { limits, at_ms }
}

/// Invokes greeter invocation `nonce` at `at_ms`; returns its id and the attempts that started.
fn greet(
    store: &mut MemoryStore,
    config: &Config,
    nonce: u128,
    at_ms: u64,
) -> (InvocationId, Vec<Effect>) {
    let mut request = request(greeter(), HandlerKind::Shared, nonce);
    request.at_ms = at_ms;
    let id = request.id;
    (id, attempts(step_with(store, config, &[invoke(request)])))
}

fn attempts(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|e| matches!(e, Effect::RunAttempt { .. }))
        .collect()
}

/// Completes attempt `epoch` of `id` at `at_ms`; returns the attempts that started.
fn end(
    store: &mut MemoryStore,
    config: &Config,
    id: InvocationId,
    epoch: u32,
    at_ms: u64,
) -> Vec<Effect> {
    let index = record(store, id).journal_len;
    let done = Command::AttemptEnded {
        id,
        epoch: Epoch(epoch),
        ending: Ending::Completed,
        at_ms,
    };
    let effects = step_with(
        store,
        config,
        &[append(id, epoch, index, output("ok")), done],
    );
    attempts(effects)
}

fn state(store: &MemoryStore, name: &str) -> LimitState {
    store.limit_states.get(name).cloned().unwrap_or_default()
}

/// The invocations holding a permit of limit `name`.
fn held_by(store: &MemoryStore, name: &str) -> Vec<InvocationId> {
    store
        .limit_held
        .iter()
        .filter(|((limit, _), count)| limit == name && **count > 0)
        .map(|((_, id), _)| *id)
        .collect()
}

fn throttled(store: &MemoryStore, id: InvocationId) -> bool {
    matches!(status(store, id), Some(Status::Throttled { .. }))
}

#[test]
fn at_most_max_concurrency_attempts_run_and_the_rest_start_in_arrival_order() {
    let (config, mut store) = under(vec![limit("two", Some(2), None)]);
    let mut ids = Vec::new();
    let mut started = 0;
    for nonce in 0..6 {
        let (id, attempts) = greet(&mut store, &config, nonce, T0);
        started += attempts.len();
        ids.push(id);
    }
    assert_eq!(started, 2);
    assert!(ids[2..].iter().all(|id| throttled(&store, *id)));
    assert_eq!(record(&store, ids[0]).limits, ["two"]);
    let s = state(&store, "two");
    assert_eq!((s.running, s.queued(), s.granted), (2, 4, 2));
    // Each ending starts the oldest waiting one, and only it.
    for (ended, next) in [(0, 2), (1, 3), (2, 4), (3, 5)] {
        let started = end(&mut store, &config, ids[ended], 1, T0 + 10);
        assert_eq!(started, [run_attempt(ids[next], &greeter(), 1)]);
    }
    for id in &ids[4..] {
        assert!(end(&mut store, &config, *id, 1, T0 + 20).is_empty());
    }
    let s = state(&store, "two");
    assert_eq!((s.running, s.queued(), s.granted), (0, 0, 6));
    assert!(store.limit_held.is_empty());
    assert!(store.limit_queued.is_empty());
}

#[test]
fn a_suspended_attempt_gives_its_permit_back_and_its_next_attempt_waits_for_one() {
    let (config, mut store) = under(vec![limit("one", Some(1), None)]);
    let (a, _) = greet(&mut store, &config, 1, T0);
    let (b, _) = greet(&mut store, &config, 2, T0);
    assert!(throttled(&store, b));
    let effects = step_with(
        &mut store,
        &config,
        &[append(a, 1, 1, sleep(50)), ended(a, 1, suspended(&[1]))],
    );
    assert_eq!(attempts(effects), [run_attempt(b, &greeter(), 1)]);
    assert_eq!(record(&store, a).permits, 0);
    // `a`'s sleep fires while `b` runs: a's second attempt waits behind b.
    let timer = sleep_timer(a, 1, T0 + 50);
    assert!(attempts(step_with(&mut store, &config, &[fire(timer, T0 + 60)])).is_empty());
    assert_eq!(
        status(&store, a),
        Some(Status::Throttled { epoch: Epoch(2) })
    );
    assert_eq!(
        end(&mut store, &config, b, 1, T0 + 70),
        [run_attempt(a, &greeter(), 2)]
    );
}

#[test]
fn a_failed_attempt_backs_off_without_its_permit() {
    let (config, mut store) = under(vec![limit("one", Some(1), None)]);
    let (a, _) = greet(&mut store, &config, 1, T0);
    let (b, _) = greet(&mut store, &config, 2, T0);
    let effects = step_with(&mut store, &config, &[ended(a, 1, retryable(500))]);
    assert_eq!(attempts(effects), [run_attempt(b, &greeter(), 1)]);
    let retry = Command::Retry {
        id: a,
        epoch: Epoch(1),
    };
    assert!(attempts(step_with(&mut store, &config, &[retry])).is_empty());
    assert_eq!(
        status(&store, a),
        Some(Status::Throttled { epoch: Epoch(2) })
    );
}

#[test]
fn the_token_bucket_starts_at_most_its_rate_and_asks_to_be_woken_for_the_next_token() {
    let config = alone();
    let mut store = MemoryStore::default();
    let rate = Rate {
        count: 2,
        period_ms: 1000,
        burst: 1,
    };
    step_with(
        &mut store,
        &config,
        &[set(vec![limit("slow", None, Some(rate))], T0)],
    );
    let (a, started) = greet(&mut store, &config, 1, T0);
    assert_eq!(started, [run_attempt(a, &greeter(), 1)]);
    let mut request = request(greeter(), HandlerKind::Shared, 2);
    request.at_ms = T0 + 100;
    let b = request.id;
    let effects = step_with(&mut store, &config, &[invoke(request)]);
    assert!(effects.contains(&Effect::WakeLimit {
        name: "slow".into(),
        at_ms: T0 + 500,
    }));
    assert!(throttled(&store, b));
    // Too early: still no token, asked again.
    let early = Command::DrainLimit {
        name: "slow".into(),
        at_ms: T0 + 400,
    };
    assert!(attempts(step_with(&mut store, &config, &[early])).is_empty());
    let due = Command::DrainLimit {
        name: "slow".into(),
        at_ms: T0 + 500,
    };
    assert_eq!(
        attempts(step_with(&mut store, &config, &[due])),
        [run_attempt(b, &greeter(), 1)]
    );
    // Rate-only limits do not track who runs: ending changes no budget.
    assert_eq!(state(&store, "slow").running, 0);
    assert!(store.limit_held.is_empty());
}

#[test]
fn raising_a_limit_starts_waiting_invocations_and_removing_it_starts_them_all() {
    let (config, mut store) = under(vec![limit("l", Some(1), None)]);
    let ids: Vec<InvocationId> = (0..5)
        .map(|n| greet(&mut store, &config, n, T0).0)
        .collect();
    let raised = step_with(
        &mut store,
        &config,
        &[set(vec![limit("l", Some(3), None)], T0 + 1)],
    );
    assert_eq!(
        attempts(raised),
        [
            run_attempt(ids[1], &greeter(), 1),
            run_attempt(ids[2], &greeter(), 1)
        ]
    );
    let removed = step_with(&mut store, &config, &[set(Vec::new(), T0 + 2)]);
    assert_eq!(
        attempts(removed),
        [
            run_attempt(ids[3], &greeter(), 1),
            run_attempt(ids[4], &greeter(), 1)
        ]
    );
    assert!(store.limit_states.is_empty() && store.limit_queued.is_empty());
    assert!(
        store.limit_held.is_empty(),
        "the removed limit's holders are forgotten"
    );
    // Setting the same limits again changes nothing.
    let mut again = store.clone();
    step_with(&mut again, &config, &[set(Vec::new(), T0 + 3)]);
    assert_eq!(again, store);
    // New invocations are not covered any more; the ending of a covered one is harmless.
    let (_, started) = greet(&mut store, &config, 9, T0 + 4);
    assert_eq!(started.len(), 1);
    end(&mut store, &config, ids[0], 1, T0 + 5);
    assert!(store.limit_states.is_empty());
}

#[test]
fn a_killed_waiting_invocation_gives_its_permit_back_when_it_arrives() {
    let (config, mut store) = under(vec![limit("one", Some(1), None)]);
    let (a, _) = greet(&mut store, &config, 1, T0);
    let (b, _) = greet(&mut store, &config, 2, T0);
    let (c, _) = greet(&mut store, &config, 3, T0);
    step_with(
        &mut store,
        &config,
        &[Command::Kill {
            id: b,
            at_ms: T0 + 1,
        }],
    );
    assert!(matches!(status(&store, b), Some(Status::Completed { .. })));
    // a ends: b is granted, gives it straight back, and c starts.
    assert_eq!(
        end(&mut store, &config, a, 1, T0 + 2),
        [run_attempt(c, &greeter(), 1)]
    );
    assert_eq!(state(&store, "one").running, 1);
    assert_eq!(held_by(&store, "one"), [c]);
}

#[test]
fn an_invocation_covered_by_two_limits_asks_for_them_one_after_the_other() {
    let config = alone();
    let mut store = MemoryStore::default();
    let mut only_greet = limit("b-handler", Some(5), None);
    only_greet.handler = Some("greet".into());
    step_with(
        &mut store,
        &config,
        &[set(vec![limit("a-service", Some(1), None), only_greet], T0)],
    );
    let (a, started) = greet(&mut store, &config, 1, T0);
    assert_eq!(started.len(), 1);
    assert_eq!(record(&store, a).limits, ["a-service", "b-handler"]);
    assert_eq!(record(&store, a).permits, 2);
    let (b, _) = greet(&mut store, &config, 2, T0);
    assert_eq!(record(&store, b).permits, 0);
    assert_eq!(
        end(&mut store, &config, a, 1, T0 + 1),
        [run_attempt(b, &greeter(), 1)]
    );
    assert_eq!(held_by(&store, "b-handler"), [b]);
}

#[test]
fn an_object_limit_covers_keys_by_prefix_and_runs_behind_the_lock() {
    let config = alone();
    let mut store = MemoryStore::default();
    let mut eu = limit("eu", Some(1), None);
    eu.service = "Counter".into();
    eu.key_prefix = Some("eu-".into());
    step_with(&mut store, &config, &[set(vec![eu], T0)]);
    let run = |store: &mut MemoryStore, key: &str, nonce| {
        let request = request(counter(key), HandlerKind::Exclusive, nonce);
        let id = request.id;
        (id, attempts(step_with(store, &config, &[invoke(request)])))
    };
    let (a, started) = run(&mut store, "eu-1", 1);
    assert_eq!(started.len(), 1);
    let (b, started) = run(&mut store, "eu-2", 2);
    assert!(started.is_empty() && throttled(&store, b));
    let (_, started) = run(&mut store, "us-1", 3);
    assert_eq!(started.len(), 1);
    // A second invocation of eu-1 waits for the lock, not the limit.
    let (c, _) = run(&mut store, "eu-1", 4);
    assert_eq!(status(&store, c), Some(Status::Inboxed));
    assert_eq!(end(&mut store, &config, a, 1, T0 + 1).len(), 1);
    assert!(matches!(status(&store, b), Some(Status::Invoked { .. })));
    assert!(throttled(&store, c));
}

#[test]
fn across_partitions_permits_travel_through_the_outbox_and_a_stale_grant_goes_back() {
    let mut store = MemoryStore::default();
    let (mut a_req, l) = (
        request(greeter(), HandlerKind::Shared, 1),
        limit("far", Some(1), None),
    );
    a_req.at_ms = T0;
    let a = a_req.id;
    let config = home_of(a);
    let home = holdfast_types::routing::partition_for_key(l.partition_key(), PARTITIONS);
    assert_ne!(
        home,
        a.partition(PARTITIONS),
        "the limit lives elsewhere in this test"
    );
    step_with(&mut store, &config, &[set(vec![l], T0), invoke(a_req)]);
    assert_eq!(
        outbox(&store),
        [OutboxMessage::LimitAcquire {
            limit: "far".into(),
            id: a,
            epoch: Epoch(1)
        }]
    );
    let grant = |seq, epoch| Command::ShuffleIn {
        from: home,
        seq,
        message: OutboxMessage::LimitGrant {
            limit: "far".into(),
            id: a,
            epoch: Epoch(epoch),
        },
        at_ms: T0 + 5,
    };
    assert_eq!(
        attempts(step_with(&mut store, &config, &[grant(1, 1)])),
        [run_attempt(a, &greeter(), 1)]
    );
    // A grant for another attempt (a repeat, or one given up) is returned.
    step_with(&mut store, &config, &[grant(2, 7)]);
    let release = OutboxMessage::LimitRelease {
        limit: "far".into(),
        id: a,
    };
    assert_eq!(outbox(&store).last(), Some(&release));
    // Ending gives the real permit back.
    end(&mut store, &config, a, 1, T0 + 9);
    let releases = outbox(&store).iter().filter(|m| **m == release).count();
    assert_eq!(releases, 2);
}

#[test]
fn cancelling_an_invocation_that_never_started_completes_it_and_its_permit_goes_back() {
    let (config, mut store) = under(vec![limit("one", Some(1), None)]);
    let (a, _) = greet(&mut store, &config, 1, T0);
    let (b, _) = greet(&mut store, &config, 2, T0);
    let effects = step_with(
        &mut store,
        &config,
        &[Command::Cancel {
            id: b,
            at_ms: T0 + 1,
        }],
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Respond { id, .. } if *id == b))
    );
    assert!(matches!(status(&store, b), Some(Status::Completed { .. })));
    // a ends: b's permit is granted, comes straight back, and nothing else runs.
    assert!(end(&mut store, &config, a, 1, T0 + 2).is_empty());
    let s = state(&store, "one");
    assert_eq!((s.running, s.queued(), s.granted), (0, 0, 2));
}

#[test]
fn a_limit_removed_and_created_again_does_not_count_the_old_holders() {
    let config = alone();
    let mut store = MemoryStore::default();
    let one = || set(vec![limit("one", Some(1), None)], T0);
    step_with(&mut store, &config, &[one()]);
    let (a, _) = greet(&mut store, &config, 1, T0);
    step_with(&mut store, &config, &[set(Vec::new(), T0 + 1), one()]);
    // The new limit starts with nothing out: b runs beside a, which the old limit admitted.
    let (b, started) = greet(&mut store, &config, 2, T0 + 2);
    assert_eq!(started, [run_attempt(b, &greeter(), 1)]);
    // a's permit belonged to the old limit: giving it back frees nothing of the new one.
    end(&mut store, &config, a, 1, T0 + 3);
    let (c, started) = greet(&mut store, &config, 3, T0 + 4);
    assert!(started.is_empty());
    assert_eq!(
        end(&mut store, &config, b, 1, T0 + 5),
        [run_attempt(c, &greeter(), 1)]
    );
}

#[test]
fn the_home_reports_each_change_of_its_queue_and_the_end_of_a_removed_limit() {
    let (config, mut store) = under(vec![limit("one", Some(1), None)]);
    greet(&mut store, &config, 1, T0);
    let mut request = request(greeter(), HandlerKind::Shared, 2);
    request.at_ms = T0;
    let effects = step_with(&mut store, &config, &[invoke(request)]);
    let report = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Observe(holdfast_fsm::Observation::Limit {
                running,
                queued,
                granted,
                removed,
                ..
            }) => Some((*running, *queued, *granted, *removed)),
            _ => None,
        })
    };
    assert_eq!(report(&effects), Some((1, 1, 1, false)));
    let removed = step_with(&mut store, &config, &[set(Vec::new(), T0 + 1)]);
    assert_eq!(report(&removed), Some((1, 0, 2, true)));
}
