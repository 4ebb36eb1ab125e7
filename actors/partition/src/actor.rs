//! [`PartitionActor`]: drives one partition's raft group and batches proposals into group commits.

use crate::leader::{Leadership, RECONCILE_INTERVAL};
use crate::metrics::HandlerMetrics;
use crate::{
    Committed, GetStatus, Histogram, PartitionStatus, Propose, ProposeError, ProposeInternal,
    ProposeMany, Shutdown,
};
use actix::prelude::*;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, ready};
use holdfast_endpoint::EndpointClient;
use holdfast_invocation::Timeouts;
use holdfast_protocol::Outcome;
use holdfast_raft_group::{Replication, Role};
use holdfast_raft_store::{AppliedBatch, Batch, StateMachine, TypeConfig, WeakStateMachine};
use holdfast_schema::Registry;
use holdfast_types::{Command, InvocationId, LogIndex, NodeId, PartitionId, Term};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Most applied batches whose effects wait for the actor; applying waits beyond it.
const EFFECTS_CAPACITY: usize = 256;
/// How long a clean stop waits for each of its checkpoint and the log purge that follows.
const STOP_PURGE_WITHIN: Duration = Duration::from_secs(2);

/// Everything a partition actor needs to (re)start its raft group.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which partition this actor drives.
    pub partition: PartitionId,
    /// The directory holding this partition's `state.redb`.
    pub dir: PathBuf,
    /// The node's raft-log file, which holds this partition's log (as its group).
    pub log: holdfast_raft_store::SharedLog,
    /// Page cache of this partition's `state.redb` (`[storage] state_cache_bytes`).
    pub state_cache_bytes: usize,
    /// How the group is replicated: this node, its voters, consensus settings and transport.
    pub replication: Replication,
    /// Most commands in one group commit.
    pub max_batch_commands: usize,
    /// Most (approximate) encoded bytes in one group commit.
    pub max_batch_bytes: usize,
    /// Most client proposals waiting for a batch; beyond it, or beyond four batches' worth of
    /// bytes, they are refused as overload (the kernel's own proposals have a lane of their own
    /// and are never refused).
    pub max_queued: usize,
    /// How long a batch may take to commit before its proposers are told the outcome is unknown
    /// (a leader cut off from its quorum, or a stalled disk); the partition then goes on.
    pub proposal_deadline: Duration,
    /// The largest message of an invocation (`[invocation] max_message_bytes`): a journal entry or
    /// run result above it fails the invocation terminally; state above a quarter of it is not
    /// sent eagerly with `start` (the SDK then reads it entry by entry).
    pub max_message_bytes: usize,
    /// Attempts running at once (`[invocation] max_concurrent_attempts`); the rest wait in order.
    pub max_concurrent_attempts: usize,
    /// How often applied state is made durable in the background.
    pub flush_interval: Duration,
    /// The newest registry of deployments, to find the endpoint of an attempt.
    pub registry: watch::Receiver<Arc<Registry>>,
    /// The client attempts reach service endpoints with (one pooled connection per endpoint).
    pub endpoints: EndpointClient,
    /// The node's inactivity and abort timeouts of attempts (`[invocation]`), for handlers whose
    /// manifest declares none.
    pub timeouts: Timeouts,
    /// The state machine's settings; their retry policy is also the node's default for handlers
    /// whose manifest declares none. Must be identical on every replica (cluster configuration).
    pub fsm: holdfast_fsm::Config,
    /// Where the partition publishes a read handle to its applied state while its stores are
    /// open (SQL introspection reads through it); weak, so it never keeps a closed store open.
    pub published: Arc<watch::Sender<Option<WeakStateMachine>>>,
    /// Where spans go: the attempts' and those derived from applied commands (a disabled sink
    /// when tracing is off).
    pub spans: holdfast_otlp::SpanSink,
    /// The cluster's shape, to compute this partition's wanted replicas from the registry's
    /// members.
    pub placement: Arc<holdfast_schema::Placement>,
}

