//! Operator control of invocations (the admin's `PATCH /invocations/{id}/…`): a [`Control`]
//! request is checked against the invocation's applied state with
//! [`holdfast_fsm::control::check`], turned into the command it stands for, proposed, and
//! answered once that command is committed and applied.
//!
//! ```text
//!   Control{id, request} ──► applied state ──► check ──refused──► ControlError::Refused
//!                                                 ├──unchanged──► Controlled::Unchanged
//!                                                 └──apply──► Propose(Cancel|Kill|Purge|Pause|ResumeOn)
//!                                                               └──committed──► Controlled::Applied
//! ```
//!
//! The record is read off the actor's thread. The check sees only applied state: a command still queued may change the invocation before
//! this one commits. The state machine applies the same rules, so such a command is ignored
//! deterministically; the operator was told it was accepted, which is all that was promised.

use crate::ProposeError;
use crate::actor::PartitionActor;
use crate::effects::now_ms;
use actix::prelude::*;
use futures::future::BoxFuture;
use holdfast_fsm::control::{Action, Refusal, Verdict, check};
use holdfast_fsm::state::Invocation;
use holdfast_types::{Command, InvocationId, Target};
use serde::{Deserialize, Serialize};

/// Which deployment a resumed invocation runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeploymentChoice {
    /// The one it is pinned to (or, unpinned, the newest serving it).
    #[default]
    Keep,
    /// The newest deployment serving its handler now.
    Latest,
    /// This registered deployment, which must serve its handler.
    Id(holdfast_schema::DeploymentId),
}

/// What an operator asks of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The handler sees a cancellation failure at its next await; callees are cancelled too.
    Cancel,
    /// Stop at once without compensation; callers get a failure.
    Kill,
    /// Forget a completed invocation's result and journal.
    Purge,
    /// Fence the running attempt; nothing runs until resumed.
    Pause,
    /// Start the next attempt of a paused, suspended or backing-off invocation now.
    Resume {
        /// The deployment the next attempt runs on.
        deployment: DeploymentChoice,
    },
}

impl ControlRequest {
    fn action(self) -> Action {
        match self {
            ControlRequest::Cancel => Action::Cancel,
            ControlRequest::Kill => Action::Kill,
            ControlRequest::Purge => Action::Purge,
            ControlRequest::Pause => Action::Pause,
            ControlRequest::Resume { deployment } => Action::Resume {
                repin: deployment != DeploymentChoice::Keep,
            },
        }
    }
}

/// Asks the partition owning `id` to carry out an operator's request about it.
#[derive(Debug, Message)]
#[rtype(result = "Result<Controlled, ControlError>")]
pub struct Control {
    /// The invocation.
    pub id: InvocationId,
    /// What to do with it.
    pub request: ControlRequest,
}

/// How a [`Control`] request was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Controlled {
    /// The command was committed and applied.
    Applied,
    /// The invocation already was where the request would put it; nothing was written.
    Unchanged,
}

/// Why a [`Control`] request was not carried out. Nothing was written, except after
/// [`ControlError::Propose`] with [`ProposeError::Storage`], whose outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControlError {
    /// The invocation's state forbids the request (or it does not exist).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The deployment named for a resume is not registered.
    #[error("deployment {0} is not registered")]
    UnknownDeployment(holdfast_schema::DeploymentId),
    /// The deployment chosen for a resume does not serve the invocation's handler.
    #[error("no deployment {chosen} serves {service}/{handler}")]
    NotServed {
        /// `latest`, or the deployment id that was named.
        chosen: String,
        /// The invocation's service.
        service: String,
        /// The invocation's handler.
        handler: String,
    },
    /// The partition could not read the invocation or refused the proposal.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

impl PartitionActor {
    /// The command carrying out `request` for `id`, checked against its applied `record`.
    fn control_command(
        &self,
        id: InvocationId,
        request: ControlRequest,
        record: Option<Invocation>,
    ) -> Result<Option<Command>, ControlError> {
        let verdict = check(record.as_ref().map(|r| &r.status), request.action())?;
        let Some(record) = record.filter(|_| verdict == Verdict::Apply) else {
            return Ok(None);
        };
        let command = match request {
            ControlRequest::Cancel => Command::Cancel {
                id,
                at_ms: now_ms(),
            },
            ControlRequest::Kill => Command::Kill {
                id,
                at_ms: now_ms(),
            },
            ControlRequest::Purge => Command::Purge { id },
            ControlRequest::Pause => Command::Pause { id },
            ControlRequest::Resume { deployment } => Command::ResumeOn {
                id,
                deployment: self.resolve_deployment(deployment, &record.target)?,
            },
        };
        Ok(Some(command))
    }

    /// The deployment a resume pins to, resolved now so that every replica pins the same one.
    fn resolve_deployment(
        &self,
        choice: DeploymentChoice,
        target: &Target,
    ) -> Result<Option<holdfast_types::DeploymentId>, ControlError> {
        let registry = self.settings.registry.borrow();
        let not_served = |chosen: String| ControlError::NotServed {
            chosen,
            service: target.service.clone(),
            handler: target.handler.clone(),
        };
        let chosen = match choice {
            DeploymentChoice::Keep => return Ok(None),
            DeploymentChoice::Latest => registry
                .resolve(&target.service, &target.handler)
                .map(|resolved| resolved.deployment.id)
                .ok_or_else(|| not_served("latest".to_owned()))?,
            DeploymentChoice::Id(id) => {
                if registry.deployment(&id).is_none() {
                    return Err(ControlError::UnknownDeployment(id));
                }
                registry
                    .resolve_pinned(&id, &target.service, &target.handler)
                    .map(|resolved| resolved.deployment.id)
                    .ok_or_else(|| not_served(id.to_string()))?
            }
        };
        Ok(Some(chosen))
    }
}

impl Handler<Control> for PartitionActor {
    type Result = ResponseActFuture<Self, Result<Controlled, ControlError>>;

    fn handle(
        &mut self,
        Control { id, request }: Control,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        // The record is read off the actor's thread; the check and the proposal happen back on it.
        let read = self.read_state(move |state| state.invocation(id));
        Box::pin(read.into_actor(self).then(move |record, act, ctx| {
            let command = record
                .map_err(ControlError::from)
                .and_then(|record| act.control_command(id, request, record));
            let done: BoxFuture<'static, Result<Controlled, ControlError>> = match command {
                Ok(Some(command)) => {
                    let committed = act.enqueue(vec![command], crate::actor::Lane::Client, ctx);
                    Box::pin(async move {
                        committed.await?;
                        Ok(Controlled::Applied)
                    })
                }
                Ok(None) => Box::pin(std::future::ready(Ok(Controlled::Unchanged))),
                Err(error) => Box::pin(std::future::ready(Err(error))),
            };
            done.into_actor(act)
        }))
    }
}
