//! [`Registry`]: deployments and the revision history of every service, changed only by
//! [`RegistryCommand`]s.
//!
//! ```text
//!  admin API ── check(cmd) ──► 409/404/400 before proposing
//!      └──── propose(cmd) ──► metadata log ──► apply(cmd) on every node ──► Applied | Refusal
//!  ingress  ── resolve(service, handler) ──► newest revision, its handler and deployment
//!  invoker  ── deployment(id)             ──► the deployment an in-flight invocation is pinned to
//! ```
//!
//! One file per command — `register.rs`, `remove.rs`, `modify.rs`, `schedules.rs` — states its
//! rules in detail.
//! Each first plans the change from a shared borrow (which is all [`Registry::check`] does), then
//! commits the plan, which cannot fail: a refused command leaves the registry untouched.
//!
//! # Rules
//! - A deployment is *current* at its uri until a newer registration at the same uri supersedes
//!   it; superseded deployments stay (for pinned invocations) but serve no revision any more.
//! - Registering gives each service of the manifest its next revision number and makes it the
//!   newest. An identical manifest at the same uri returns the current deployment instead, unless
//!   `force`.
//! - Conflicts (409, unless `force`): a live service changing type; a service, or a handler of a
//!   service, whose newest revision the endpoint at that uri serves and that it no longer serves;
//!   removing a deployment that serves the newest revision of a service.
//! - A service whose newest revision goes away falls back to its previous revision still served by
//!   a current deployment, or disappears. Revision numbers are never reused.

mod declared;
mod limits;
mod modify;
mod register;
mod remove;
mod schedules;
#[cfg(test)]
mod tests;

use crate::{
    Deployment, DeploymentId, HandlerSchema, Refusal, RegistryCommand, Schedule, ServicePatch,
    ServiceSchema,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// All deployments and services; the state of the replicated metadata log, snapshotted whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Every deployment not removed, current or superseded.
    deployments: BTreeMap<DeploymentId, Deployment>,
    /// Revision history per service name, including names whose revisions are all gone (so that
    /// revision numbers are never reused).
    services: BTreeMap<String, ServiceEntry>,
    /// Sequence number of the next registration.
    next_sequence: u64,
    /// The cluster's nodes once its membership first changed (absent in older snapshots).
    #[serde(default)]
    pub(crate) members: crate::members::Members,
    /// Schedules by name (absent in older snapshots).
    #[serde(default)]
    schedules: BTreeMap<String, Schedule>,
    /// Flow-control limits by name (absent in older snapshots).
    #[serde(default)]
    limits: BTreeMap<String, holdfast_types::Limit>,
}

/// The revisions of one service that new invocations may use, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ServiceEntry {
    /// Highest revision number ever assigned to this name.
    last_revision: u32,
    /// Revisions served by current deployments (one per uri at most), ascending; the last is the
    /// newest and receives new invocations. Empty when the service is gone.
    revisions: Vec<RevisionRef>,
    /// Operator settings, applied to every revision of the service, including later ones.
    patch: ServicePatch,
}

/// Points at the deployment holding one revision's [`ServiceSchema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RevisionRef {
    revision: u32,
    deployment: DeploymentId,
}

/// What an applied command did, for the admin API's answer.
/// Serialisable because it is the metadata log's response to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A new deployment was created; its services are now the newest revisions (201).
    Registered(DeploymentId),
    /// The same uri was already registered with an identical manifest; nothing changed (200).
    AlreadyRegistered(DeploymentId),
    /// The deployment is gone.
    Removed {
        /// The removed deployment.
        id: DeploymentId,
        /// Services whose newest revision it was and that now use their previous revision.
        fell_back: Vec<String>,
        /// Services whose newest revision it was and that had no other: they are gone.
        disappeared: Vec<String>,
    },
    /// The service's settings changed.
    ServiceModified(String),
    /// The node joined the cluster (201).
    NodeAdded(u64),
    /// The node was a member already, at the same address; nothing changed (200).
    NodeAlreadyMember(u64),
    /// The node left the cluster for good (its replicas move to the remaining members).
    NodeRemoved(u64),
    /// The schedule was created (201) or replaced.
    SchedulePut {
        /// Its name.
        name: String,
        /// Whether it is new.
        created: bool,
    },
    /// The schedule is gone.
    ScheduleRemoved(String),
    /// The limit was created (201) or replaced.
    LimitPut {
        /// Its name.
        name: String,
        /// Whether it is new.
        created: bool,
    },
    /// The limit is gone.
    LimitRemoved(String),
}

