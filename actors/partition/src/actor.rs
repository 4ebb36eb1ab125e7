//! [`PartitionActor`]: drives one partition's raft group and batches proposals into group commits.

use crate::metrics::HandlerMetrics;
use crate::shuffle::ShuffleActor;
use crate::timers::TimerWheelActor;
use crate::{
    Committed, GetStatus, Histogram, PartitionStatus, Propose, ProposeError, ProposeMany, Shutdown,
};
use actix::prelude::*;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, ready};
use holdfast_endpoint::EndpointClient;
use holdfast_invocation::{InvocationActor, Timeouts};
use holdfast_protocol::Outcome;
use holdfast_raft_group::{Membership, Network, Role};
use holdfast_raft_store::{Batch, StateMachine, TypeConfig, WeakStateMachine};
use holdfast_schema::Registry;
use holdfast_types::{Command, Epoch, InvocationId, LogIndex, NodeId, PartitionId, Term};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Everything a partition actor needs to (re)start its raft group.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which partition this actor drives.
    pub partition: PartitionId,
    /// The directory holding this partition's `log.redb` and `state.redb`.
    pub dir: PathBuf,
    /// This node, the initial voters and the consensus settings.
    pub membership: Membership,
    /// Most commands in one group commit.
    pub max_batch_commands: usize,
    /// Most (approximate) encoded bytes in one group commit.
    pub max_batch_bytes: usize,
    /// Most proposals waiting for a batch; beyond it proposals are refused as overload.
    pub max_queued: usize,
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
}

