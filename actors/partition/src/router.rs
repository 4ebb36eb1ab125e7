//! [`Router`]: delivers a request to whichever node leads the partition it is for — the local
//! actor when this node leads it, otherwise over the cluster transport — and follows the
//! partition's leadership as it moves, until the request is answered or patience runs out.
//!
//! Every request it carries is safe to deliver twice: an invocation's id is fixed before the
//! first try (a repeated `Invoke` joins the invocation), reads are reads, and shuffle deliveries
//! are deduplicated by their sequence numbers. So a request whose fate is unknown (the leader
//! died mid-call) is simply sent again to the next leader.

use crate::actor::PartitionActor;
use crate::{
    AwaitApplied, AwaitInvocation, CompleteAwakeable, Control, ControlError, ControlRequest,
    Controlled, EditState, EditStateError, GetInvocation, GetMembers, Invoke, Invoked, Lookup,
    ProposeError, ProposeInternal, ReadIndex, StandForElection,
};
use actix::Addr;
use bytes::Bytes;
use holdfast_cluster::{CallError, GroupId, Lane, Transport, forward_path};
use holdfast_protocol::Outcome;
use holdfast_types::{
    Command, InvocationId, InvocationRequest, LogIndex, NodeId, ObjectKey, PartitionId, StateEntry,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a forwarded request that waits for a handler may take (a call, an attach).
const WAIT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most redirects followed in a row without a pause (a leader hint that points elsewhere).
const MAX_HOPS: u32 = 3;

/// What a partition is asked to do, wherever its leader runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// [`Invoke`]: start or join an invocation.
    Invoke {
        /// The request with its id already fixed.
        request: Box<InvocationRequest>,
        /// Whether to wait for the result.
        wait: bool,
    },
    /// [`AwaitInvocation`]: wait for an invocation's result.
    Await(InvocationId),
    /// [`GetInvocation`]: read an invocation's status.
    Get(InvocationId),
    /// [`CompleteAwakeable`]: complete an awakeable (its id in text form).
    CompleteAwakeable {
        /// The awakeable's id, as the SDK shows it.
        id: String,
        /// Value or failure.
        outcome: Outcome,
    },
    /// [`ProposeInternal`]: commands the kernel proposes for itself (shuffle deliveries).
    Internal(Vec<Command>),
    /// [`StandForElection`]: the leader hands the partition back to its preferred replica.
    Elect,
    /// [`ReadIndex`]: the leader's committed index, confirmed by a quorum (for follower reads).
    ReadIndex,
    /// [`AwaitApplied`]: answered once this replica has applied up to the index.
    AwaitApplied(LogIndex),
    /// [`GetMembers`]: the nodes the partition's group counts, from its leader.
    Members,
    /// [`Control`]: an operator's request about an invocation.
    Control {
        /// The invocation.
        id: InvocationId,
        /// What to do with it.
        request: ControlRequest,
    },
    /// [`EditState`]: an operator replaces an object's state.
    EditState {
        /// The object.
        object: ObjectKey,
        /// Its new state.
        entries: Vec<StateEntry>,
        /// The version of the state the edit was based on; `None`: edit whatever the state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_version: Option<String>,
    },
}

impl Request {
    /// Whether the answer waits for a handler to finish (so the call may take long).
    fn waits(&self) -> bool {
        matches!(self, Request::Invoke { wait: true, .. } | Request::Await(_))
    }
}

/// The answer to a [`Request`], by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// To `Invoke`.
    Invoked(Invoked),
    /// To `Await` and `Get`.
    Lookup(Lookup),
    /// To `CompleteAwakeable`: whether the awakeable was known.
    Awakeable(bool),
    /// To `Internal`: where the batch was committed.
    Committed(LogIndex),
    /// To `Elect`: an election was started.
    Electing,
    /// To `ReadIndex`: everything up to it was committed when the read began.
    ReadIndex(LogIndex),
    /// To `AwaitApplied`: the replica has applied that far.
    Applied,
    /// To `Members`: the nodes the group counts (voters and learners).
    Members(Vec<NodeId>),
    /// To `Control`: carried out.
    Controlled(Controlled),
    /// To `Control`: refused by the invocation's state or the registry (nothing written).
    ControlRefused(ControlError),
    /// To `EditState`: the state was replaced.
    StateEdited,
    /// To `EditState`: refused because an invocation holds (or took) the object's lock, or the
    /// state no longer has the version the edit was based on.
    StateRefused(EditStateError),
}

