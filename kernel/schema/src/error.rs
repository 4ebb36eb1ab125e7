//! Why the registry refuses a command. A refused command changes nothing, whether it was caught by
//! [`Registry::check`](crate::Registry::check) before proposing or met in the log.

use crate::DeploymentId;
use holdfast_protocol::manifest::{HandlerKind, ServiceType};
use std::fmt;

/// A command the registry will not apply, with the HTTP status the admin API answers it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    /// The registration itself is malformed (400).
    #[error("invalid registration: {0}")]
    Invalid(#[from] Invalid),
    /// The change would break what live services offer; `force` overrides it (409).
    #[error("{0}; set force to apply it anyway")]
    Conflict(Conflicts),
    /// No deployment has this id (404).
    #[error("deployment {0} not found")]
    UnknownDeployment(DeploymentId),
    /// No live service has this name (404).
    #[error("service '{0}' not found")]
    UnknownService(String),
    /// A deployment with the id derived from this seed exists already; propose again with a fresh
    /// seed (500: the proposer's fault, not the user's).
    #[error("deployment id {0} is already taken")]
    IdTaken(DeploymentId),
    /// The service has used up its revision numbers (500; not reachable in practice).
    #[error("service '{0}' has no revision numbers left")]
    RevisionsExhausted(String),
    /// A node change names no valid id or address (400).
    #[error("invalid node: {0}")]
    InvalidNode(String),
    /// The id belonged to a node that was removed; ids are never reused (409).
    #[error(
        "node {0} was removed from the cluster and its id may not be reused: a wiped or replaced machine joins under a new id"
    )]
    NodeRemoved(u64),
    /// The id is a member at another address; addresses never change in place (409).
    #[error(
        "node {id} is a member at {address}; an address never changes in place: remove the node and add it under a new id"
    )]
    AddressInPlace {
        /// The member.
        id: u64,
        /// Its recorded address.
        address: String,
    },
    /// Another member has this address (409).
    #[error("address {address} belongs to node {by}")]
    AddressTaken {
        /// The address.
        address: String,
        /// The member holding it.
        by: u64,
    },
    /// No member has this id (404).
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(u64),
    /// Removing the node would leave too few members for the replicas (409).
    #[error(
        "removing the node would leave {remaining} members, fewer than the replication factor {replication_factor}"
    )]
    TooFewNodes {
        /// Members that would remain.
        remaining: usize,
        /// Replicas per partition.
        replication_factor: u32,
    },
    /// A schedule definition that cannot fire as written (400).
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// No schedule has this name (404).
    #[error("schedule '{0}' not found")]
    UnknownSchedule(String),
    /// A schedule with this name exists already (409).
    #[error("schedule '{0}' exists already")]
    ScheduleExists(String),
    /// The limit's definition is invalid (400).
    #[error("invalid limit: {0}")]
    InvalidLimit(String),
    /// No limit has this name (404).
    #[error("limit '{0}' not found")]
    UnknownLimit(String),
    /// A limit with this name exists already (409).
    #[error("limit '{0}' exists already")]
    LimitExists(String),
}

impl Refusal {
    /// The HTTP status the admin API answers this refusal with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Invalid(_)
            | Self::InvalidNode(_)
            | Self::InvalidSchedule(_)
            | Self::InvalidLimit(_) => 400,
            Self::Conflict(_)
            | Self::NodeRemoved(_)
            | Self::AddressInPlace { .. }
            | Self::AddressTaken { .. }
            | Self::TooFewNodes { .. }
            | Self::ScheduleExists(_)
            | Self::LimitExists(_) => 409,
            Self::UnknownDeployment(_)
            | Self::UnknownService(_)
            | Self::UnknownNode(_)
            | Self::UnknownSchedule(_)
            | Self::UnknownLimit(_) => 404,
            Self::IdTaken(_) | Self::RevisionsExhausted(_) => 500,
        }
    }

    /// A stable name for the refusal, for scripts and documentation.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_registration",
            Self::Conflict(_) => "conflict",
            Self::UnknownDeployment(_) => "unknown_deployment",
            Self::UnknownService(_) => "unknown_service",
            Self::IdTaken(_) => "id_taken",
            Self::RevisionsExhausted(_) => "revisions_exhausted",
            Self::InvalidNode(_) => "invalid_node",
            Self::NodeRemoved(_) => "node_removed",
            Self::AddressInPlace { .. } => "address_in_place",
            Self::AddressTaken { .. } => "address_taken",
            Self::UnknownNode(_) => "unknown_node",
            Self::TooFewNodes { .. } => "too_few_nodes",
            Self::InvalidSchedule(_) => "invalid_schedule",
            Self::UnknownSchedule(_) => "unknown_schedule",
            Self::ScheduleExists(_) => "schedule_exists",
            Self::InvalidLimit(_) => "invalid_limit",
            Self::UnknownLimit(_) => "unknown_limit",
            Self::LimitExists(_) => "limit_exists",
        }
    }
}

