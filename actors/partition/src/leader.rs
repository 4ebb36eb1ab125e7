//! Leadership of a partition: becoming leader, leading, stepping down.
//!
//! ```text
//!   Following ──raft says Leader (term t)──► Becoming{t} ──ensure_linearizable, then read the
//!       ▲                                        │        store once (Resumable at index X)
//!       │                                        ▼
//!       └──────raft says otherwise───────── Leading(Leader{rebuilt_at: X})
//! ```
//!
//! A [`Leader`] exists only while this node leads and has applied everything committed before
//! its term began, and it is built from the store alone: the attempts that were running restart
//! with a new epoch (`Restart`), backing-off ones wait for their durable retry timer, the shuffle
//! reloads the outbox, the timer wheel loads its window. Effects of every entry applied after
//! `rebuilt_at` go to it, whoever proposed the entry; earlier ones are already in what it read.
//! Nothing is proposed while becoming, so no entry can be applied between the barrier and the
//! read. Dropping the `Leader` stops every attempt, the shuffle and the timer wheel it owns.
//!
//! A reconciler checks every [`RECONCILE_INTERVAL`] that each invocation whose attempt should
//! be running has one, and restarts (and logs) any that does not in two passes in a row (a pass
//! reads the store off the actor's thread, so an attempt may end between its read and its check).

