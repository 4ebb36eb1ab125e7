//! Properties over random command sequences: replay is deterministic, commands of stale
//! attempts never change state, and every timer fires at most once.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_fsm::{Config, Effect, apply};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::awakeable::{awakeable_key, token};
use holdfast_types::{
    Command, Ending, Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage,
    PartitionId, Timer, TimerKey,
};
use proptest::prelude::*;

/// How many distinct invocations the generated commands address.
const INVOCATIONS: usize = 6;

fn requests() -> Vec<InvocationRequest> {
    let mut shared = counter("a");
    shared.handler = "get".to_owned();
    let mut scheduled = request(counter("a"), HandlerKind::Exclusive, 5);
    scheduled.execute_at_ms = Some(T0 + 30);
    let mut workflow = request(
        holdfast_types::Target::new("Signup", "run", Some("k".to_owned())),
        HandlerKind::Workflow,
        0,
    );
    workflow.id = InvocationId::workflow(&workflow.target);
    workflow.secret = 77;
    vec![
        request(counter("a"), HandlerKind::Exclusive, 1),
        request(counter("a"), HandlerKind::Exclusive, 2),
        request(shared, HandlerKind::Shared, 3),
        request(greeter(), HandlerKind::Shared, 4),
        scheduled,
        workflow,
    ]
}

fn id(which: usize) -> InvocationId {
    requests()[which % INVOCATIONS].id
}

/// One step of a generated log, resolved against the state so far: a command as is, an entry
/// from the running attempt of an invocation (at its next index; nothing if it is not running),
/// or the timer wheel firing the `n`-th pending timer (nothing when none is pending).
#[derive(Debug, Clone)]
enum Step {
    Apply(Command),
    Append(usize, Entry),
    FireDue(usize),
}

impl Step {
    /// The command this step proposes against `store`, if any.
    fn command(&self, store: &MemoryStore) -> Option<Command> {
        match self {
            Step::Apply(command) => Some(command.clone()),
            Step::Append(which, entry) => {
                let rec = store.invocations.get(&id(*which))?;
                let Status::Invoked { epoch } = rec.status else {
                    return None;
                };
                Some(append(id(*which), epoch.0, rec.journal_len, entry.clone()))
            }
            Step::FireDue(n) => {
                let nth = n.checked_rem(store.timers.len())?;
                let timer = store.timers.iter().nth(nth)?;
                Some(fire(*timer, timer.fire_at_ms))
            }
        }
    }
}

fn entry_strategy() -> impl Strategy<Value = Entry> {
    prop_oneof![
        Just(set_state("n", "1")),
        Just(get_state("n")),
        Just(output("o")),
        Just(run("r")),
        Just(sleep(5)),
        Just(call(&greeter(), None)),
        Just(send(&counter("b"), None)),
        Just(send(&counter("a"), Some(7))),
        Just(awakeable()),
        Just(get_promise("p")),
        Just(peek_promise("p")),
        Just(complete_promise("p", Outcome::Void)),
    ]
}

fn ending_strategy() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::Completed),
        Just(retryable(500)),
        Just(Ending::Failed {
            code: 418,
            message: "t".to_owned(),
            retryable: false,
            retry_after_ms: None
        }),
        prop::collection::vec(0u32..5, 0..3).prop_map(|w| suspended(&w)),
    ]
}

