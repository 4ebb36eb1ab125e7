//! The registry of deployments and services: which endpoints are registered, which services and
//! handlers they serve, and which revision of each service new invocations go to.
//!
//! It is the pure state machine of the replicated metadata log: no I/O, no clock, no randomness.
//! Every node applies the same [`RegistryCommand`]s in log order and reaches the same
//! [`Registry`]; ids come from seeds and times from the commands.
//!
//! # Layout
//! - [`schema`]: [`Deployment`], [`ServiceSchema`], [`HandlerSchema`], durations and the defaults.
//! - [`command`]: [`RegistryCommand`], the only things written to the metadata log.
//! - [`duration`]: durations as users write them (`1h30m`, `500ms`, `PT1S`).
//! - [`registry`]: [`Registry`] — `apply`, `check` and the lookups for ingress and the invoker;
//!   one file per command states its rules.
//! - [`error`]: [`Refusal`], why a command is not applied, with its HTTP status.
//! - [`schedule`]: [`Schedule`], a handler invoked on a cron expression or an interval.
//! - [`limit`]: the rules of flow-control limits, and rates as users write them.
//! - [`members`]: the cluster's nodes as the log records them, and the [`Placement`] of replicas.
//! - [`views`]: the admin API's JSON bodies.

pub mod command;
pub mod duration;
pub mod error;
pub mod limit;
pub mod members;
pub mod registry;
pub mod schedule;
pub mod schema;
pub mod views;

pub use command::RegistryCommand;
pub use error::{Conflict, Conflicts, Invalid, Refusal};
pub use holdfast_types::RetryPolicy;
pub use holdfast_types::{DeploymentId, ParseDeploymentIdError};
pub use members::{Members, NodeRecord, NodeState, Placement};
pub use registry::{Applied, Registry, Resolved};
pub use schedule::{Schedule, ScheduleSpec};
pub use schema::{
    AttemptPolicy, Civil, DEFAULT_ABORT_TIMEOUT, DEFAULT_IDEMPOTENCY_RETENTION,
    DEFAULT_INACTIVITY_TIMEOUT, DEFAULT_JOURNAL_RETENTION, DEFAULT_WORKFLOW_COMPLETION_RETENTION,
    Deployment, HandlerSchema, Millis, OnMaxAttempts, RetryOverrides, ServicePatch, ServiceSchema,
    Timestamp,
};
