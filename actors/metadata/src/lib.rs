//! The metadata actor: drives the node's replicated metadata log, in which deployments and
//! services are registered, and publishes every applied [`Registry`] on a watch channel.
//!
//! ```text
//!   admin ── ChangeRegistry(RegistryCommand) ──► MetadataActor ── Raft::client_write ──► metadata/log.redb
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
use holdfast_raft_group::{Membership, Network, Role};
use holdfast_schema::{Applied, Refusal, Registry, RegistryCommand};
use holdfast_types::{NodeId, Term};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long a registry change waits for the metadata log to elect a leader.
const ELECTION_WAIT: Duration = Duration::from_secs(5);

/// Asks for a registry change; answered after it is committed and applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<Result<Applied, Refusal>, Error>")]
pub struct ChangeRegistry(pub RegistryCommand);

/// Asks for the metadata log's role and position.
#[derive(Debug, Message)]
#[rtype(result = "MetadataStatus")]
pub struct GetStatus;

/// Stops the metadata group cleanly; later changes are refused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Why a registry change was not applied. Only [`Error::Failed`] leaves the outcome unknown.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    /// The directory holding `log.redb` and `state.redb`.
    pub dir: PathBuf,
    /// This node, the initial voters and the consensus settings.
    pub membership: Membership,
    /// Where every applied registry is published.
    pub published: watch::Sender<Arc<Registry>>,
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
            restarts: 0,
        }
    }
}

async fn start_group(settings: Settings) -> Result<Raft<MetadataConfig>, String> {
    let dir = settings.dir.clone();
    let published = settings.published.clone();
    let (log, store): (_, MetadataStore) =
        tokio::task::spawn_blocking(move || holdfast_metadata_store::open(&dir, published))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    holdfast_raft_group::start(&settings.membership, Network, log, store).await
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
        if let Some(raft) = self.raft.take() {
            actix::spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
        self.role = Role::default();
    }
}

impl StreamHandler<Observed> for MetadataActor {
    fn handle(&mut self, Observed(metrics): Observed, _ctx: &mut Context<Self>) {
        if let Err(fatal) = &metrics.running_state {
            if !self.closing {
                holdfast_raft_group::fail_stop("the metadata log", "the raft group", fatal);
            }
            return;
        }
        self.role = Role::of(&metrics);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<ChangeRegistry> for MetadataActor {
    type Result = ResponseFuture<Result<Result<Applied, Refusal>, Error>>;

    fn handle(
        &mut self,
        ChangeRegistry(command): ChangeRegistry,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
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
                    .ok_or_else(|| Error::Failed("a registry change produced no outcome".into())),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    Err(Error::NotLeader(forward.leader_id.map(NodeId)))
                }
                Err(e) => Err(Error::Failed(e.to_string())),
            }
        })
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
