//! The metadata actor: drives the node's replicated metadata log, in which deployments and
//! services are registered, and publishes every applied [`Registry`] on a watch channel.
//!
//! ```text
//!   admin ── ChangeRegistry(RegistryCommand) ──► MetadataActor ── Raft::client_write ──► raft-log.redb (group u32::MAX)
//!                                                     │                                  └► MetadataStore: Registry::apply
//!   ingress, admin, invoker ◄── watch<Arc<Registry>> ─┘ (published by the store on apply)
//! ```
//!
//! Registry changes are rare, so each is its own raft entry; the answer is what applying it did
//! (or why the registry refused it), returned only after it is committed.

use actix::prelude::*;
use futures::StreamExt;
use futures::future::{FutureExt, ready};
use holdfast_metadata_store::{MetadataConfig, MetadataStore};
use holdfast_raft_group::{Replication, Role, WantedMembers};
use holdfast_schema::{Applied, Refusal, Registry, RegistryCommand};
use holdfast_types::{NodeId, Term};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long a new member may take to catch up with the metadata log before the change is
/// retried.
const CATCH_UP: Duration = Duration::from_secs(30);

/// How long a registry change waits for the metadata log to elect a leader.
const ELECTION_WAIT: Duration = Duration::from_secs(5);

/// Asks for a registry change; answered after it is committed and applied (through the metadata
/// log's leader, wherever it runs).
#[derive(Debug, Message)]
#[rtype(result = "Result<Result<Applied, Refusal>, Error>")]
pub struct ChangeRegistry(pub RegistryCommand);

/// A registry change a peer forwarded to this node as the metadata log's leader: applied here or
/// refused, never forwarded again.
#[derive(Debug, Message)]
#[rtype(result = "ForwardedAnswer")]
pub struct ChangeRegistryHere(pub RegistryCommand);

/// The answer to a registry change forwarded between nodes (one flat enum on the wire), with the
/// log index it was committed at so the forwarding node can wait until its replica has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardedAnswer {
    /// Applied at `index`.
    Applied { applied: Applied, index: u64 },
    /// Refused by the registry (committed at `index` all the same).
    Refused { refusal: Refusal, index: u64 },
    /// Not applied by the log (or outcome unknown, for [`Error::Failed`]).
    Failed(Error),
}

impl From<Result<(Result<Applied, Refusal>, u64), Error>> for ForwardedAnswer {
    fn from(answer: Result<(Result<Applied, Refusal>, u64), Error>) -> Self {
        match answer {
            Ok((Ok(applied), index)) => ForwardedAnswer::Applied { applied, index },
            Ok((Err(refusal), index)) => ForwardedAnswer::Refused { refusal, index },
            Err(error) => ForwardedAnswer::Failed(error),
        }
    }
}

impl From<ForwardedAnswer> for Result<(Result<Applied, Refusal>, u64), Error> {
    fn from(answer: ForwardedAnswer) -> Self {
        match answer {
            ForwardedAnswer::Applied { applied, index } => Ok((Ok(applied), index)),
            ForwardedAnswer::Refused { refusal, index } => Ok((Err(refusal), index)),
            ForwardedAnswer::Failed(error) => Err(error),
        }
    }
}

/// A registry change's outcome and the log index it was committed at.
type Outcome = Result<(Result<Applied, Refusal>, u64), Error>;

/// How long a change forwarded to the metadata leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks for the metadata log's role and position.
#[derive(Debug, Message)]
#[rtype(result = "MetadataStatus")]
pub struct GetStatus;

/// Stops the metadata group cleanly; later changes are refused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Why a registry change was not applied. Only [`Error::Failed`] leaves the outcome unknown.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum Error {
    /// Another node leads the metadata log.
    #[error("the metadata log is led by node {0:?}, not by this node")]
    NotLeader(Option<NodeId>),
    /// The metadata log has no leader yet or is shutting down; retry later.
    #[error("the metadata log is not available: {0}")]
    Unavailable(String),
    /// The group failed while the change was in flight; it may or may not be committed.
    #[error("the metadata log failed while committing: {0}")]
    Failed(String),
}

/// The metadata log's role and position, for `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataStatus {
    /// The node leading the metadata log, if known.
    pub leader: Option<NodeId>,
    /// The current raft term.
    pub term: Term,
    /// Index of the last applied entry.
    pub applied_index: u64,
}

