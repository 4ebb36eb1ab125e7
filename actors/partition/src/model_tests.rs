//! Leadership over the real state machine, without actors: random interleavings of client
//! invocations, attempt steps, commits, answers lost after commit, proposals that never commit
//! (refused or timed out), flushes of applied state and crashes (the `Leader` dropped, the store
//! back at its last flush, the log tail re-applied without effects, a new `Leader` rebuilt from the
//! store alone), driven by the leader's own rules: `resume_commands` on becoming leader, `stranded`
//! in the reconciler, effects only for entries after `rebuilt_at`.
//!
//! Whatever happens, once the model quiesces every invocation that reached the log has completed,
//! and replaying the whole log completes each exactly once.

use crate::leader::{resume_commands, stranded};
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{Invocation, Status};
use holdfast_fsm::{Config, Effect, apply};
use holdfast_protocol::message::Output;
use holdfast_protocol::{Entry, EntryIndex, Outcome, Payload};
use holdfast_types::{
    Command, Ending, Epoch, HandlerKind, InvocationId, InvocationRequest, Source, Target, Timer,
    TimerKey,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One thing that happens next.
#[derive(Debug, Clone)]
enum Step {
    /// A client proposes a new invocation.
    Invoke,
    /// The oldest proposal commits and its proposer hears so.
    Commit,
    /// The oldest proposal commits but its answer is lost (a deadline passed meanwhile).
    CommitUnanswered,
    /// The oldest proposal never commits (refused, or lost with a leader).
    Drop,
    /// The n-th running attempt (modulo their number) takes its next step.
    Advance(usize),
    /// The timer wheel fires every timer it holds.
    Fire,
    /// Applied state is made durable.
    Flush,
    /// kill -9 and restart.
    Crash,
    /// A reconciler pass.
    Reconcile,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Invoke),
        8 => Just(Step::Commit),
        1 => Just(Step::CommitUnanswered),
        1 => Just(Step::Drop),
        6 => (0usize..8).prop_map(Step::Advance),
        2 => Just(Step::Fire),
        1 => Just(Step::Flush),
        1 => Just(Step::Crash),
        1 => Just(Step::Reconcile),
    ]
}

/// A simulated handler run: writes its output, then ends; the first attempt of every third
/// invocation fails retryably instead.
#[derive(Debug, Clone)]
struct Attempt {
    epoch: Epoch,
    next_index: u32,
    wrote_output: bool,
    fails: bool,
}

/// Who waits for a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proposer {
    Client,
    /// An attempt's ending: `ending` holds the invocation until the proposal resolves.
    Ending(InvocationId),
    /// A restart: `restarting` holds the invocation until the proposal resolves.
    Restart(InvocationId),
    /// The timer wheel: a firing that does not commit puts the timer back.
    Wheel(TimerKey),
    Kernel,
}

/// The leader's in-memory state, as `crate::leader::Leader` keeps it.
#[derive(Debug, Default)]
struct LeaderModel {
    rebuilt_at: usize,
    running: BTreeMap<InvocationId, Attempt>,
    ending: BTreeSet<InvocationId>,
    restarting: BTreeSet<InvocationId>,
    timers: BTreeSet<TimerKey>,
}

impl LeaderModel {
    fn drives(&self, id: InvocationId, epoch: Epoch) -> bool {
        self.running.get(&id).is_some_and(|a| a.epoch >= epoch)
            || self.ending.contains(&id)
            || self.restarting.contains(&id)
    }
}

struct Model {
    config: Config,
    log: Vec<Command>,
    store: MemoryStore,
    flushed: (MemoryStore, usize),
    leader: LeaderModel,
    pending: VecDeque<(Command, Proposer)>,
    next_nonce: u128,
}

fn active(store: &MemoryStore) -> Vec<(InvocationId, Invocation)> {
    store
        .invocations
        .iter()
        .filter(|(_, r)| matches!(r.status, Status::Invoked { .. } | Status::BackingOff { .. }))
        .map(|(id, r)| (*id, r.clone()))
        .collect()
}

fn request(nonce: u128) -> InvocationRequest {
    let target = Target::new("Counter", "add", Some(format!("k{}", nonce % 3)));
    InvocationRequest {
        id: InvocationId::new(&target, nonce),
        target,
        kind: HandlerKind::Exclusive,
        argument: Payload::from(&b"1"[..]),
        headers: Vec::new(),
        source: Source::Ingress,
        idempotency_key: None,
        retention_ms: 3_600_000,
        response: false,
        at_ms: 1_000,
        deployment: None,
        retry: None,
        secret: nonce,
        execute_at_ms: None,
        trace: None,
    }
}

impl Model {
    fn new() -> Self {
        Self {
            config: Config::default(),
            log: Vec::new(),
            store: MemoryStore::default(),
            flushed: (MemoryStore::default(), 0),
            leader: LeaderModel::default(),
            pending: VecDeque::new(),
            next_nonce: 1,
        }
    }