/// Commands proposed together, waiting to be acknowledged; they always share one batch.
struct Queued {
    commands: Vec<Command>,
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

/// Drives one partition: starts its raft group, batches proposals, acknowledges them after commit.
pub struct PartitionActor {
    pub(crate) settings: Settings,
    pub(crate) group: Option<Group>,
    pub(crate) observed: Role,
    /// Every partition's actor, indexed by partition id (empty until the kernel sends `Peers`).
    pub(crate) peers: Vec<Addr<PartitionActor>>,
    /// Delivers this partition's outbox while it leads.
    pub(crate) shuffle: Option<Addr<ShuffleActor>>,
    /// Proposes `FireTimer` as timers come due while it leads.
    pub(crate) timers: Option<Addr<TimerWheelActor>>,
    /// The attempt running for each invocation this leader started, with its epoch.
    pub(crate) running: HashMap<InvocationId, (Epoch, Addr<InvocationActor>)>,
    /// Ingress requests waiting for an invocation's result.
    pub(crate) waiters: HashMap<InvocationId, Vec<oneshot::Sender<Outcome>>>,
    queue: VecDeque<Queued>,
    in_flight: bool,
    /// A `CommitQueued` is on its way to this actor.
    commit_scheduled: bool,
    closing: bool,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    restarts: u32,
    flushed_applied: u64,
    proposals: u64,
    batches: u64,
    batch_size: Histogram,
    commit_latency: Histogram,
    /// Invocation metrics while leading, by service then handler.
    pub(crate) handlers: HashMap<String, HashMap<String, HandlerMetrics>>,
    pub(crate) journal_entries: u64,
}

impl PartitionActor {
    /// An actor that will open the partition in `settings.dir` once started.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            group: None,
            observed: Role::default(),
            peers: Vec::new(),
            shuffle: None,
            timers: None,
            running: HashMap::new(),
            waiters: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: false,
            commit_scheduled: false,
            closing: false,
            shutdown_waiters: Vec::new(),
            restarts: 0,
            flushed_applied: 0,
            proposals: 0,
            batches: 0,
            handlers: HashMap::new(),
            journal_entries: 0,
            batch_size: Histogram::batch_sizes(),
            commit_latency: Histogram::latency_seconds(),
        }
    }

    pub(crate) fn partition(&self) -> PartitionId {
        self.settings.partition
    }

    fn open_group(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let backoff = Duration::from_millis(match self.restarts {
            0 => 0,
            n => 100u64.saturating_mul(1 << n.min(6)),
        });
        let opening = async move {
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            start_group(&settings).await
        };
        // Spawned, not awaited in the mailbox: a partition that cannot open still answers
        // status requests and refuses proposals while its supervisor retries.
        ctx.spawn(opening.into_actor(self).map(|result, act, ctx| match result {
            Ok(group) => {
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

    /// Sends the next batch to raft if none is in flight and this node leads the partition.
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() || !self.observed.is_leader {
            return;
        }
        let Some(group) = &self.group else { return };
        let mut commands = Vec::new();
        let mut waiting = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.queue.front() {
            let full = !commands.is_empty()
                && (commands.len() + next.commands.len() > self.settings.max_batch_commands
                    || bytes + next.size > self.settings.max_batch_bytes);
            if full {
                break;
            }
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            bytes += next.size;
            commands.extend(next.commands);
            waiting.push((next.reply, next.arrived));
        }
        self.in_flight = true;
        let raft = group.raft.clone();
        let size = commands.len();
        let write = async move { raft.client_write(Batch(commands)).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            let outcome = match result {
                Ok(response) => {
                    act.batches += 1;
                    act.batch_size.observe(size as f64);
                    let effects: Arc<[holdfast_fsm::Effect]> = response.data.effects.into();
                    // Effects run before the proposers hear back, so a waiter registered with a
                    // proposal already sees what the proposal caused.
                    act.execute(&effects, ctx);
                    Ok(Committed {
                        index: LogIndex(response.log_id.index),
                        effects,
                    })
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(ProposeError::NotLeader {
                        partition: act.partition(),
                        leader: forward.leader_id.map(NodeId),
                    })
                }
                Err(e) => Err(ProposeError::Storage {
                    partition: act.partition(),
                    message: e.to_string(),
                }),
            };
            for (reply, arrived) in waiting {
                if outcome.is_ok() {
                    act.proposals += 1;
                    act.commit_latency.observe(arrived.elapsed().as_secs_f64());
                }
                let _ = reply.send(outcome.clone());
            }
            act.commit_next(ctx);
            act.finish_shutdown_when_idle(ctx);
        }));
    }

    /// Queues `commands` to be committed together without waiting for the answer: used where a
    /// refusal needs no handling because a later leader redoes the work from the applied state.
    pub(crate) fn submit(&mut self, commands: Vec<Command>, ctx: &mut Context<Self>) {
        drop(self.enqueue(commands, ctx));
    }

    /// Queues `commands` to be committed together; the future answers once they are (or why not).
    pub(crate) fn enqueue(
        &mut self,
        commands: Vec<Command>,
        ctx: &mut Context<Self>,
    ) -> BoxFuture<'static, Result<Committed, ProposeError>> {
        let refusal = if self.closing {
            Some(ProposeError::ShuttingDown(self.partition()))
        } else if let Some(leader) = self.observed.other_leader() {
            Some(ProposeError::NotLeader {
                partition: self.partition(),
                leader: Some(leader),
            })
        } else if self.queue.len() >= self.settings.max_queued {
            Some(ProposeError::Overloaded(self.partition()))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Box::pin(ready(Err(refusal)));
        }
        let (reply, answer) = oneshot::channel();
        self.queue.push_back(Queued {
            size: commands.iter().map(Command::approx_size).sum(),
            commands,
            reply,
            arrived: Instant::now(),
        });
        // Commit once the messages already in the mailbox are queued too: an attempt's entries
        // and its ending, or a burst of requests, then share one batch and one fsync.
        if !self.commit_scheduled && !self.in_flight {
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
    fn refuse_queued(&mut self, error: &ProposeError) {
        for queued in self.queue.drain(..) {
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
        ctx.spawn(flush.into_actor(self).map(move |result, act, _| match result {
            Ok(()) => act.flushed_applied = applied,
            Err(e) => tracing::warn!(partition = %act.partition(), error = %e, "flushing applied state failed"),
        }));
    }

    fn finish_shutdown_when_idle(&mut self, ctx: &mut Context<Self>) {
        let draining = !self.queue.is_empty() && self.observed.is_leader && self.group.is_some();
        if !self.closing || self.in_flight || draining || self.shutdown_waiters.is_empty() {
            return;
        }
        self.refuse_queued(&ProposeError::ShuttingDown(self.partition()));
        let group = self.group.take();
        self.settings.published.send_replace(None);
        let waiters = std::mem::take(&mut self.shutdown_waiters);
        let partition = self.partition();
        let close = async move {
            if let Some(group) = group {
                if let Err(e) = group.raft.shutdown().await {
                    tracing::warn!(%partition, error = %e, "raft group did not stop cleanly");
                }
                if let Err(e) = group.state.flush().await {
                    tracing::error!(%partition, error = %e, "final flush of applied state failed");
                }
            }
            for waiter in waiters {
                let _ = waiter.send(());
            }
        };
        ctx.spawn(close.into_actor(self));
    }
}

/// Opens the stores and starts (or initializes) the raft group of one partition.
async fn start_group(settings: &Settings) -> Result<Group, String> {
    let dir = settings.dir.clone();
    let (log, state) = tokio::task::spawn_blocking(move || holdfast_raft_store::open(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let state = state.with_config(settings.fsm);
    let raft =
        holdfast_raft_group::start(&settings.membership, Network, log, state.clone()).await?;
    Ok(Group { raft, state })
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.open_group(ctx);
        ctx.run_interval(self.settings.flush_interval, |act, ctx| {
            act.flush_state(ctx)
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
        if let Some(group) = self.group.take() {
            actix::spawn(async move {
                let _ = group.raft.shutdown().await;
            });
        }
        self.observed = Role::default();
        self.in_flight = false;
        self.commit_scheduled = false;
        self.step_down();
    }
}

impl StreamHandler<RaftObserved> for PartitionActor {
    fn handle(&mut self, RaftObserved(metrics): RaftObserved, ctx: &mut Context<Self>) {
        if let Err(fatal) = &metrics.running_state {
            if !self.closing {
                tracing::error!(partition = %self.partition(), error = %fatal, "raft group failed");
                ctx.stop();
            }
            return;
        }
        let was_leader = self.observed.is_leader;
        self.observed = Role::of(&metrics);
        if was_leader != self.observed.is_leader {
            tracing::info!(partition = %self.partition(), leader = ?metrics.current_leader,
                term = metrics.current_term, "partition leadership changed");
            if self.observed.is_leader {
                self.take_over(ctx);
            } else {
                self.step_down();
            }
        }
        if let Some(leader) = self.observed.other_leader() {
            self.refuse_queued(&ProposeError::NotLeader {
                partition: self.partition(),
                leader: Some(leader),
            });
        }
        self.commit_next(ctx);
        self.finish_shutdown_when_idle(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<Propose> for PartitionActor {
    type Result = ResponseFuture<Result<Committed, ProposeError>>;

    fn handle(&mut self, Propose(command): Propose, ctx: &mut Context<Self>) -> Self::Result {
        self.enqueue(vec![command], ctx)
    }
}

impl Handler<ProposeMany> for PartitionActor {
    type Result = ResponseFuture<Result<Committed, ProposeError>>;

    fn handle(
        &mut self,
        ProposeMany(commands): ProposeMany,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.enqueue(commands, ctx)
    }
}

impl Handler<GetStatus> for PartitionActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(PartitionStatus {
            partition: self.partition(),
            leader: self.observed.leader.map(NodeId),
            term: Term(self.observed.term),
            applied_index: LogIndex(self.observed.applied),
            last_log_index: LogIndex(self.observed.last_log),
            proposals: self.proposals,
            batches: self.batches,
            batch_size: self.batch_size.clone(),
            commit_latency: self.commit_latency.clone(),
            pending_timers: self
                .group
                .as_ref()
                .and_then(|group| group.state.pending_timers().ok())
                .unwrap_or(0),
            suspended: self
                .group
                .as_ref()
                .and_then(|group| group.state.suspended_invocations().ok())
                .unwrap_or(0),
            inbox_depth: self
                .group
                .as_ref()
                .and_then(|group| group.state.inbox_depth().ok())
                .unwrap_or(0),
            journal_entries: self.journal_entries,
            handlers: self
                .handlers
                .values()
                .flat_map(|handlers| handlers.values().cloned())
                .collect(),
        })
    }
}

impl Handler<Shutdown> for PartitionActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.stop_timer_wheel();
        let (done, finished) = oneshot::channel();
        self.shutdown_waiters.push(done);
        self.finish_shutdown_when_idle(ctx);
        Box::pin(finished.map(|_| ()))
    }
}