/// Where a new invocation of `service/handler` goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved<'a> {
    /// The newest revision of the service.
    pub service: &'a ServiceSchema,
    /// The handler within that revision.
    pub handler: &'a HandlerSchema,
    /// The deployment serving that revision.
    pub deployment: &'a Deployment,
}

impl Resolved<'_> {
    /// Whether ingress may call this handler (both the service and the handler are public).
    pub fn is_public(&self) -> bool {
        self.service.public && self.handler.public
    }
}

impl Registry {
    /// An empty registry: the state before the first log entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command from the log. A refusal changes nothing; the outcome depends only on
    /// the registry and the command, so every node reaches the same state.
    pub fn apply(&mut self, command: &RegistryCommand) -> Result<Applied, Refusal> {
        match command {
            RegistryCommand::RegisterDeployment {
                seed,
                uri,
                manifest,
                force,
                at_ms,
            } => {
                let plan = self.plan_register(*seed, uri, manifest, *force, *at_ms)?;
                Ok(self.commit_register(plan))
            }
            RegistryCommand::RemoveDeployment { id, force } => {
                self.plan_remove(*id, *force)?;
                Ok(self.commit_remove(*id))
            }
            RegistryCommand::ModifyService { service, patch } => {
                self.plan_modify(service, patch)?;
                Ok(self.commit_modify(service, patch))
            }
            RegistryCommand::AddNode {
                id,
                address,
                initial,
            } => {
                let already = self.plan_add_node(*id, address, initial)?;
                Ok(self.commit_add_node(*id, address, initial, already))
            }
            RegistryCommand::RemoveNode {
                id,
                initial,
                replication_factor,
            } => {
                self.plan_remove_node(*id, initial, *replication_factor)?;
                Ok(self.commit_remove_node(*id, initial))
            }
            RegistryCommand::PutSchedule { schedule, create } => {
                self.plan_put_schedule(schedule, *create)?;
                Ok(self.commit_put_schedule(schedule, *create))
            }
            RegistryCommand::RemoveSchedule { name } => {
                self.plan_remove_schedule(name)?;
                Ok(self.commit_remove_schedule(name))
            }
            RegistryCommand::PutLimit { limit, create } => {
                self.plan_put_limit(limit, *create)?;
                Ok(self.commit_put_limit(limit))
            }
            RegistryCommand::RemoveLimit { name } => {
                self.plan_remove_limit(name)?;
                Ok(self.commit_remove_limit(name))
            }
        }
    }

    /// Whether [`apply`](Self::apply) would accept `command` now, without changing anything; the
    /// admin API uses it to refuse before proposing. Another command may still be applied first.
    pub fn check(&self, command: &RegistryCommand) -> Result<(), Refusal> {
        match command {
            RegistryCommand::RegisterDeployment {
                seed,
                uri,
                manifest,
                force,
                at_ms,
            } => self
                .plan_register(*seed, uri, manifest, *force, *at_ms)
                .map(drop),
            RegistryCommand::RemoveDeployment { id, force } => self.plan_remove(*id, *force),
            RegistryCommand::ModifyService { service, patch } => self.plan_modify(service, patch),
            RegistryCommand::AddNode {
                id,
                address,
                initial,
            } => self.plan_add_node(*id, address, initial).map(drop),
            RegistryCommand::RemoveNode {
                id,
                initial,
                replication_factor,
            } => self
                .plan_remove_node(*id, initial, *replication_factor)
                .map(drop),
            RegistryCommand::PutSchedule { schedule, create } => {
                self.plan_put_schedule(schedule, *create)
            }
            RegistryCommand::RemoveSchedule { name } => self.plan_remove_schedule(name),
            RegistryCommand::PutLimit { limit, create } => self.plan_put_limit(limit, *create),
            RegistryCommand::RemoveLimit { name } => self.plan_remove_limit(name),
        }
    }