/// Batches a partition has in raft at once. With two, the next batch waits in raft while the one
/// before it is written and is appended while that one is applied, so an attempt's entries that
/// arrive meanwhile wait for a write, not for a write and an apply.
const BATCHES_IN_FLIGHT: usize = 2;
/// How long after an attempt was given something to act on clients' proposals may wait for its
/// entries, to share their batch (see [`PartitionActor::hold_clients`]): about an endpoint's
/// turn on a busy machine.
const HOLD_CLIENTS: Duration = Duration::from_millis(1);
/// Longest a batch nobody waits for may wait in the log for another commit's fsync before it
/// is committed on its own (see [`Lane::Unawaited`]).
const DEFER_FOR: Duration = Duration::from_millis(2);

/// Commands proposed together, waiting to be acknowledged; they always share one batch.
struct Queued {
    commands: Vec<Command>,
    /// Queued in [`Lane::Unawaited`].
    unawaited: bool,
    size: usize,
    reply: oneshot::Sender<Result<Committed, ProposeError>>,
    arrived: Instant,
}

/// The running raft group with the handle to its applied state.
pub(crate) struct Group {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) state: StateMachine,
}

/// Commits what is queued; sent to itself so that messages already waiting join the batch.
struct CommitQueued;

impl Message for CommitQueued {
    type Result = ();
}

impl Handler<CommitQueued> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _: CommitQueued, ctx: &mut Context<Self>) {
        self.commit_scheduled = false;
        self.commit_next(ctx);
    }
}

/// A new raft metrics snapshot, delivered from the group's metrics watch.
struct RaftObserved(RaftMetrics<u64, BasicNode>);

impl Message for RaftObserved {
    type Result = ();
}

/// The effects of entries just applied, from the state machine.
struct EffectsApplied(AppliedBatch);

impl Message for EffectsApplied {
    type Result = ();
}

/// Which queue a proposal waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Requests from clients and operators: bounded, refused as overloaded when full.
    Client,
    /// What the kernel proposes for itself (journal entries, attempt endings, restarts, timers,
    /// shuffle): committed first and never refused as overloaded; its volume is bounded by the
    /// attempts, the timer wheel and the shuffle that produce it.
    Internal,
    /// Like [`Lane::Internal`], for what nobody waits for (the output and ending of an
    /// invocation whose result no one awaits). A batch of nothing else may wait in the log, up
    /// to [`DEFER_FOR`], to share the fsync of the node's next commit: at one client, the ending
    /// of one one-way invocation then rides with the acceptance of the next.
    Unawaited,
}

/// Stops the process because this partition's storage failed (see
/// [`holdfast_raft_group::fail_stop`]).
pub(crate) fn fail_stop(partition: PartitionId, what: &str, error: &dyn std::fmt::Display) -> ! {
    holdfast_raft_group::fail_stop(&format!("partition {partition}"), what, error)
}