    fn propose(&mut self, command: Command, proposer: Proposer) {
        match proposer {
            Proposer::Ending(id) => {
                self.leader.ending.insert(id);
            }
            Proposer::Restart(id) => {
                self.leader.restarting.insert(id);
            }
            Proposer::Client | Proposer::Kernel | Proposer::Wheel(_) => {}
        }
        self.pending.push_back((command, proposer));
    }

    fn resolved(&mut self, proposer: Proposer, committed: bool) {
        match proposer {
            Proposer::Wheel(timer) if !committed => {
                self.leader.timers.insert(timer);
            }
            Proposer::Ending(id) => {
                self.leader.ending.remove(&id);
            }
            Proposer::Restart(id) => {
                self.leader.restarting.remove(&id);
            }
            Proposer::Client | Proposer::Kernel | Proposer::Wheel(_) => {}
        }
    }

    /// Commits the oldest proposal: the log grows, the store applies it, the leader executes its
    /// effects (the entry is after `rebuilt_at`, being new).
    fn commit(&mut self) {
        let Some((command, proposer)) = self.pending.pop_front() else {
            return;
        };
        self.log.push(command.clone());
        let Ok(effects) = apply(&mut self.store, &self.config, &command);
        if self.log.len() > self.leader.rebuilt_at {
            self.execute(&effects);
        }
        self.resolved(proposer, true);
    }

    fn execute(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::RunAttempt { id, epoch, .. } => {
                    let record = &self.store.invocations[id];
                    self.leader.running.insert(
                        *id,
                        Attempt {
                            epoch: *epoch,
                            next_index: record.journal_len,
                            wrote_output: false,
                            fails: epoch.0 == 1 && id.nonce % 3 == 0,
                        },
                    );
                }
                Effect::Fence { id, epoch }
                    if self
                        .leader
                        .running
                        .get(id)
                        .is_some_and(|a| a.epoch == *epoch) =>
                {
                    self.leader.running.remove(id);
                }
                // Purge timers fire an hour after completion: never within the model.
                Effect::RegisterTimer { timer } if !matches!(timer.timer, Timer::Purge { .. }) => {
                    self.leader.timers.insert(*timer);
                }
                _ => {}
            }
        }
    }

    fn advance(&mut self, n: usize) {
        let ids: Vec<InvocationId> = self.leader.running.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[n % ids.len()];
        let Some(attempt) = self.leader.running.get_mut(&id) else {
            return;
        };
        let epoch = attempt.epoch;
        let ending = if attempt.fails {
            Some(Ending::Failed {
                code: 500,
                message: "first attempt fails".to_owned(),
                retryable: true,
                retry_after_ms: None,
            })
        } else if !attempt.wrote_output {
            attempt.wrote_output = true;
            let index = EntryIndex(attempt.next_index);
            attempt.next_index += 1;
            let entry = Entry::Output(Output {
                result: Outcome::Value(Payload::from(&b"done"[..])),
            });
            let append = Command::JournalAppend {
                id,
                epoch,
                index,
                entry,
                ack: false,
                callee_kind: None,
                at_ms: 2_000,
                callee_retry: None,
            };
            self.propose(append, Proposer::Kernel);
            None
        } else {
            Some(Ending::Completed)
        };
        if let Some(ending) = ending {
            self.leader.running.remove(&id);
            let ended = Command::AttemptEnded {
                id,
                epoch,
                ending,
                at_ms: 2_000,
            };
            self.propose(ended, Proposer::Ending(id));
        }
    }

    fn fire(&mut self) {
        for timer in std::mem::take(&mut self.leader.timers) {
            let fire = Command::FireTimer {
                timer,
                at_ms: timer.fire_at_ms,
            };
            self.propose(fire, Proposer::Wheel(timer));
        }
    }

    fn restart(&mut self, commands: Vec<Command>) {
        for command in commands {
            let proposer = match command {
                Command::Restart { id, .. } => Proposer::Restart(id),
                _ => Proposer::Kernel,
            };
            self.propose(command, proposer);
        }
    }

    /// kill -9: everything in memory is gone; the store is what was flushed, and the log tail
    /// is re-applied (its effects dropped) before a new leader reads the store.
    fn crash(&mut self) {
        self.pending.clear();
        self.store = self.flushed.0.clone();
        for command in &self.log[self.flushed.1..] {
            let Ok(_) = apply(&mut self.store, &self.config, command);
        }
        self.leader = LeaderModel {
            rebuilt_at: self.log.len(),
            timers: self
                .store
                .timers
                .iter()
                .filter(|t| !matches!(t.timer, Timer::Purge { .. }))
                .copied()
                .collect(),
            ..LeaderModel::default()
        };
        let resume = resume_commands(&active(&self.store));
        self.restart(resume);
    }

    fn reconcile(&mut self) {
        let found = stranded(&active(&self.store), |id, epoch| {
            self.leader.drives(id, epoch)
        });
        let restarts = found
            .into_iter()
            .map(|(id, epoch)| Command::Restart { id, epoch })
            .collect();
        self.restart(restarts);
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::Invoke => {
                let nonce = self.next_nonce;
                self.next_nonce += 1;
                self.propose(Command::Invoke(Box::new(request(nonce))), Proposer::Client);
            }
            Step::Commit | Step::CommitUnanswered => self.commit(),
            Step::Drop => {
                if let Some((_, proposer)) = self.pending.pop_front() {
                    self.resolved(proposer, false);
                }
            }
            Step::Advance(n) => self.advance(*n),
            Step::Fire => self.fire(),
            Step::Flush => self.flushed = (self.store.clone(), self.log.len()),
            Step::Crash => self.crash(),
            Step::Reconcile => self.reconcile(),
        }
    }

    /// Runs without faults until nothing is left to do.
    fn quiesce(&mut self) {
        for _ in 0..10_000 {
            while !self.pending.is_empty() {
                self.commit();
            }
            if !self.leader.running.is_empty() {
                self.advance(0);
                continue;
            }
            if !self.leader.timers.is_empty() {
                self.fire();
                continue;
            }
            self.reconcile();
            if self.pending.is_empty() {
                return;
            }
        }
        panic!("the model did not quiesce");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_invocation_in_the_log_completes_exactly_once(
        steps in prop::collection::vec(step_strategy(), 1..200)
    ) {
        let mut model = Model::new();
        for step in &steps {
            model.run(step);
        }
        model.quiesce();
        let invoked: BTreeSet<InvocationId> = model
            .log
            .iter()
            .filter_map(|c| match c {
                Command::Invoke(request) => Some(request.id),
                _ => None,
            })
            .collect();
        for id in &invoked {
            let status = &model.store.invocations[id].status;
            prop_assert!(matches!(status, Status::Completed { .. }), "{id} is {status:?}");
        }
        // Replaying the log from nothing completes each exactly once and reaches the same state.
        let mut replayed = MemoryStore::default();
        let mut completions: BTreeMap<InvocationId, usize> = BTreeMap::new();
        for command in &model.log {
            let Ok(effects) = apply(&mut replayed, &model.config, command);
            for effect in effects {
                if let Effect::Respond { id, .. } = effect {
                    *completions.entry(id).or_default() += 1;
                }
            }
        }
        for id in &invoked {
            prop_assert_eq!(completions.get(id).copied(), Some(1), "{}", id);
        }
        prop_assert_eq!(replayed, model.store.clone());
    }
}