/// What is wrong with a registration or a service change, independent of the registry's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Invalid {
    /// The uri is empty.
    #[error("the deployment uri is empty")]
    EmptyUri,
    /// The manifest lists no service.
    #[error("the endpoint serves no service")]
    NoServices,
    /// `min_protocol_version` exceeds `max_protocol_version`.
    #[error("protocol version range {min}..={max} is empty")]
    ProtocolRange {
        /// Declared minimum.
        min: u32,
        /// Declared maximum.
        max: u32,
    },
    /// The manifest lists no protocol mode.
    #[error("the endpoint declares no protocol mode")]
    NoProtocolMode,
    /// A service or handler name that cannot appear in an invocation path.
    #[error("'{0}' is not a valid name (non-empty, no '/', no whitespace or control characters)")]
    Name(String),
    /// Two services of the manifest share a name.
    #[error("service '{0}' is listed twice")]
    DuplicateService(String),
    /// Two handlers of one service share a name.
    #[error("service '{service}' lists handler '{handler}' twice")]
    DuplicateHandler {
        /// The service.
        service: String,
        /// The repeated handler name.
        handler: String,
    },
    /// A handler kind the service type does not allow (e.g. `exclusive` in a stateless service).
    #[error("handler '{service}/{handler}' of kind {kind:?} is not allowed in a {ty:?}")]
    HandlerKind {
        /// The service.
        service: String,
        /// The handler.
        handler: String,
        /// Its declared kind.
        kind: HandlerKind,
        /// The service's type.
        ty: ServiceType,
    },
    /// A workflow without exactly one `workflow` handler.
    #[error("workflow '{service}' has {count} workflow handlers, expected exactly one")]
    WorkflowHandlers {
        /// The workflow.
        service: String,
        /// How many `workflow` handlers it declares.
        count: usize,
    },
    /// A retry policy or timeout field of the manifest with a value the kernel cannot use.
    #[error("'{target}' declares {field} = {value}, expected {expected}")]
    Setting {
        /// The service, or `service/handler`.
        target: String,
        /// The manifest field, e.g. `retry_policy.factor`.
        field: String,
        /// The declared value.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A workflow completion retention set on a service that is not a workflow.
    #[error("service '{0}' is not a workflow, so it has no workflow completion retention")]
    NotAWorkflow(String),
    /// An `sdk_version` that is empty, longer than 128 bytes, or not printable ASCII.
    #[error("sdk_version {0:?} is not 1 to 128 printable ASCII characters")]
    SdkVersion(String),
}

/// One way a registration or removal would break live services.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Conflict {
    /// The service would change type (e.g. object to service), breaking its keys and state.
    ServiceType {
        /// The service.
        service: String,
        /// Its live type.
        from: ServiceType,
        /// The type the registration declares.
        to: ServiceType,
    },
    /// The endpoint at this uri no longer serves a service that is live there.
    ServiceRemoved {
        /// The service.
        service: String,
        /// The endpoint's uri.
        uri: String,
    },
    /// The endpoint at this uri no longer serves a handler of a service that is live there.
    HandlerRemoved {
        /// The service.
        service: String,
        /// The handler.
        handler: String,
        /// The endpoint's uri.
        uri: String,
    },
    /// The deployment serves the newest revision of these services.
    DeploymentInUse {
        /// The deployment.
        id: DeploymentId,
        /// Services whose newest revision it serves, sorted.
        services: Vec<String>,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceType { service, from, to } => {
                write!(
                    f,
                    "service '{service}' would change type from {from:?} to {to:?}"
                )
            }
            Self::ServiceRemoved { service, uri } => {
                write!(
                    f,
                    "the endpoint at {uri} no longer serves service '{service}'"
                )
            }
            Self::HandlerRemoved {
                service,
                handler,
                uri,
            } => write!(
                f,
                "the endpoint at {uri} no longer serves handler '{service}/{handler}'"
            ),
            Self::DeploymentInUse { id, services } => write!(
                f,
                "deployment {id} serves the newest revision of {}",
                services.join(", ")
            ),
        }
    }
}

/// Every conflict a command would cause, in a deterministic order (never empty when refused).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, conflict) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            conflict.fmt(f)?;
        }
        Ok(())
    }
}