    /// The deployment with this id, current or superseded; the invoker finds pinned invocations'
    /// endpoints here.
    pub fn deployment(&self, id: &DeploymentId) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// Every deployment, in registration order.
    pub fn deployments(&self) -> Vec<&Deployment> {
        let mut all: Vec<&Deployment> = self.deployments.values().collect();
        all.sort_by_key(|d| d.sequence);
        all
    }

    /// The deployment currently registered at `uri` (not superseded), if any.
    pub fn current_at(&self, uri: &str) -> Option<&Deployment> {
        self.deployments
            .values()
            .find(|d| d.uri == uri && d.superseded_by.is_none())
    }

    /// The newest revision of the service called `name`, if it is live.
    pub fn service(&self, name: &str) -> Option<&ServiceSchema> {
        let newest = self.services.get(name)?.revisions.last()?;
        self.deployments.get(&newest.deployment)?.service(name)
    }

    /// The newest revision of every live service, sorted by name.
    pub fn services(&self) -> Vec<&ServiceSchema> {
        self.services
            .keys()
            .filter_map(|name| self.service(name))
            .collect()
    }

    /// Every revision of `name` that new invocations could fall back to, oldest first; the last
    /// one is [`service`](Self::service).
    pub fn revisions(&self, name: &str) -> Vec<&ServiceSchema> {
        self.services.get(name).map_or_else(Vec::new, |entry| {
            entry
                .revisions
                .iter()
                .filter_map(|r| self.deployments.get(&r.deployment)?.service(name))
                .collect()
        })
    }

    /// Where a new invocation of `service/handler` goes: the newest revision of the service.
    pub fn resolve(&self, service: &str, handler: &str) -> Option<Resolved<'_>> {
        let newest = self.services.get(service)?.revisions.last()?;
        self.resolve_pinned(&newest.deployment, service, handler)
    }

    /// `service/handler` as served by one deployment: for invocations pinned to it.
    pub fn resolve_pinned(
        &self,
        deployment: &DeploymentId,
        service: &str,
        handler: &str,
    ) -> Option<Resolved<'_>> {
        let deployment = self.deployments.get(deployment)?;
        let service = deployment.service(service)?;
        let handler = service.handler(handler)?;
        Some(Resolved {
            service,
            handler,
            deployment,
        })
    }

    /// Whether the newest revision of `service` is served by `deployment`.
    fn is_newest(&self, service: &str, deployment: DeploymentId) -> bool {
        self.services
            .get(service)
            .and_then(|e| e.revisions.last())
            .is_some_and(|r| r.deployment == deployment)
    }

    /// Forgets every revision served by `deployment`; services left without any are gone, and
    /// their operator settings with them. Returns (fell back, disappeared) among those whose
    /// newest revision it was.
    fn drop_revisions_of(&mut self, deployment: DeploymentId) -> (Vec<String>, Vec<String>) {
        let mut fell_back = Vec::new();
        let mut disappeared = Vec::new();
        for (name, entry) in &mut self.services {
            let was_newest = entry
                .revisions
                .last()
                .is_some_and(|r| r.deployment == deployment);
            entry.revisions.retain(|r| r.deployment != deployment);
            if entry.revisions.is_empty() {
                entry.patch = ServicePatch::default();
            }
            if was_newest {
                if entry.revisions.is_empty() {
                    disappeared.push(name.clone());
                } else {
                    fell_back.push(name.clone());
                }
            }
        }
        (fell_back, disappeared)
    }
}