/// Drives one partition: starts its raft group, batches proposals, acknowledges them after commit.
pub struct PartitionActor {
    pub(crate) settings: Settings,
    pub(crate) group: Option<Group>,
    pub(crate) observed: Role,
    /// The group's voters and, while this node leads, the last entry each is known to hold.
    pub(crate) replicas: Vec<(NodeId, Option<LogIndex>)>,
    /// The way to every partition's leader (`None` until the kernel sends `UseRouter`).
    pub(crate) router: Option<crate::Router>,
    /// Following, becoming leader, or leading (with the [`crate::leader::Leader`]).
    pub(crate) leadership: Leadership,
    /// Ingress requests waiting for an invocation's result; dropped on stepping down.
    pub(crate) waiters: HashMap<InvocationId, Vec<oneshot::Sender<Outcome>>>,
    /// Client proposals waiting for a batch.
    queue: VecDeque<Queued>,
    /// Approximate bytes of the client proposals waiting.
    queued_bytes: usize,
    /// The kernel's own proposals waiting for a batch; they go first.
    internal: VecDeque<Queued>,
    /// Invocations the reconciler found running with no attempt, since start.
    pub(crate) reconciled: u64,
    /// Batches handed to raft and not yet answered (at most [`BATCHES_IN_FLIGHT`]).
    pub(crate) in_flight: usize,
    /// Of those, batches marked deferrable (see [`Lane::Unawaited`]).
    deferred: usize,
    /// A `CommitQueued` is on its way to this actor.
    commit_scheduled: bool,
    /// When this leader last gave an attempt something to act on (started it, or delivered a
    /// completion): its next entries are likely on their way.
    nudged_at: Option<Instant>,
    /// Nudges since then not yet answered by an attempt's event: while none is outstanding, no
    /// entries are on their way and clients' proposals are not held.
    awaiting: usize,
    /// Until when clients' proposals are held back to share a batch with those entries.
    held_until: Option<Instant>,
    closing: bool,
    /// Raft still calls this node leader but no quorum has answered it for longer than the
    /// lease: it acts as a follower (no attempts, timers or shuffle, proposals refused) until a
    /// quorum answers again.
    pub(crate) lease_lost: bool,
    /// When this node's current leadership began (`None` unless leading).
    pub(crate) leading_since: Option<std::time::Instant>,
    /// When leadership was last handed back to the preferred replica.
    pub(crate) handed_back_at: Option<std::time::Instant>,
    /// A hand-back to the preferred replica under way: proposals wait for it.
    pub(crate) handing_back: Option<crate::leader::HandBack>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// The group is being opened.
    pub(crate) opening: bool,
    /// A change of the group's members (or a release of this replica) is in flight.
    pub(crate) changing_members: bool,
    /// The group was stopped on purpose (its replica moved off this node): its end is no failure.
    pub(crate) released: bool,
    restarts: u32,
    flushed_applied: u64,
    proposals: u64,
    batches: u64,
    batch_size: Histogram,
    commit_latency: Histogram,
    /// Invocation metrics while leading, by service then handler.
    pub(crate) handlers: HashMap<String, HashMap<String, HandlerMetrics>>,
    pub(crate) journal_entries: u64,
    /// Ticks fired and skipped per schedule while this node led the partition.
    pub(crate) schedule_ticks: std::collections::BTreeMap<String, (u64, u64)>,
    /// Per limit this partition is home of: permits out, waiting, granted (last applied).
    pub(crate) limit_gauges: std::collections::BTreeMap<String, (u64, u64, u64)>,
}