struct Inner {
    node: u64,
    /// This node's partition actors, indexed by partition (`None`: no replica here).
    local: Vec<Option<Addr<PartitionActor>>>,
    /// Each partition's replicas, preferred first: where to look for a leader not known yet.
    /// Replaced as the cluster's members change ([`Router::place`]).
    replicas: std::sync::RwLock<Vec<Vec<u64>>>,
    /// How many partitions the cluster has.
    partitions: u32,
    /// The last node seen leading each partition (0: unknown).
    leaders: Vec<AtomicU64>,
    transport: Transport,
    /// How long to keep retrying while no leader answers.
    patience: Duration,
}

/// Delivers requests to partition leaders; clones share the leader hints.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.inner.node)
            .field("partitions", &self.inner.partitions)
            .finish()
    }
}

/// How one delivery went.
enum Delivery {
    Answered(Answer),
    /// The target does not lead; it named the node that does.
    Elsewhere(u64, ProposeError),
    /// Nobody answered for the partition: try again after a pause, maybe on another replica.
    Later(ProposeError),
    /// A final answer: the request was refused (or its outcome is unknown to the leader itself).
    Refused(ProposeError),
}

impl Router {
    /// A router for `replicas.len()` partitions, delivering locally through `local` (this node's
    /// partition actors) and to other nodes through `transport`.
    pub fn new(
        node: NodeId,
        local: &[(PartitionId, Addr<PartitionActor>)],
        replicas: Vec<Vec<u64>>,
        transport: Transport,
        patience: Duration,
    ) -> Self {
        let mut slots = vec![None; replicas.len()];
        for (partition, addr) in local {
            if let Some(slot) = slots.get_mut(partition.0 as usize) {
                *slot = Some(addr.clone());
            }
        }
        let leaders = replicas.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                node: node.0,
                local: slots,
                partitions: u32::try_from(replicas.len()).unwrap_or(u32::MAX),
                replicas: std::sync::RwLock::new(replicas),
                leaders,
                transport,
                patience,
            }),
        }
    }

    /// How many partitions the cluster has.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// Where each partition's replicas are now, preferred first (after a membership change).
    pub fn place(&self, replicas: Vec<Vec<u64>>) {
        let mut current = self
            .inner
            .replicas
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if replicas.len() == current.len() {
            *current = replicas;
        }
    }

    /// The node last seen leading `partition`, if any.
    pub fn leader_hint(&self, partition: PartitionId) -> Option<u64> {
        self.inner
            .leaders
            .get(partition.0 as usize)
            .map(|l| l.load(Ordering::Relaxed))
            .filter(|leader| *leader != 0)
    }

    /// The nodes holding replicas of `partition` now, preferred first.
    pub fn replicas_of(&self, partition: PartitionId) -> Vec<u64> {
        self.inner
            .replicas
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(partition.0 as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Delivers `request` to the leader of `partition` and returns its answer, following leader
    /// changes with a doubling pause until the router's patience runs out.
    pub async fn ask(
        &self,
        partition: PartitionId,
        request: Request,
    ) -> Result<Answer, ProposeError> {
        let started = Instant::now();
        let mut target = self.first_guess(partition);
        let (mut hops, mut pauses, mut rotation) = (0u32, 0u32, 0usize);
        loop {
            let delivery = if target == self.inner.node {
                self.deliver_here(partition, request.clone()).await
            } else {
                self.deliver_to(target, partition, &request).await
            };
            let error = match delivery {
                Delivery::Answered(answer) => {
                    self.remember(partition, target);
                    return Ok(answer);
                }
                Delivery::Refused(error) => return Err(error),
                Delivery::Elsewhere(leader, _) if hops < MAX_HOPS => {
                    hops += 1;
                    target = leader;
                    continue;
                }
                Delivery::Elsewhere(_, error) | Delivery::Later(error) => error,
            };
            tracing::debug!(%partition, target, %error, "no answer from the partition's leader yet");
            if started.elapsed() >= self.inner.patience {
                return Err(error);
            }
            self.remember(partition, 0);
            let pause =
                Duration::from_millis(25u64 << pauses.min(5)).min(Duration::from_millis(500));
            tokio::time::sleep(pause).await;
            pauses += 1;
            hops = 0;
            rotation += 1;
            target = self.replica(partition, rotation);
        }
    }

    /// The node believed to lead `partition`: the last one seen, else this node if it holds a
    /// replica, else the preferred replica.
    fn first_guess(&self, partition: PartitionId) -> u64 {
        let index = partition.0 as usize;
        let known = self
            .inner
            .leaders
            .get(index)
            .map_or(0, |l| l.load(Ordering::Relaxed));
        if known != 0 {
            return known;
        }
        let replicas = self.replicas_of(partition);
        if replicas.contains(&self.inner.node)
            && self.inner.local.get(index).is_some_and(Option::is_some)
        {
            return self.inner.node;
        }
        replicas.first().copied().unwrap_or(self.inner.node)
    }

    fn replica(&self, partition: PartitionId, rotation: usize) -> u64 {
        let replicas = self.replicas_of(partition);
        if replicas.is_empty() {
            self.inner.node
        } else {
            replicas[rotation % replicas.len()]
        }
    }

    fn remember(&self, partition: PartitionId, leader: u64) {
        if let Some(slot) = self.inner.leaders.get(partition.0 as usize) {
            slot.store(leader, Ordering::Relaxed);
        }
    }

    /// Delivers to this node's actor of the partition, as the node's own ingress or shuffle
    /// does and as a peer's forwarded request does.
    async fn deliver_here(&self, partition: PartitionId, request: Request) -> Delivery {
        let Some(Some(actor)) = self.inner.local.get(partition.0 as usize) else {
            return Delivery::Later(ProposeError::NotLeader {
                partition,
                leader: None,
            });
        };
        // The actor is restarting (or the node stopping): like a leader that is not there yet.
        let gone = |_: actix::MailboxError| ProposeError::ShuttingDown(partition);
        let answer = match request {
            Request::Invoke { request, wait } => actor
                .send(Invoke {
                    request: *request,
                    wait,
                })
                .await
                .map_err(gone)
                .and_then(|r| r.map(Answer::Invoked)),
            Request::Await(id) => actor
                .send(AwaitInvocation(id))
                .await
                .map_err(gone)
                .and_then(|r| r.map(Answer::Lookup)),
            Request::Get(id) => actor
                .send(GetInvocation(id))
                .await
                .map_err(gone)
                .and_then(|r| r.map(Answer::Lookup)),
            Request::CompleteAwakeable { id, outcome } => match id.parse() {
                Ok(id) => actor
                    .send(CompleteAwakeable { id, outcome })
                    .await
                    .map_err(gone)
                    .and_then(|r| r.map(Answer::Awakeable)),
                // Only a peer's garbled request gets here: its own ingress parsed the id.
                Err(_) => Ok(Answer::Awakeable(false)),
            },
            Request::Internal(commands) => actor
                .send(ProposeInternal(commands))
                .await
                .map_err(gone)
                .and_then(|r| r.map(|committed| Answer::Committed(committed.index))),
            Request::Elect => actor
                .send(StandForElection)
                .await
                .map_err(gone)
                .map(|()| Answer::Electing),
            Request::ReadIndex => actor
                .send(ReadIndex)
                .await
                .map_err(gone)
                .and_then(|r| r.map(Answer::ReadIndex)),
            Request::AwaitApplied(index) => actor
                .send(AwaitApplied(index))
                .await
                .map_err(gone)
                .and_then(|r| r.map(|()| Answer::Applied)),
            Request::Members => actor
                .send(GetMembers)
                .await
                .map_err(gone)
                .and_then(|r| r.map(Answer::Members)),
            Request::Control { id, request } => match actor.send(Control { id, request }).await {
                Ok(Ok(controlled)) => Ok(Answer::Controlled(controlled)),
                // Leadership and storage refusals are the router's to follow.
                Ok(Err(ControlError::Propose(e))) => Err(e),
                Ok(Err(refused)) => Ok(Answer::ControlRefused(refused)),
                Err(e) => Err(gone(e)),
            },
            Request::EditState {
                object,
                entries,
                expected_version,
            } => {
                let edit = EditState {
                    object,
                    entries,
                    expected_version,
                };
                match actor.send(edit).await {
                    Ok(Ok(())) => Ok(Answer::StateEdited),
                    Ok(Err(EditStateError::Propose(e))) => Err(e),
                    Ok(Err(refused)) => Ok(Answer::StateRefused(refused)),
                    Err(e) => Err(gone(e)),
                }
            }
        };
        classify(answer)
    }

    /// Forwards to node `target` and decodes its answer.
    async fn deliver_to(&self, target: u64, partition: PartitionId, request: &Request) -> Delivery {
        let unavailable = |reason: String| ProposeError::Unavailable { partition, reason };
        let body = match holdfast_types::codec::encode(request) {
            Ok(body) => body,
            Err(e) => return Delivery::Refused(unavailable(format!("cannot encode: {e}"))),
        };
        let ttl = if request.waits() {
            WAIT_TTL
        } else {
            self.inner.patience
        };
        let path = forward_path(GroupId::Partition(partition.0));
        match self
            .inner
            .transport
            .call(target, Lane::Data, &path, body, ttl)
            .await
        {
            Ok(bytes) => {
                match holdfast_types::codec::decode::<Result<Answer, ProposeError>>(&bytes) {
                    Ok(answer) => classify(answer),
                    Err(e) => Delivery::Refused(unavailable(format!(
                        "undecodable answer from node {target}: {e}"
                    ))),
                }
            }
            // Too large is the caller's problem wherever it goes.
            Err(e @ CallError::TooLarge { .. }) => Delivery::Refused(unavailable(e.to_string())),
            // Unreachable, refused, timed out, cut off: every request is safe to repeat.
            Err(e) => Delivery::Later(unavailable(e.to_string())),
        }
    }

    /// Delivers `request` to partition `partition` on node `node` only (no leader following).
    pub async fn tell(
        &self,
        node: NodeId,
        partition: PartitionId,
        request: Request,
    ) -> Result<Answer, ProposeError> {
        let delivery = if node.0 == self.inner.node {
            self.deliver_here(partition, request).await
        } else {
            self.deliver_to(node.0, partition, &request).await
        };
        match delivery {
            Delivery::Answered(answer) => Ok(answer),
            Delivery::Elsewhere(_, e) | Delivery::Later(e) | Delivery::Refused(e) => Err(e),
        }
    }

    /// Waits until this node's replicas of `partitions` have applied what their leaders had
    /// committed: a read index from each leader (skipped where this node leads: everything it
    /// acknowledged is applied), then the local replica's apply.
    pub async fn read_barrier(&self, partitions: Vec<PartitionId>) -> Result<(), ProposeError> {
        let me = NodeId(self.inner.node);
        let waits = partitions.into_iter().map(|partition| async move {
            if self
                .inner
                .leaders
                .get(partition.0 as usize)
                .is_some_and(|l| l.load(Ordering::Relaxed) == me.0)
            {
                return Ok(());
            }
            let index = match self.ask(partition, Request::ReadIndex).await? {
                Answer::ReadIndex(index) => index,
                other => {
                    return Err(ProposeError::Unavailable {
                        partition,
                        reason: format!("answered {other:?} to a read index"),
                    });
                }
            };
            self.tell(me, partition, Request::AwaitApplied(index))
                .await
                .map(|_| ())
        });
        futures::future::try_join_all(waits).await.map(|_| ())
    }

    /// Answers a request a peer forwarded to this node: delivered here only, never forwarded
    /// again (the peer follows the leader hint itself).
    pub async fn answer_forwarded(&self, partition: u32, body: Bytes) -> Vec<u8> {
        let partition = PartitionId(partition);
        let answer = match holdfast_types::codec::decode::<Request>(&body) {
            Ok(request) => match self.deliver_here(partition, request).await {
                Delivery::Answered(answer) => Ok(answer),
                Delivery::Elsewhere(_, e) | Delivery::Later(e) | Delivery::Refused(e) => Err(e),
            },
            Err(e) => Err(ProposeError::Unavailable {
                partition,
                reason: format!("undecodable request: {e}"),
            }),
        };
        holdfast_types::codec::encode(&answer).unwrap_or_default()
    }
}

/// Sorts a partition's answer into what the router does next.
fn classify(answer: Result<Answer, ProposeError>) -> Delivery {
    match answer {
        Ok(answer) => Delivery::Answered(answer),
        Err(
            e @ ProposeError::NotLeader {
                leader: Some(leader),
                ..
            },
        ) => Delivery::Elsewhere(leader.0, e),
        // A waiting request whose leader changed: the new leader joins the same invocation.
        Err(
            e @ (ProposeError::NotLeader { .. }
            | ProposeError::ShuttingDown(_)
            | ProposeError::LostLeadership(_)),
        ) => Delivery::Later(e),
        Err(e) => Delivery::Refused(e),
    }
}
