//! Where this partition's replicas live as the cluster's members change.
//!
//! The registry records nodes added and removed at runtime; [`Placement`] turns them into the
//! replicas each partition should have. Every second each partition actor compares:
//! - a node that should hold a replica but runs none opens the group and waits to be added (it
//!   never initializes one: only the configured nodes do, before any change);
//! - the leader moves the group to the wanted replicas: new ones join as learners, catch up, and
//!   become voters in one joint change that also drops the replicas no longer wanted;
//! - a replica that is no longer wanted asks the leader whether the group still counts it, and
//!   once it does not, stops and deletes its copy.
//!
//! [`Placement`]: holdfast_schema::Placement

use crate::actor::PartitionActor;
use crate::leader::Leadership;
use crate::router::{Answer, Request};
use actix::prelude::*;
use holdfast_raft_group::WantedMembers;
use holdfast_types::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a new replica may take to catch up before the change is retried on a later round.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Asks a partition's leader for the nodes its group counts (voters and learners).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<NodeId>, crate::ProposeError>")]
pub struct GetMembers;

impl PartitionActor {
    /// The replicas this partition should have, preferred first, once the cluster's membership
    /// changed at runtime (`None` while the configured nodes are the members).
    pub(crate) fn wanted_replicas(&self) -> Option<Vec<u64>> {
        let registry = self.settings.registry.borrow();
        if registry.members().records().is_empty() {
            return None;
        }
        Some(
            self.settings
                .placement
                .partition_replicas(self.partition().0, &registry),
        )
    }

    /// The replica leadership returns to: the first wanted replica.
    pub(crate) fn preferred(&self) -> NodeId {
        self.wanted_replicas()
            .and_then(|wanted| wanted.first().copied())
            .map_or(self.settings.replication.preferred, NodeId)
    }

    /// Whether this node holds, or should hold, a replica of the partition: one of its first
    /// replicas, a copy already on disk, or a wanted replica.
    pub(crate) fn hosts(&self) -> bool {
        let me = self.settings.replication.node.0;
        self.settings.replication.voters.contains_key(&me)
            || self.settings.dir.join("state.redb").exists()
            || self
                .wanted_replicas()
                .is_some_and(|wanted| wanted.contains(&me))
    }

    /// One round of following the wanted placement (see the module doc).
    pub(crate) fn follow_placement(&mut self, ctx: &mut Context<Self>) {
        if self.closing() || self.changing_members {
            return;
        }
        let me = self.settings.replication.node.0;
        let wanted = self.wanted_replicas();
        if self.group.is_none() {
            if !self.opening && wanted.as_ref().is_some_and(|w| w.contains(&me)) {
                tracing::info!(partition = %self.partition(), "this node is to hold a replica; waiting for the leader to add it");
                self.open_group(ctx);
            }
            return;
        }
        let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
            return;
        };
        if matches!(self.leadership, Leadership::Leading(_)) && !self.lease_lost {
            self.change_members(wanted, ctx);
        } else if !wanted.contains(&me) && !self.observed.is_leader {
            self.release_if_dropped(ctx);
        }
    }

    /// As leader: moves the group to `wanted` if it differs.
    fn change_members(&mut self, wanted: Vec<u64>, ctx: &mut Context<Self>) {
        let Some(group) = &self.group else { return };
        let registry = self.settings.registry.borrow().clone();
        let wanted = WantedMembers {
            voters: wanted.into_iter().collect(),
            learners: BTreeSet::new(),
            addresses: self.settings.placement.nodes(&registry),
        };
        if wanted.matches(&group.raft.metrics().borrow()) {
            return;
        }
        let raft = group.raft.clone();
        let partition = self.partition();
        tracing::info!(%partition, voters = ?wanted.voters, "moving the partition's replicas");
        self.changing_members = true;
        let change =
            async move { holdfast_raft_group::change_members(&raft, &wanted, CATCH_UP).await };
        ctx.spawn(change.into_actor(self).map(move |result, act, _| {
            act.changing_members = false;
            match result {
                Ok(()) => tracing::info!(%partition, "the partition's replicas moved"),
                Err(e) => {
                    tracing::warn!(%partition, error = %e, "moving the partition's replicas; retrying")
                }
            }
        }));
    }

    /// As a replica no longer wanted: once the group's leader no longer counts this node, stops
    /// the group and deletes this node's copy.
    fn release_if_dropped(&mut self, ctx: &mut Context<Self>) {
        let Some(router) = self.router.clone() else {
            return;
        };
        let (partition, me) = (self.partition(), self.settings.replication.node);
        self.changing_members = true;
        let ask = async move { router.ask(partition, Request::Members).await };
        ctx.spawn(ask.into_actor(self).map(move |answer, act, ctx| {
            act.changing_members = false;
            match answer {
                Ok(Answer::Members(members)) if !members.contains(&me) => act.release(ctx),
                Ok(_) => {}
                Err(e) => tracing::debug!(%partition, error = %e, "cannot ask the leader for the partition's members"),
            }
        }));
    }

    /// Stops the group and deletes this node's copy of the partition.
    fn release(&mut self, ctx: &mut Context<Self>) {
        let Some(group) = self.group.take() else {
            return;
        };
        let partition = self.partition();
        tracing::info!(%partition, "the partition's replica moved off this node; deleting its copy");
        self.settings.published.send_replace(None);
        self.settings.replication.withdraw();
        self.refuse_queued(&crate::ProposeError::NotLeader {
            partition,
            leader: None,
        });
        self.step_down();
        self.observed = holdfast_raft_group::Role::default();
        self.replicas.clear();
        self.changing_members = true;
        self.released = true;
        let dir = self.settings.dir.clone();
        let log = self.settings.log.clone();
        let release = async move {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(%partition, error = %e, "raft group did not stop cleanly");
            }
            drop(group);
            // The state first: a log left behind by a crash in between is only a lagging copy
            // (a later replica here catches up from it), while state without its log is not.
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(%partition, error = %e, "cannot delete the partition's copy");
            }
            let key = holdfast_raft_store::GroupKey::partition(partition);
            if let Err(e) = log.forget(key).await {
                // The log file failed: like any failed commit, only a restart is safe.
                crate::actor::fail_stop(partition, "deleting a moved replica's log", &e);
            }
        };
        ctx.spawn(
            release
                .into_actor(self)
                .map(|(), act, _| act.changing_members = false),
        );
    }
}

impl Handler<GetMembers> for PartitionActor {
    type Result = Result<Vec<NodeId>, crate::ProposeError>;

    /// Answered by the leader only: followers may hold a stale membership.
    fn handle(&mut self, _: GetMembers, _ctx: &mut Context<Self>) -> Self::Result {
        let leading = matches!(self.leadership, Leadership::Leading(_)) && !self.lease_lost;
        match (&self.group, leading) {
            (Some(group), true) => Ok(group
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| NodeId(*id))
                .collect()),
            _ => Err(crate::ProposeError::NotLeader {
                partition: self.partition(),
                leader: self.observed.other_leader(),
            }),
        }
    }
}