impl PartitionActor {
    /// An actor that will open the partition in `settings.dir` once started.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            group: None,
            observed: Role::default(),
            router: None,
            replicas: Vec::new(),
            leadership: Leadership::Following,
            waiters: HashMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            internal: VecDeque::new(),
            reconciled: 0,
            in_flight: 0,
            deferred: 0,
            commit_scheduled: false,
            nudged_at: None,
            awaiting: 0,
            held_until: None,
            closing: false,
            lease_lost: false,
            leading_since: None,
            handed_back_at: None,
            handing_back: None,
            shutdown_waiters: Vec::new(),
            opening: false,
            changing_members: false,
            released: false,
            restarts: 0,
            flushed_applied: 0,
            proposals: 0,
            batches: 0,
            handlers: HashMap::new(),
            journal_entries: 0,
            schedule_ticks: std::collections::BTreeMap::new(),
            limit_gauges: std::collections::BTreeMap::new(),
            batch_size: Histogram::batch_sizes(),
            commit_latency: Histogram::latency_seconds(),
        }
    }

    pub(crate) fn partition(&self) -> PartitionId {
        self.settings.partition
    }

    /// Whether the actor is shutting down.
    pub(crate) fn closing(&self) -> bool {
        self.closing
    }

    pub(crate) fn open_group(&mut self, ctx: &mut Context<Self>) {
        self.opening = true;
        self.released = false;
        let mut settings = self.settings.clone();
        // Only the configured nodes initialize a group, and only before the membership changed:
        // later a new replica is added by the group's leader.
        if !settings.registry.borrow().members().records().is_empty() {
            settings.replication.voters.clear();
        }
        let backoff = Duration::from_millis(match self.restarts {
            0 => 0,
            n => 100u64.saturating_mul(1 << n.min(6)),
        });
        let (effects, applied) = mpsc::channel(EFFECTS_CAPACITY);
        let opening = async move {
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            start_group(&settings, effects).await
        };
        // Spawned, not awaited in the mailbox: a partition that cannot open still answers
        // status requests and refuses proposals while its supervisor retries.
        ctx.spawn(opening.into_actor(self).map(|result, act, ctx| match result {
            Ok(group) => {
                act.opening = false;
                ctx.add_stream(futures::stream::unfold(applied, |mut applied| async move {
                    let batch = applied.recv().await?;
                    Some((EffectsApplied(batch), applied))
                }));
                ctx.add_stream(holdfast_raft_group::observe(group.raft.metrics()).map(RaftObserved));
                act.settings.published.send_replace(Some(group.state.downgrade()));
                act.group = Some(group);
            }
            Err(message) => {
                tracing::error!(partition = %act.partition(), %message, "cannot start partition");
                ctx.stop();
            }
        }));
    }

    /// Sends the next batch to raft if none is in flight and this node leads the partition (and
    /// has caught up): the kernel's own proposals first, then clients'.
    pub(crate) fn commit_next(&mut self, ctx: &mut Context<Self>) {
        // A deferred batch ahead in the log would hold up what waits for an answer.
        if !self.queue.is_empty() || self.internal.iter().any(|queued| !queued.unawaited) {
            self.expedite();
        }
        let leading = matches!(self.leadership, Leadership::Leading(_));
        if self.in_flight >= BATCHES_IN_FLIGHT
            || !leading
            || (self.queue.is_empty() && self.internal.is_empty())
            || self.handing_back.as_ref().is_some_and(|h| h.holds())
        {
            return;
        }
        if self.internal.is_empty() && self.hold_clients(ctx) {
            return;
        }
        self.held_until = None;
        let Some(group) = &self.group else { return };
        let (max_commands, max_bytes) = (
            self.settings.max_batch_commands,
            self.settings.max_batch_bytes,
        );
        let mut commands = Vec::new();
        let mut waiting = Vec::new();
        let mut bytes = 0;
        let mut deferrable = true;
        for (client, queue) in [(false, &mut self.internal), (true, &mut self.queue)] {
            while let Some(next) = queue.front() {
                let full = !commands.is_empty()
                    && (commands.len() + next.commands.len() > max_commands
                        || bytes + next.size > max_bytes);
                if full {
                    break;
                }
                let Some(next) = queue.pop_front() else {
                    break;
                };
                if client {
                    self.queued_bytes = self.queued_bytes.saturating_sub(next.size);
                }
                bytes += next.size;
                deferrable &= next.unawaited;
                commands.extend(next.commands);
                waiting.push((next.reply, next.arrived));
            }
        }
        self.in_flight += 1;
        if deferrable {
            self.deferred += 1;
            ctx.run_later(DEFER_FOR, |act, _| act.expedite());
        }
        let raft = group.raft.clone();
        let size = commands.len();
        let deadline = self.settings.proposal_deadline;
        let batch = Batch {
            commands,
            deferrable,
        };
        let write = async move { tokio::time::timeout(deadline, raft.client_write(batch)).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = act.in_flight.saturating_sub(1);
            if deferrable {
                act.deferred = act.deferred.saturating_sub(1);
            }
            let partition = act.partition();
            let outcome = match result {
                Ok(Ok(response)) => {
                    act.batches += 1;
                    act.batch_size.observe(size as f64);
                    // The leader executes these effects from the applied stream; proposers read
                    // them to learn what their command did.
                    Ok(Committed {
                        index: LogIndex(response.log_id.index),
                        effects: response.data.effects,
                    })
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                    Err(ProposeError::NotLeader {
                        partition,
                        leader: forward.leader_id.map(NodeId),
                    })
                }
                Ok(Err(RaftError::Fatal(fatal))) => {
                    if act.closing || act.released {
                        Err(ProposeError::ShuttingDown(partition))
                    } else {
                        fail_stop(partition, "committing a batch", &fatal)
                    }
                }
                Ok(Err(e)) => Err(ProposeError::Storage {
                    partition,
                    message: e.to_string(),
                }),
                Err(_elapsed) => {
                    tracing::warn!(%partition, commands = size, ?deadline,
                        "a batch did not commit in time; its outcome is unknown");
                    Err(ProposeError::Unknown {
                        partition,
                        waited: deadline,
                    })
                }
            };
            for (reply, arrived) in waiting {
                if outcome.is_ok() {
                    act.proposals += 1;
                    act.commit_latency.observe(arrived.elapsed().as_secs_f64());
                }
                let _ = reply.send(outcome.clone());
            }
            act.commit_next(ctx);
            act.continue_hand_back(ctx);
            act.finish_shutdown_when_idle(ctx);
        }));
    }

    /// Whether to hold clients' proposals back a little: an attempt was just given something to
    /// act on, so its entries will likely arrive within [`HOLD_CLIENTS`], and one batch for both
    /// costs one raft entry, apply and fsync instead of two (a hot key's attempt would otherwise
    /// be committed apart from the acceptance of the request that follows it). Clients' proposals
    /// wait at most until [`HOLD_CLIENTS`] after the last nudge (a timer commits them then), and
    /// not at all once every attempt nudged since has answered.
    fn hold_clients(&mut self, ctx: &mut Context<Self>) -> bool {
        let now = Instant::now();
        if let Some(until) = self.held_until {
            return now < until;
        }
        if self.awaiting == 0 {
            return false;
        }
        let Some(until) = self
            .nudged_at
            .map(|at| at + HOLD_CLIENTS)
            .filter(|until| *until > now)
        else {
            return false;
        };
        self.held_until = Some(until);
        ctx.run_later(until - now, |act, ctx| act.commit_next(ctx));
        true
    }

    /// Has a deferred batch of this partition that still waits in the log committed now (see
    /// [`Lane::Unawaited`]); nothing to do while none is in flight.
    pub(crate) fn expedite(&mut self) {
        if self.deferred > 0 {
            self.settings.log.expedite();
        }
    }

    /// An attempt was given something to act on: its entries will likely follow.
    pub(crate) fn nudge(&mut self) {
        let now = Instant::now();
        if self.nudged_at.is_none_or(|at| at + HOLD_CLIENTS <= now) {
            self.awaiting = 0;
        }
        self.awaiting += 1;
        self.nudged_at = Some(now);
    }

    /// An attempt answered (an entry, a run's result or its end): one nudge less to wait for.
    pub(crate) fn answered(&mut self) {
        self.awaiting = self.awaiting.saturating_sub(1);
    }

    /// Queues the kernel's own `commands` without waiting for the answer. A refusal needs no
    /// handling: it means this node stopped leading (the next leader rebuilds from the store),
    /// or the outcome is unknown (the reconciler restarts what it left without an attempt).
    pub(crate) fn submit(&mut self, commands: Vec<Command>, ctx: &mut Context<Self>) {
        drop(self.enqueue(commands, Lane::Internal, ctx));
    }

    /// Queues `commands` in `lane` to be committed together; the future answers once they are
    /// (or why not).
    pub(crate) fn enqueue(
        &mut self,
        commands: Vec<Command>,
        lane: Lane,
        ctx: &mut Context<Self>,
    ) -> BoxFuture<'static, Result<Committed, ProposeError>> {
        let partition = self.partition();
        let refusal = if self.closing {
            Some(ProposeError::ShuttingDown(partition))
        } else if self.lease_lost || !self.observed.is_leader {
            // Queued only while this node leads or is becoming leader: anything else would wait
            // for a leadership that may never come (a follower cut off from the others).
            Some(ProposeError::NotLeader {
                partition,
                leader: self.observed.other_leader().filter(|_| !self.lease_lost),
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Box::pin(ready(Err(refusal)));
        }
        let size = commands.iter().map(Command::approx_size).sum();
        // The client queue is bounded in count and in bytes (one proposal always fits an empty
        // queue, however large).
        let full = self.queue.len() >= self.settings.max_queued
            || (!self.queue.is_empty()
                && self.queued_bytes + size > self.settings.max_batch_bytes.saturating_mul(4));
        if lane == Lane::Client && full {
            return Box::pin(ready(Err(ProposeError::Overloaded(self.partition()))));
        }
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            size,
            commands,
            unawaited: lane == Lane::Unawaited,
            reply,
            arrived: Instant::now(),
        };
        match lane {
            Lane::Client => {
                self.queued_bytes += size;
                self.queue.push_back(queued);
            }
            Lane::Internal | Lane::Unawaited => self.internal.push_back(queued),
        }
        // Commit once the messages already in the mailbox are queued too: an attempt's entries
        // and its ending, or a burst of requests, then share one batch and one fsync.
        if !self.commit_scheduled && self.in_flight < BATCHES_IN_FLIGHT {
            self.commit_scheduled = true;
            ctx.notify(CommitQueued);
        }
        let partition = self.partition();
        answer
            .map(move |received| {
                received.unwrap_or_else(|_| {
                    Err(ProposeError::Storage {
                        partition,
                        message: "partition stopped while the command was in flight".into(),
                    })
                })
            })
            .boxed()
    }

    /// Refuses every queued proposal with `error`; none of them was written.
    pub(crate) fn refuse_queued(&mut self, error: &ProposeError) {
        self.queued_bytes = 0;
        for queued in self.queue.drain(..).chain(self.internal.drain(..)) {
            let _ = queued.reply.send(Err(error.clone()));
        }
    }

    fn flush_state(&mut self, ctx: &mut Context<Self>) {
        let Some(group) = &self.group else { return };
        let applied = self.observed.applied;
        if applied <= self.flushed_applied {
            return;
        }
        let state = group.state.clone();
        let flush = async move { state.flush().await };
        ctx.spawn(
            flush
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(()) => act.flushed_applied = applied,
                    Err(e) => fail_stop(act.partition(), "flushing applied state", &e),
                }),
        );
    }

    fn finish_shutdown_when_idle(&mut self, ctx: &mut Context<Self>) {
        let draining = !(self.queue.is_empty() && self.internal.is_empty())
            && matches!(self.leadership, Leadership::Leading(_))
            && self.group.is_some();
        if !self.closing || self.in_flight > 0 || draining || self.shutdown_waiters.is_empty() {
            return;
        }
        self.refuse_queued(&ProposeError::ShuttingDown(self.partition()));
        let group = self.group.take();
        self.settings.published.send_replace(None);
        self.settings.replication.withdraw();
        let waiters = std::mem::take(&mut self.shutdown_waiters);
        let partition = self.partition();
        let group_id = self.settings.replication.group;
        let close = async move {
            if let Some(group) = group {
                holdfast_raft_group::checkpoint_and_purge(&group.raft, group_id, STOP_PURGE_WITHIN)
                    .await;
                if let Err(e) = group.raft.shutdown().await {
                    tracing::warn!(%partition, error = %e, "raft group did not stop cleanly");
                }
                if let Err(e) = group.state.flush().await {
                    fail_stop(partition, "the final flush of applied state", &e);
                }
            }
            for waiter in waiters {
                let _ = waiter.send(());
            }
        };
        ctx.spawn(close.into_actor(self));
    }
}