use crate::actor::{Lane, PartitionActor};
use crate::shuffle::{self, ShuffleActor};
use crate::timers::{self, TimerWheelActor};
use crate::{ProposeError, Request};
use actix::prelude::*;
use holdfast_fsm::state::{Invocation, Status};
use holdfast_invocation::{InvocationActor, Stop};
use holdfast_raft_store::Resumable;
use holdfast_types::{Command, Epoch, InvocationId, NodeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

/// How often the leader looks for invocations that should run and do not.
pub(crate) const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a pass that found undriven attempts looks again before restarting them.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// How long a node leads before it hands leadership back to the preferred replica.
const HANDBACK_SETTLE: Duration = Duration::from_secs(5);
/// The least time between two hand-backs of one partition.
const HANDBACK_PAUSE: Duration = Duration::from_secs(10);
/// How far behind the leader's last entry the preferred replica may be when a hand-back begins:
/// under load a follower is always a batch or two behind, and the hand-back's hold lets it catch
/// up the rest.
const HANDBACK_LAG: u64 = 256;
/// The longest a hand-back holds proposals back; after it the leader proposes again.
const HANDBACK_HOLD: Duration = Duration::from_millis(500);
/// How long a failed leadership barrier (no quorum yet) waits before it is tried again.
const BARRIER_RETRY: Duration = Duration::from_millis(100);
/// Attempts waiting for a free slot, per allowed concurrent attempt, before the rest wait in the
/// store only (the reconciler picks them up as the queue drains).
const WAITING_PER_SLOT: usize = 16;

/// A hand-back under way. A candidate whose log ends before the leader's last entry does not
/// get the leader's vote, and under load the leader appends something new in every round trip:
/// so proposals wait (for at most [`HANDBACK_HOLD`]) until the preferred replica holds the whole
/// log and nothing is in flight, and only then is it asked to stand.
#[derive(Debug)]
pub(crate) struct HandBack {
    to: NodeId,
    until: std::time::Instant,
    asked: bool,
}

impl HandBack {
    /// Whether proposals wait for it now.
    pub(crate) fn holds(&self) -> bool {
        std::time::Instant::now() < self.until
    }
}

/// Attempts waiting for a free slot, in order; bounded, so a burst of thousands of due timers
/// costs a few bytes each up to the bound and nothing beyond it (those stay `Invoked` in the
/// store, where the reconciler finds them).
pub(crate) struct Waiting {
    order: VecDeque<InvocationId>,
    epochs: HashMap<InvocationId, Epoch>,
    bound: usize,
    overflowed: bool,
}

impl Waiting {
    fn new(bound: usize) -> Self {
        Self {
            order: VecDeque::new(),
            epochs: HashMap::new(),
            bound: bound.max(1),
            overflowed: false,
        }
    }

    /// Queues attempt `epoch` of `id` (a newer epoch replaces a queued older one in place).
    pub(crate) fn push(&mut self, id: InvocationId, epoch: Epoch) {
        if let Some(queued) = self.epochs.get_mut(&id) {
            *queued = epoch;
        } else if self.order.len() >= self.bound {
            self.overflowed = true;
        } else {
            self.order.push_back(id);
            self.epochs.insert(id, epoch);
        }
    }

    /// The next attempt to start.
    pub(crate) fn pop(&mut self) -> Option<(InvocationId, Epoch)> {
        while let Some(id) = self.order.pop_front() {
            if let Some(epoch) = self.epochs.remove(&id) {
                return Some((id, epoch));
            }
        }
        None
    }

    /// Forgets attempt `epoch` of `id` if it is queued (it was fenced before it started).
    pub(crate) fn remove(&mut self, id: InvocationId, epoch: Epoch) {
        if self.epochs.get(&id) == Some(&epoch) {
            self.epochs.remove(&id);
        }
    }

    fn holds(&self, id: InvocationId, epoch: Epoch) -> bool {
        self.epochs.get(&id).is_some_and(|queued| *queued >= epoch)
    }

    /// Whether attempts were left to the store because the queue was full.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// How many attempts wait.
    pub(crate) fn len(&self) -> usize {
        self.epochs.len()
    }
}

/// Where this node stands in the partition's leadership.
pub(crate) enum Leadership {
    /// Another node leads, or nobody does: effects are dropped.
    Following,
    /// Raft made this node leader in `term`; it is catching up before it acts.
    Becoming { term: u64 },
    /// This node leads and executes effects.
    Leading(Box<Leader>),
}

impl Leadership {
    /// The term this node leads (or is becoming leader) in.
    pub(crate) fn term(&self) -> Option<u64> {
        match self {
            Leadership::Following => None,
            Leadership::Becoming { term } => Some(*term),
            Leadership::Leading(leader) => Some(leader.term),
        }
    }
}

/// Everything that exists only while this node leads the partition.
pub(crate) struct Leader {
    /// The raft term of this leadership.
    pub(crate) term: u64,
    /// The applied index the leader was rebuilt at: effects up to it are already reflected.
    pub(crate) rebuilt_at: u64,
    /// The applied index up to which this leader has received effects.
    pub(crate) executed_through: u64,
    /// The attempt running for each invocation, with its epoch.
    pub(crate) running: HashMap<InvocationId, (Epoch, Addr<InvocationActor>)>,
    /// Attempts waiting for one of the `max_concurrent_attempts` slots.
    pub(crate) waiting: Waiting,
    /// Attempts holding a slot while what they replay is read from the store.
    pub(crate) starting: HashMap<InvocationId, Epoch>,
    /// Invocations whose attempt ended and whose `AttemptEnded` is not committed yet.
    pub(crate) ending: HashSet<InvocationId>,
    /// Running invocations whose result nobody awaited when their attempt started (no caller,
    /// no lock): their output and ending go in [`crate::actor::Lane::Unawaited`] unless an
    /// ingress request waits for them by then.
    pub(crate) unawaited: HashSet<InvocationId>,
    /// Invocations with a `Restart` proposed and not committed yet.
    pub(crate) restarting: HashSet<InvocationId>,
    /// Delivers the outbox.
    pub(crate) shuffle: Addr<ShuffleActor>,
    /// Fires timers as they come due.
    pub(crate) timers: Addr<TimerWheelActor>,
    /// A reconciler pass is reading the store.
    pub(crate) reconciling: bool,
    /// Attempts the last reconciler pass found undriven: restarted only if the next pass finds
    /// them so again, since a pass's read can predate an ending committed while it ran.
    pub(crate) suspects: HashSet<(InvocationId, Epoch)>,
    /// The schedules this partition fires: what the leader proposed for them, and its next look.
    pub(crate) schedules: crate::schedules::Firing,
    /// The limits: what the leader proposed, and the pending wakes of the ones it grants.
    pub(crate) limits: crate::limits::Limiting,
}

impl Leader {
    /// The running attempt of `id`, if it is attempt `epoch`.
    pub(crate) fn attempt(&self, id: InvocationId, epoch: Epoch) -> Option<&Addr<InvocationActor>> {
        self.running
            .get(&id)
            .filter(|(running, _)| *running == epoch)
            .map(|(_, attempt)| attempt)
    }

    /// Whether the leader drives `id` at `epoch` or later (running, ending or restarting it).
    fn drives(&self, id: InvocationId, epoch: Epoch) -> bool {
        self.running.get(&id).is_some_and(|(e, _)| *e >= epoch)
            || self.starting.get(&id).is_some_and(|e| *e >= epoch)
            || self.waiting.holds(id, epoch)
            || self.ending.contains(&id)
            || self.restarting.contains(&id)
    }
}

/// What a new leader proposes for the invocations it found active in the store: a `Restart` of
/// every running attempt (it belonged to an earlier leader), and a `Retry` of every backoff that
/// has no retry timer (written before retries were timers). Backoffs with a timer wait for it.
pub(crate) fn resume_commands(active: &[(InvocationId, Invocation)]) -> Vec<Command> {
    active
        .iter()
        .filter_map(|(id, record)| match record.status {
            Status::Invoked { epoch } => Some(Command::Restart { id: *id, epoch }),
            Status::BackingOff {
                epoch,
                retry_at_ms: None,
                ..
            } => Some(Command::Retry { id: *id, epoch }),
            _ => None,
        })
        .collect()
}

/// The invocations the store says are running whose attempt the leader does not drive.
pub(crate) fn stranded(
    active: &[(InvocationId, Invocation)],
    drives: impl Fn(InvocationId, Epoch) -> bool,
) -> Vec<(InvocationId, Epoch)> {
    active
        .iter()
        .filter_map(|(id, record)| match record.status {
            Status::Invoked { epoch } if !drives(*id, epoch) => Some((*id, epoch)),
            _ => None,
        })
        .collect()
}

impl Drop for Leader {
    fn drop(&mut self) {
        for (_, (_, attempt)) in self.running.drain() {
            attempt.do_send(Stop);
        }
        self.shuffle.do_send(shuffle::Halt);
        self.timers.do_send(timers::Halt);
    }
}

/// The store as read by a new leader or the reconciler, for `term`.
struct Read {
    term: u64,
    resumable: Result<Resumable, String>,
}

impl Message for Read {
    type Result = ();
}

impl PartitionActor {
    /// Raft made this node leader in `term`: wait until everything committed before the term is
    /// applied, then read what to resume.
    pub(crate) fn become_leader(&mut self, term: u64, ctx: &mut Context<Self>) {
        self.leadership = Leadership::Becoming { term };
        let Some(group) = &self.group else { return };
        let raft = group.raft.clone();
        let state = group.state.clone();
        let barrier = async move {
            raft.ensure_linearizable()
                .await
                .map_err(|e| format!("leadership barrier: {e}"))?;
            tokio::task::spawn_blocking(move || state.resumable(true))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        };
        ctx.spawn(barrier.into_actor(self).map(move |resumable, act, ctx| {
            if !matches!(act.leadership, Leadership::Becoming { term: t } if t == term) {
                return;
            }
            match resumable {
                Ok(resumable) => act.lead(term, resumable, ctx),
                Err(message) => {
                    tracing::warn!(partition = %act.partition(), term, %message, "not leading yet; trying again");
                    ctx.run_later(BARRIER_RETRY, move |act, ctx| {
                        if matches!(act.leadership, Leadership::Becoming { term: t } if t == term)
                        {
                            act.become_leader(term, ctx);
                        }
                    });
                }
            }
        }));
    }

    /// Builds the [`Leader`] from what the store holds at `resumable.applied`.
    fn lead(&mut self, term: u64, resumable: Resumable, ctx: &mut Context<Self>) {
        let Some(group) = &self.group else { return };
        let shuffle = ShuffleActor::new(
            self.partition(),
            ctx.address(),
            self.router.clone(),
            self.settings.max_batch_bytes,
        );
        let shuffle = shuffle.start();
        shuffle.do_send(shuffle::Reload(resumable.outbox));
        let timers =
            TimerWheelActor::new(self.partition(), ctx.address(), group.state.downgrade()).start();
        let applied = resumable.applied.0;
        let resume = resume_commands(&resumable.active);
        self.leadership = Leadership::Leading(Box::new(Leader {
            term,
            rebuilt_at: applied,
            executed_through: applied,
            running: HashMap::new(),
            waiting: Waiting::new(
                self.settings
                    .max_concurrent_attempts
                    .saturating_mul(WAITING_PER_SLOT),
            ),
            starting: HashMap::new(),
            ending: HashSet::new(),
            unawaited: HashSet::new(),
            restarting: HashSet::new(),
            shuffle,
            timers,
            reconciling: false,
            suspects: HashSet::new(),
            schedules: crate::schedules::Firing::default(),
            limits: crate::limits::Limiting::default(),
        }));
        let restarted = resume.len();
        for command in resume {
            match command {
                Command::Restart { id, epoch } => self.restart(id, epoch, ctx),
                other => self.submit(vec![other], ctx),
            }
        }
        self.leading_since = Some(std::time::Instant::now());
        tracing::info!(partition = %self.partition(), term, applied, restarted, "leading");
        self.look_at_schedules(ctx);
        self.look_at_limits(ctx);
        self.commit_next(ctx);
    }

    /// Proposes `Restart` of attempt `epoch` of `id`, remembering it until it is committed.
    fn restart(&mut self, id: InvocationId, epoch: Epoch, ctx: &mut Context<Self>) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        leader.restarting.insert(id);
        let committed = self.enqueue(vec![Command::Restart { id, epoch }], Lane::Internal, ctx);
        ctx.spawn(committed.into_actor(self).map(move |_, act, _| {
            if let Leadership::Leading(leader) = &mut act.leadership {
                leader.restarting.remove(&id);
            }
        }));
    }

    /// The leader's lease: raft in openraft 0.9 keeps a leader cut off from its quorum in office
    /// until it hears a higher term, so the partition checks every heartbeat how long ago a
    /// quorum last acknowledged it. Past the lease (the election timeout's upper bound: a
    /// follower stands only after that bound plus at least the lower one without a heartbeat,
    /// so the lease ends before anyone else can be elected) it stops every side effect and
    /// refuses proposals; once a quorum answers again it becomes leader anew.
    pub(crate) fn check_lease(&mut self, ctx: &mut Context<Self>) {
        let Some(group) = &self.group else { return };
        let (is_leader, term, since_ack) = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            (
                metrics.state == openraft::ServerState::Leader,
                metrics.current_term,
                metrics.millis_since_quorum_ack,
            )
        };
        let raft = &self.settings.replication.raft;
        let lease = raft.election_timeout_max;
        if !is_leader {
            self.lease_lost = false;
            return;
        }
        match since_ack {
            Some(ms) if ms > lease && !self.lease_lost => {
                tracing::warn!(partition = %self.partition(), term, since_ack_ms = ms, lease_ms = lease,
                    "no quorum acknowledged this leader within its lease; stopping attempts, timers and the shuffle");
                self.lease_lost = true;
                self.step_down();
                self.refuse_queued(&ProposeError::NotLeader {
                    partition: self.partition(),
                    leader: None,
                });
            }
            Some(ms) if ms <= raft.heartbeat_interval.saturating_mul(2) && self.lease_lost => {
                tracing::info!(partition = %self.partition(), term, "a quorum answers again; leading anew");
                self.lease_lost = false;
                self.become_leader(term, ctx);
            }
            _ => {}
        }
    }

    /// Hands leadership back to the partition's preferred replica once this node has led for a
    /// while and the preferred replica is connected and close behind: proposals wait until it
    /// holds the whole log (see [`HandBack`]), then it is asked to stand for election, which this
    /// node's vote lets it win. Keeps leaders spread after a node returns; at most once per
    /// [`HANDBACK_PAUSE`].
    pub(crate) fn hand_back(&mut self, ctx: &mut Context<Self>) {
        let preferred = self.preferred();
        if preferred == self.settings.replication.node || self.lease_lost {
            return;
        }
        // Not while the group's members are moving, nor to a replica that cannot win yet (a
        // learner): stepping down then interrupts the move, and the next leader starts it over.
        let votes = self.group.as_ref().is_some_and(|group| {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            membership.get_joint_config().len() == 1
                && membership.voter_ids().any(|id| id == preferred.0)
        });
        if self.changing_members || !votes {
            return;
        }
        let Some(since) = self.leading_since else {
            return;
        };
        let now = std::time::Instant::now();
        let settled = now.duration_since(since) >= HANDBACK_SETTLE
            && self
                .handed_back_at
                .is_none_or(|at| now.duration_since(at) >= HANDBACK_PAUSE);
        let close = self.replicas.iter().any(|(node, matched)| {
            *node == preferred
                && matched
                    .is_some_and(|m| m.0.saturating_add(HANDBACK_LAG) >= self.observed.last_log)
        });
        let reachable = self.settings.replication.transport.connected(preferred.0);
        if !(settled && close && reachable) || self.router.is_none() || self.handing_back.is_some()
        {
            return;
        }
        self.handed_back_at = Some(now);
        let partition = self.partition();
        tracing::info!(%partition, to = %preferred, "handing leadership back to the preferred replica");
        self.handing_back = Some(HandBack {
            to: preferred,
            until: now + HANDBACK_HOLD,
            asked: false,
        });
        ctx.run_later(HANDBACK_HOLD, move |act, ctx| {
            if act.handing_back.as_ref().is_some_and(|h| !h.holds()) {
                act.handing_back = None;
                tracing::info!(%partition, to = %preferred, "the preferred replica did not take over; proposing again");
                act.commit_next(ctx);
            }
        });
        self.continue_hand_back(ctx);
    }

    /// Asks the preferred replica of a hand-back under way to stand, once it holds every entry
    /// this node appended and no batch is on its way into the log.
    pub(crate) fn continue_hand_back(&mut self, ctx: &mut Context<Self>) {
        let Some(hand_back) = &self.handing_back else {
            return;
        };
        let to = hand_back.to;
        let caught_up = self.replicas.iter().any(|(node, matched)| {
            *node == to && matched.is_some_and(|m| m.0 >= self.observed.last_log)
        });
        if hand_back.asked || !hand_back.holds() || self.in_flight > 0 || !caught_up {
            return;
        }
        let Some(router) = self.router.clone() else {
            return;
        };
        if let Some(hand_back) = &mut self.handing_back {
            hand_back.asked = true;
        }
        let partition = self.partition();
        let asked = async move { router.tell(to, partition, Request::Elect).await };
        ctx.spawn(asked.into_actor(self).map(move |answer, _, _| {
            if let Err(e) = answer {
                tracing::debug!(%partition, error = %e, "the preferred replica did not stand");
            }
        }));
    }

    /// This node no longer leads (or its group stopped): drop the leader and its waiters.
    pub(crate) fn step_down(&mut self) {
        if !matches!(self.leadership, Leadership::Following) {
            tracing::info!(partition = %self.partition(), "no longer leading");
        }
        self.leadership = Leadership::Following;
        self.leading_since = None;
        self.handing_back = None;
        // Dropping the senders answers each waiting request with "the partition lost track".
        self.waiters.clear();
    }

    /// Starts a reconciler pass: reads the active invocations off the actor's thread. Also lets
    /// go of ingress waiters whose clients went away.
    pub(crate) fn reconcile(&mut self, ctx: &mut Context<Self>) {
        self.waiters.retain(|_, waiting| {
            waiting.retain(|waiter| !waiter.is_closed());
            !waiting.is_empty()
        });
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if leader.reconciling {
            return;
        }
        let Some(group) = &self.group else { return };
        leader.reconciling = true;
        let term = leader.term;
        let state = group.state.clone();
        let read = async move {
            let resumable = tokio::task::spawn_blocking(move || state.resumable(false))
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read.map_err(|e| e.to_string()));
            Read { term, resumable }
        };
        ctx.spawn(
            read.into_actor(self)
                .map(|read, act, ctx| act.reconciled_read(read, ctx)),
        );
    }

    /// Restarts every invocation the store says is running and this leader does not drive.
    fn reconciled_read(&mut self, Read { term, resumable }: Read, ctx: &mut Context<Self>) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if leader.term != term {
            return;
        }
        leader.reconciling = false;
        let resumable = match resumable {
            Ok(resumable) => resumable,
            Err(message) => {
                tracing::warn!(partition = %self.partition(), %message, "reconciler cannot read the store");
                return;
            }
        };
        // Effects of entries the read reflects may still be on their way: judge next time.
        if leader.executed_through < resumable.applied.0 {
            return;
        }
        let stranded = stranded(&resumable.active, |id, epoch| leader.drives(id, epoch));
        // Backoffs written before retries were timers have nothing to fire them: retry them
        // (again: a retry already on its way makes this one stale and ignored).
        let legacy: Vec<Command> = resume_commands(&resumable.active)
            .into_iter()
            .filter(|command| matches!(command, Command::Retry { .. }))
            .collect();
        for command in legacy {
            self.submit(vec![command], ctx);
        }
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        // After an overflow, what is not driven is what did not fit in the queue: it waits its
        // turn again, and is not a lost attempt.
        if leader.waiting.overflowed {
            leader.waiting.overflowed = false;
            for (id, epoch) in stranded {
                leader.waiting.push(id, epoch);
            }
            self.start_waiting(ctx);
            return;
        }
        let (confirmed, suspected): (Vec<_>, Vec<_>) = stranded
            .into_iter()
            .partition(|found| leader.suspects.contains(found));
        leader.suspects = suspected.into_iter().collect();
        if !leader.suspects.is_empty() {
            ctx.run_later(CONFIRM_AFTER, |act, ctx| act.reconcile(ctx));
        }
        for (id, epoch) in confirmed {
            tracing::warn!(partition = %self.partition(), invocation = %id, attempt = epoch.0,
                "reconciler: invocation is running with no attempt; restarting it");
            self.reconciled += 1;
            self.restart(id, epoch, ctx);
        }
    }
}