#[test]
fn a_new_leader_resumes_every_lifecycle_state_as_the_store_says() {
    let mut store = MemoryStore::default();
    let config = Config::default();
    let run = |store: &mut MemoryStore, command: Command| {
        let Ok(effects) = apply(store, &config, &command);
        effects
    };
    let invoke = |nonce: u128| Command::Invoke(Box::new(request(nonce)));
    let id = |nonce: u128| request(nonce).id;
    // 3 → k0 running (epoch 1).
    run(&mut store, invoke(3));
    // 6 → k0 inboxed behind 3.
    run(&mut store, invoke(6));
    // 1 → k1 backing off with a timer.
    run(&mut store, invoke(1));
    run(
        &mut store,
        Command::AttemptEnded {
            id: id(1),
            epoch: Epoch(1),
            ending: Ending::Failed {
                code: 500,
                message: "x".to_owned(),
                retryable: true,
                retry_after_ms: None,
            },
            at_ms: 1_000,
        },
    );
    // 2 → k2 completed: output written, attempt ended.
    run(&mut store, invoke(2));
    run(
        &mut store,
        Command::JournalAppend {
            id: id(2),
            epoch: Epoch(1),
            index: EntryIndex(1),
            entry: Entry::Output(Output {
                result: Outcome::Void,
            }),
            ack: false,
            callee_kind: None,
            at_ms: 1_000,
            callee_retry: None,
        },
    );
    run(
        &mut store,
        Command::AttemptEnded {
            id: id(2),
            epoch: Epoch(1),
            ending: Ending::Completed,
            at_ms: 1_000,
        },
    );
    // 5 → k2 paused.
    run(&mut store, invoke(5));
    run(&mut store, Command::Pause { id: id(5) });
    // A backoff written before retries were timers.
    let mut legacy = request(7);
    legacy.target = Target::new("Counter", "add", Some("legacy".to_owned()));
    legacy.id = InvocationId::new(&legacy.target, 7);
    let legacy_id = legacy.id;
    run(&mut store, Command::Invoke(Box::new(legacy)));
    if let Some(record) = store.invocations.get_mut(&legacy_id) {
        record.status = Status::BackingOff {
            epoch: Epoch(1),
            attempts: 1,
            retry_at_ms: None,
        };
    }

    let commands = resume_commands(&active(&store));
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands.contains(&Command::Restart {
        id: id(3),
        epoch: Epoch(1)
    }));
    assert!(commands.contains(&Command::Retry {
        id: legacy_id,
        epoch: Epoch(1)
    }));
    // The reconciler finds the running one only while no attempt of it is driven.
    let active = active(&store);
    assert_eq!(stranded(&active, |_, _| false), vec![(id(3), Epoch(1))]);
    assert_eq!(stranded(&active, |i, _| i == id(3)), vec![]);
}