/// Opens the stores and starts (or initializes) the raft group of one partition; the effects of
/// every entry it applies go to `effects`.
async fn start_group(
    settings: &Settings,
    effects: mpsc::Sender<AppliedBatch>,
) -> Result<Group, String> {
    let dir = settings.dir.clone();
    let shared = settings.log.clone();
    let (partition, cache) = (settings.partition, settings.state_cache_bytes);
    let (log, state) = tokio::task::spawn_blocking(move || {
        holdfast_raft_store::open(&dir, &shared, partition, cache)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let state = state.with_config(holdfast_fsm::Config {
        home: Some(holdfast_fsm::Home {
            partition,
            partitions: settings.placement.partitions,
        }),
        ..settings.fsm
    });
    let applying = state.clone().with_effects(effects);
    let raft = holdfast_raft_group::start(&settings.replication, log, applying).await?;
    Ok(Group { raft, state })
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.hosts() {
            self.open_group(ctx);
        }
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.follow_placement(ctx));
        ctx.run_interval(self.settings.flush_interval, |act, ctx| {
            act.flush_state(ctx)
        });
        ctx.run_interval(RECONCILE_INTERVAL, |act, ctx| act.reconcile(ctx));
        let heartbeat = Duration::from_millis(self.settings.replication.raft.heartbeat_interval);
        ctx.run_interval(heartbeat, |act, ctx| act.check_lease(ctx));
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.hand_back(ctx));
        ctx.run_interval(crate::schedules::LOOK_EVERY, |act, ctx| {
            act.look_at_schedules(ctx);
            act.look_at_limits(ctx);
        });
    }
}