fn timer_strategy() -> impl Strategy<Value = TimerKey> {
    let which = 0usize..INVOCATIONS;
    (0u64..3, which, 0u32..5, 0u8..3).prop_map(|(at, w, index, kind)| {
        let id = id(w);
        let timer = match kind {
            0 => Timer::Sleep {
                id,
                index: EntryIndex(index),
            },
            1 => Timer::Start { id },
            _ => Timer::Purge { id },
        };
        TimerKey::new(T0 + at * 5, timer)
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => command_strategy().prop_map(Step::Apply),
        4 => (0usize..INVOCATIONS, entry_strategy()).prop_map(|(w, entry)| Step::Append(w, entry)),
        2 => any::<usize>().prop_map(Step::FireDue),
        1 => (timer_strategy(), 0u64..100)
            .prop_map(|(timer, at_ms)| Step::Apply(fire(timer, T0 + at_ms))),
    ]
}

fn command_strategy() -> impl Strategy<Value = Command> {
    let which = 0usize..INVOCATIONS;
    let epoch = (1u32..4).prop_map(Epoch);
    let index = (0u32..5).prop_map(EntryIndex);
    prop_oneof![
        4 => which.clone().prop_map(|w| invoke(requests()[w].clone())),
        6 => (which.clone(), epoch.clone(), index.clone(), entry_strategy(), any::<bool>()).prop_map(
            |(w, epoch, index, entry, ack)| Command::JournalAppend {
                id: id(w), epoch, index, entry, ack, callee_kind: None, at_ms: T0, callee_retry: None,
            }
        ),
        3 => (which.clone(), epoch.clone(), ending_strategy())
            .prop_map(|(w, epoch, ending)| Command::AttemptEnded { id: id(w), epoch, ending, at_ms: T0 }),
        2 => (which.clone(), index.clone())
            .prop_map(|(w, index)| Command::Completion { id: id(w), index, outcome: Outcome::Void }),
        2 => (which.clone(), epoch.clone()).prop_map(|(w, epoch)| Command::Retry { id: id(w), epoch }),
        1 => (which.clone(), epoch.clone(), index.clone()).prop_map(|(w, epoch, index)| {
            Command::RunCompleted { id: id(w), epoch, index, outcome: Outcome::Void, ack: true }
        }),
        1 => (0u32..3, 0u64..4, which.clone()).prop_map(|(from, seq, w)| Command::ShuffleIn {
            from: PartitionId(from),
            seq,
            message: OutboxMessage::Completion { id: id(w), index: EntryIndex(1), outcome: Outcome::Void },
            at_ms: T0,
        }),
        1 => (0u64..4).prop_map(|up_to| Command::OutboxDelivered { up_to }),
        1 => which.clone().prop_map(|w| Command::Cancel { id: id(w), at_ms: T0 }),
        1 => which.clone().prop_map(|w| Command::Kill { id: id(w), at_ms: T0 }),
        1 => which.clone().prop_map(|w| Command::Purge { id: id(w) }),
        1 => which.clone().prop_map(|w| Command::Resume { id: id(w) }),
        1 => which.clone().prop_map(|w| Command::Pause { id: id(w) }),
        1 => (which.clone(), index.clone()).prop_map(|(w, index)| Command::CompleteAwakeable {
            id: id(w),
            index,
            token: token(&awakeable_key(requests()[w % INVOCATIONS].secret), index),
            outcome: Outcome::Void,
        }),
        1 => (which, any::<bool>()).prop_map(|(w, repin)| Command::ResumeOn {
            id: id(w),
            deployment: repin.then(|| holdfast_types::DeploymentId::from_seed(7)),
        }),
    ]
}

fn replay(steps: &[Step]) -> (MemoryStore, Vec<Vec<Effect>>) {
    let mut store = MemoryStore::default();
    let mut effects = Vec::new();
    for step in steps {
        let Some(command) = step.command(&store) else {
            continue;
        };
        let Ok(out) = apply(&mut store, &Config::default(), &command);
        effects.push(out);
    }
    (store, effects)
}

/// Commands that claim to come from an attempt other than the running one.
fn stale_commands(store: &MemoryStore, which: usize, entry: Entry) -> Vec<Command> {
    let id = id(which);
    let running = match status(store, id) {
        Some(Status::Invoked { epoch }) => Some(epoch),
        _ => None,
    };
    let epochs: Vec<Epoch> = (0..6).map(Epoch).filter(|e| Some(*e) != running).collect();
    let len = store
        .invocations
        .get(&id)
        .map(|r| r.journal_len)
        .unwrap_or(0);
    let mut commands = Vec::new();
    for epoch in epochs {
        commands.push(Command::JournalAppend {
            id,
            epoch,
            index: EntryIndex(len),
            entry: entry.clone(),
            ack: true,
            callee_kind: None,
            at_ms: T0,
            callee_retry: None,
        });
        commands.push(Command::AttemptEnded {
            id,
            epoch,
            ending: Ending::Completed,
            at_ms: T0,
        });
        commands.push(Command::AttemptEnded {
            id,
            epoch,
            ending: retryable(500),
            at_ms: T0,
        });
        commands.push(Command::RunCompleted {
            id,
            epoch,
            index: EntryIndex(1),
            outcome: Outcome::Void,
            ack: true,
        });
    }
    commands
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Replaying the same log always yields the same state and the same effects.
    #[test]
    fn replay_is_deterministic(steps in prop::collection::vec(step_strategy(), 0..48)) {
        prop_assert_eq!(replay(&steps), replay(&steps));
    }

    /// Whatever happened before, a command from a stale attempt is fenced and changes nothing.
    #[test]
    fn stale_epoch_commands_never_change_state(
        steps in prop::collection::vec(step_strategy(), 0..48),
        which in 0usize..INVOCATIONS,
        entry in entry_strategy(),
    ) {
        let (store, _) = replay(&steps);
        for stale in stale_commands(&store, which, entry) {
            let mut after = store.clone();
            let Ok(effects) = apply(&mut after, &Config::default(), &stale);
            prop_assert_eq!(&after, &store, "{:?} changed state", stale);
            prop_assert!(
                effects.iter().all(|e| matches!(e, Effect::Fence { .. })),
                "{:?} gave {:?}", stale, effects
            );
        }
    }

    /// Exclusive invocations of one object never run at the same time: at most one holds the
    /// lock, and it is the only exclusive one not inboxed or completed.
    #[test]
    fn one_exclusive_invocation_per_object_runs_at_a_time(
        steps in prop::collection::vec(step_strategy(), 0..48),
    ) {
        let (store, _) = replay(&steps);
        let live: Vec<_> = [id(0), id(1), id(4)]
            .into_iter()
            .filter(|id| matches!(
                status(&store, *id),
                Some(Status::Invoked { .. } | Status::Suspended { .. } | Status::BackingOff { .. } | Status::Paused { .. })
            ))
            .collect();
        prop_assert!(live.len() <= 1, "{:?}", live);
        prop_assert_eq!(store.locks.get(&object("a")).copied(), live.first().copied());
    }

    /// A timer fires at most once: once applied, proposing the same `FireTimer` again changes
    /// nothing and asks for nothing, and a timer that is not pending never changes anything.
    #[test]
    fn every_timer_fires_at_most_once(steps in prop::collection::vec(step_strategy(), 0..48)) {
        let mut store = MemoryStore::default();
        for step in &steps {
            let Some(command) = step.command(&store) else {
                continue;
            };
            let pending = match &command {
                Command::FireTimer { timer, .. } => Some(store.timers.contains(timer)),
                _ => None,
            };
            let before = store.clone();
            let Ok(effects) = apply(&mut store, &Config::default(), &command);
            if pending == Some(false) {
                prop_assert_eq!(&store, &before, "{:?} of a timer not pending", command);
                prop_assert!(effects.is_empty());
            }
            if let Command::FireTimer { timer, .. } = &command {
                let mut again = store.clone();
                let Ok(effects) = apply(&mut again, &Config::default(), &command);
                prop_assert_eq!(&again, &store, "{:?} fired twice", timer);
                prop_assert!(effects.is_empty(), "{:?} fired twice: {:?}", timer, effects);
            }
        }
    }

    /// Every timer the leader is asked to register is pending in the store it was asked from.
    #[test]
    fn registered_timers_are_pending_in_the_store(steps in prop::collection::vec(step_strategy(), 0..48)) {
        let mut store = MemoryStore::default();
        for step in &steps {
            let Some(command) = step.command(&store) else {
                continue;
            };
            let Ok(effects) = apply(&mut store, &Config::default(), &command);
            for effect in effects {
                if let Effect::RegisterTimer { timer } = effect {
                    prop_assert!(store.timers.contains(&timer), "{:?} after {:?}", timer, command);
                }
            }
        }
    }
}
