//! The discovery manifest: what an endpoint serves at `GET /discover`, read by the kernel when a
//! deployment is registered.

use serde::{Deserialize, Serialize};

/// Content type of the manifest.
pub const CONTENT_TYPE: &str = "application/vnd.holdfast.manifest.v1+json";

/// Everything an endpoint offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Lowest protocol version the endpoint speaks.
    pub min_protocol_version: u32,
    /// Highest protocol version the endpoint speaks.
    pub max_protocol_version: u32,
    /// Modes the endpoint serves; the kernel picks one per deployment.
    pub protocol_modes: Vec<ProtocolMode>,
    /// The services bound to the endpoint.
    pub services: Vec<Service>,
}

/// How an invocation request exchanges frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolMode {
    /// HTTP/2 bidirectional stream: completions flow into the open request.
    Stream,
    /// One request (start + journal) and one response (new entries, ending the attempt).
    RequestResponse,
}

/// One service of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Name used in invocation paths.
    pub name: String,
    /// Stateless service, keyed object, or keyed workflow.
    #[serde(rename = "type")]
    pub ty: ServiceType,
    /// Its handlers.
    pub handlers: Vec<Handler>,
}

/// The kind of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    /// Stateless, unkeyed, concurrent.
    Service,
    /// Virtual object: keyed state, exclusive handlers serialized per key.
    Object,
    /// Keyed workflow: one `workflow` handler run per key, plus shared handlers.
    Workflow,
}

/// One handler of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    /// Name used in invocation paths.
    pub name: String,
    /// How the kernel schedules it.
    pub kind: HandlerKind,
    /// Content type of its input.
    pub input: String,
    /// Content type of its output.
    pub output: String,
}

/// How invocations of a handler are scheduled against their key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerKind {
    /// One at a time per key, may write state.
    Exclusive,
    /// Concurrent, read-only state (always the kind of a stateless service's handlers).
    Shared,
    /// A workflow's main handler: runs once per key.
    Workflow,
}