impl Supervised for PartitionActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts = self.restarts.saturating_add(1);
        tracing::warn!(partition = %self.partition(), restarts = self.restarts, "restarting partition");
        self.refuse_queued(&ProposeError::Storage {
            partition: self.partition(),
            message: "partition restarted before the command was proposed".into(),
        });
        self.settings.published.send_replace(None);
        self.settings.replication.withdraw();
        if let Some(group) = self.group.take() {
            actix::spawn(async move {
                let _ = group.raft.shutdown().await;
            });
        }
        self.observed = Role::default();
        self.opening = false;
        self.expedite();
        self.in_flight = 0;
        self.deferred = 0;
        self.commit_scheduled = false;
        self.step_down();
    }
}

impl StreamHandler<RaftObserved> for PartitionActor {
    fn handle(&mut self, RaftObserved(metrics): RaftObserved, ctx: &mut Context<Self>) {
        if let Err(fatal) = &metrics.running_state {
            if !self.closing && !self.released {
                fail_stop(self.partition(), "the raft group", fatal);
            }
            return;
        }
        self.observed = Role::of(&metrics);
        self.replicas = metrics
            .membership_config
            .membership()
            .voter_ids()
            .map(|node| {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&node).copied().flatten())
                    .map(|log| LogIndex(log.index));
                (NodeId(node), matched)
            })
            .collect();
        let term = self.observed.term;
        match (self.observed.is_leader, self.leadership.term()) {
            (true, Some(leading)) if leading == term => {}
            // Out of touch with its quorum: it waits for `check_lease` to see a quorum again.
            (true, None) if self.lease_lost => {}
            (true, earlier) => {
                tracing::info!(partition = %self.partition(), term, "elected leader; catching up");
                if earlier.is_some() {
                    self.step_down();
                }
                self.become_leader(term, ctx);
            }
            (false, Some(_)) => self.step_down(),
            (false, None) => {}
        }
        if !self.observed.is_leader {
            self.refuse_queued(&ProposeError::NotLeader {
                partition: self.partition(),
                leader: self.observed.other_leader(),
            });
        }
        self.commit_next(ctx);
        self.continue_hand_back(ctx);
        self.finish_shutdown_when_idle(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Propose> for PartitionActor {
    type Result = ResponseFuture<Result<Committed, ProposeError>>;

    fn handle(&mut self, Propose(command): Propose, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(vec![command], Lane::Client, ctx)
    }
}

impl Handler<ProposeMany> for PartitionActor {
    type Result = ResponseFuture<Result<Committed, ProposeError>>;

    fn handle(
        &mut self,
        ProposeMany(commands): ProposeMany,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.enqueue(commands, Lane::Client, ctx)
    }
}

impl Handler<ProposeInternal> for PartitionActor {
    type Result = ResponseFuture<Result<Committed, ProposeError>>;

    fn handle(
        &mut self,
        ProposeInternal(commands): ProposeInternal,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.enqueue(commands, Lane::Internal, ctx)
    }
}

impl StreamHandler<EffectsApplied> for PartitionActor {
    fn handle(&mut self, EffectsApplied(batch): EffectsApplied, ctx: &mut Context<Self>) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        leader.executed_through = leader.executed_through.max(batch.through.0);
        let rebuilt_at = leader.rebuilt_at;
        for applied in batch.entries {
            if applied.index.0 > rebuilt_at {
                self.execute(&applied.effects, ctx);
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<GetStatus> for PartitionActor {
    type Result = ResponseFuture<PartitionStatus>;

    /// Answers from the actor's own counters; the three counts that scan the store are read on a
    /// blocking thread so that a scrape never stalls the partition.
    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let mut status = PartitionStatus {
            partition: self.partition(),
            // A group still opening counts: `/health` must not report it fine before it runs.
            hosted: self.group.is_some() || self.opening,
            leader: self.observed.leader.map(NodeId),
            term: Term(self.observed.term),
            applied_index: LogIndex(self.observed.applied),
            last_log_index: LogIndex(self.observed.last_log),
            purged_index: self.observed.purged.map(LogIndex),
            proposals: self.proposals,
            batches: self.batches,
            batch_size: self.batch_size.clone(),
            commit_latency: self.commit_latency.clone(),
            pending_timers: 0,
            suspended: 0,
            inbox_depth: 0,
            journal_entries: self.journal_entries,
            schedule_ticks: self
                .schedule_ticks
                .iter()
                .map(|(name, (fired, skipped))| (name.clone(), *fired, *skipped))
                .collect(),
            limits: self
                .limit_gauges
                .iter()
                .map(|(name, (running, queued, granted))| {
                    (name.clone(), *running, *queued, *granted)
                })
                .collect(),
            reconciled: self.reconciled,
            replicas: self.replicas.clone(),
            running_attempts: match &self.leadership {
                Leadership::Leading(leader) => leader.running.len() as u64,
                _ => 0,
            },
            waiting_attempts: match &self.leadership {
                Leadership::Leading(leader) => leader.waiting.len() as u64,
                _ => 0,
            },
            handlers: self
                .handlers
                .values()
                .flat_map(|handlers| handlers.values().cloned())
                .collect(),
        };
        let state = self.group.as_ref().map(|group| group.state.clone());
        Box::pin(async move {
            let Some(state) = state else {
                return status;
            };
            let counts = tokio::task::spawn_blocking(move || {
                (
                    state.pending_timers().unwrap_or(0),
                    state.suspended_invocations().unwrap_or(0),
                    state.inbox_depth().unwrap_or(0),
                )
            })
            .await;
            if let Ok((timers, suspended, inbox)) = counts {
                status.pending_timers = timers;
                status.suspended = suspended;
                status.inbox_depth = inbox;
            }
            status
        })
    }
}

impl Handler<Shutdown> for PartitionActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.expedite();
        // Stop acting as leader at once: attempts, shuffle and timers end; queued proposals
        // (attempt endings among them) still drain before raft stops.
        if let Leadership::Leading(leader) = &mut self.leadership {
            leader.timers.do_send(crate::timers::Halt);
        }
        let (done, finished) = oneshot::channel();
        self.shutdown_waiters.push(done);
        self.finish_shutdown_when_idle(ctx);
        Box::pin(finished.map(|_| ()))
    }
}