/// Where the metadata log lives and how its group starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory holding `state.redb`.
    pub dir: PathBuf,
    /// The node's raft-log file, which holds the metadata log (as its group).
    pub log: holdfast_metadata_store::SharedLog,
    /// How the group is replicated: this node, its voters, consensus settings and transport.
    pub replication: Replication,
    /// Where every applied registry is published.
    pub published: watch::Sender<Arc<Registry>>,
    /// The cluster's shape: which members vote in the metadata log and which follow it.
    pub placement: Arc<holdfast_schema::Placement>,
}

struct Observed(RaftMetrics<u64, BasicNode>);

impl Message for Observed {
    type Result = ();
}

/// Drives the metadata raft group.
pub struct MetadataActor {
    settings: Settings,
    raft: Option<Raft<MetadataConfig>>,
    role: Role,
    closing: bool,
    /// A change of the metadata log's members is in flight.
    changing_members: bool,
    restarts: u32,
}

impl MetadataActor {
    /// An actor that opens the metadata log in `settings.dir` once started.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            raft: None,
            role: Role::default(),
            closing: false,
            changing_members: false,
            restarts: 0,
        }
    }
}

async fn start_group(settings: Settings) -> Result<Raft<MetadataConfig>, String> {
    let dir = settings.dir.clone();
    let shared = settings.log.clone();
    let published = settings.published.clone();
    let (log, store): (_, MetadataStore) = tokio::task::spawn_blocking(move || {
        holdfast_metadata_store::open(&dir, &shared, published)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    holdfast_raft_group::start(&settings.replication, log, store).await
}

impl Actor for MetadataActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let backoff = Duration::from_millis(match self.restarts {
            0 => 0,
            n => 100u64.saturating_mul(1 << n.min(6)),
        });
        let opening = async move {
            tokio::time::sleep(backoff).await;
            start_group(settings).await
        };
        ctx.spawn(
            opening
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(raft) => {
                        ctx.add_stream(holdfast_raft_group::observe(raft.metrics()).map(Observed));
                        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
                            act.follow_members(ctx)
                        });
                        act.raft = Some(raft);
                    }
                    Err(message) => {
                        tracing::error!(%message, "cannot start the metadata log");
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Supervised for MetadataActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts = self.restarts.saturating_add(1);
        tracing::warn!(restarts = self.restarts, "restarting the metadata log");
        self.settings.replication.withdraw();
        if let Some(raft) = self.raft.take() {
            actix::spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
        self.role = Role::default();
    }
}

impl StreamHandler<Observed> for MetadataActor {
    fn handle(&mut self, Observed(metrics): Observed, ctx: &mut Context<Self>) {
        if let Err(fatal) = &metrics.running_state {
            if !self.closing {
                holdfast_raft_group::fail_stop("the metadata log", "the raft group", fatal);
            }
            return;
        }
        self.role = Role::of(&metrics);
        self.follow_members(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl MetadataActor {
    /// The metadata log's wanted members: the configured voters and learners until the
    /// cluster's membership changes, then the lowest-id members vote and the rest follow.
    fn wanted_members(&self) -> WantedMembers {
        let registry = self.settings.published.borrow().clone();
        let placement = &self.settings.placement;
        let addresses = placement.nodes(&registry);
        let replication = &self.settings.replication;
        let (voters, learners) = if registry.members().records().is_empty() {
            (
                replication.voters.keys().copied().collect(),
                replication.learners.keys().copied().collect(),
            )
        } else {
            let voters: BTreeSet<u64> = placement.metadata_voters(&registry).into_iter().collect();
            let learners = addresses
                .keys()
                .copied()
                .filter(|id| !voters.contains(id))
                .collect();
            (voters, learners)
        };
        WantedMembers {
            voters,
            learners,
            addresses,
        }
    }

    /// As leader, moves the metadata log to its wanted members (every member follows it, so every
    /// node has the registry); one round at a time, retried each second until it matches.
    fn follow_members(&mut self, ctx: &mut Context<Self>) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        if !self.role.is_leader || self.changing_members || self.closing {
            return;
        }
        let wanted = self.wanted_members();
        if wanted.voters.is_empty() || wanted.matches(&raft.metrics().borrow()) {
            return;
        }
        self.changing_members = true;
        let change = async move {
            if let Err(e) = holdfast_raft_group::change_members(&raft, &wanted, CATCH_UP).await {
                tracing::debug!(error = %e, "cannot change the metadata log's members yet");
            }
        };
        ctx.spawn(
            change
                .into_actor(self)
                .map(|(), act, _| act.changing_members = false),
        );
    }

    /// Applies `command` through this node's replica, which must lead the metadata log.
    fn change_here(
        &self,
        command: RegistryCommand,
    ) -> futures::future::BoxFuture<'static, Outcome> {
        if self.closing {
            return Box::pin(ready(Err(Error::Unavailable("shutting down".into()))));
        }
        if let Some(leader) = self.role.other_leader() {
            return Box::pin(ready(Err(Error::NotLeader(Some(leader)))));
        }
        let Some(raft) = self.raft.clone() else {
            return Box::pin(ready(Err(Error::Unavailable("starting".into()))));
        };
        Box::pin(async move {
            // Right after start the election may still be running: give it a moment.
            raft.wait(Some(ELECTION_WAIT))
                .metrics(|m| m.current_leader.is_some(), "a metadata leader")
                .await
                .map_err(|_| Error::Unavailable("no leader elected".into()))?;
            match raft.client_write(command).await {
                Ok(response) => response
                    .data
                    .0
                    .map(|outcome| (outcome, response.log_id.index))
                    .ok_or_else(|| Error::Failed("a registry change produced no outcome".into())),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(Error::NotLeader(forward.leader_id.map(NodeId)))
                }
                Err(e) => Err(Error::Failed(e.to_string())),
            }
        })
    }
}

/// Sends a registry change to the node leading the metadata log and returns its answer.
async fn forward(
    transport: holdfast_cluster::Transport,
    leader: NodeId,
    command: RegistryCommand,
) -> Outcome {
    let unreachable = |e: &dyn std::fmt::Display| {
        Error::Unavailable(format!(
            "the metadata leader, node {leader}, is unreachable: {e}"
        ))
    };
    let body = holdfast_types::codec::encode(&command).map_err(|e| unreachable(&e))?;
    let path = holdfast_cluster::forward_path(holdfast_cluster::GroupId::Metadata);
    let answer = transport
        .call(
            leader.0,
            holdfast_cluster::Lane::Data,
            &path,
            body,
            FORWARD_TIMEOUT,
        )
        .await
        .map_err(|e| unreachable(&e))?;
    match holdfast_types::codec::decode::<ForwardedAnswer>(&answer) {
        Ok(answer) => answer.into(),
        Err(e) => Err(unreachable(&e)),
    }
}

impl Handler<ChangeRegistry> for MetadataActor {
    type Result = ResponseFuture<Result<Result<Applied, Refusal>, Error>>;

    /// Applied here when this node leads the metadata log, otherwise forwarded to its leader;
    /// answered once this node's replica has applied the change too (read your writes).
    fn handle(
        &mut self,
        ChangeRegistry(command): ChangeRegistry,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let here = self.change_here(command.clone());
        let transport = self.settings.replication.transport.clone();
        let raft = self.raft.clone();
        Box::pin(async move {
            let (outcome, index) = match here.await {
                Err(Error::NotLeader(Some(leader))) => forward(transport, leader, command).await?,
                answer => answer?,
            };
            if let Some(raft) = raft {
                // Past the wait the answer still stands; the registry here catches up shortly.
                let _ = raft
                    .wait(Some(FORWARD_TIMEOUT))
                    .applied_index_at_least(Some(index), "the change applied on this node")
                    .await;
            }
            Ok(outcome)
        })
    }
}

impl Handler<ChangeRegistryHere> for MetadataActor {
    type Result = ResponseFuture<ForwardedAnswer>;

    fn handle(
        &mut self,
        ChangeRegistryHere(command): ChangeRegistryHere,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let here = self.change_here(command);
        Box::pin(async move { here.await.into() })
    }
}

impl Handler<GetStatus> for MetadataActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(MetadataStatus {
            leader: self.role.leader.map(NodeId),
            term: Term(self.role.term),
            applied_index: self.role.applied,
        })
    }
}

impl Handler<Shutdown> for MetadataActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.closing = true;
        self.settings.replication.withdraw();
        let raft = self.raft.take();
        let (done, finished) = oneshot::channel::<()>();
        actix::spawn(async move {
            if let Some(raft) = raft
                && let Err(e) = raft.shutdown().await
            {
                tracing::warn!(error = %e, "the metadata log did not stop cleanly");
            }
            let _ = done.send(());
        });
        Box::pin(finished.map(|_| ()))
    }
}
