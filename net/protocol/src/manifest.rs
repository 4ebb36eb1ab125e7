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
    /// The SDK serving the endpoint and its version, shown to operators as the deployment's SDK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
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
    /// Retry policy of its handlers' invocations, field by field over the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// Silence (ms) after which an attempt of its handlers is asked to suspend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout_ms: Option<u64>,
    /// Time (ms) after that request at which a still running attempt is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_timeout_ms: Option<u64>,
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
    /// How the kernel schedules it (`exclusive`, `shared` or `workflow` in a manifest).
    #[serde(with = "manifest_kind")]
    pub kind: HandlerKind,
    /// Content type of its input.
    pub input: String,
    /// Content type of its output.
    pub output: String,
    /// Retry policy fields overriding the service's (and the node's) for this handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// Overrides the service's inactivity timeout (ms) for this handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout_ms: Option<u64>,
    /// Overrides the service's abort timeout (ms) for this handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_timeout_ms: Option<u64>,
    /// Schedules declared with the handler in code: the registry creates them when the
    /// deployment is registered and removes them once the newest revision no longer declares
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<HandlerSchedule>,
}

/// A schedule a handler declares in code: the same fields as `POST /schedules` without service
/// and handler, which are the declaring handler's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerSchedule {
    /// Its name; default `<service>.<handler>`, then `.2`, `.3`… for a handler's further ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A cron expression (5 or 6 fields, or an alias such as `@hourly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A fixed interval in milliseconds, instead of `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// The object's key, or a workflow's key with `{tick}` or `{tick_ms}` in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The JSON input every tick sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// `skip` (default), `latest` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    /// With `catch_up: all`, the most missed ticks fired (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_max: Option<u32>,
    /// `skip` (default), `queue` or `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
}

/// Retry policy fields a service or handler declares; an absent field keeps the value of the
/// next level (handler > service > the node's configuration).
///
/// Equality compares `factor` bit for bit, so manifests stay `Eq`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_interval_ms: Option<u64>,
    /// Each further delay is the previous one times this factor (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Upper bound of any single delay, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval_ms: Option<u64>,
    /// Attempts (the first included) before `on_max_attempts` applies (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// What happens once the attempts are used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_max_attempts: Option<OnMaxAttempts>,
}

impl PartialEq for RetryPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.initial_interval_ms == other.initial_interval_ms
            && self.factor.map(f64::to_bits) == other.factor.map(f64::to_bits)
            && self.max_interval_ms == other.max_interval_ms
            && self.max_attempts == other.max_attempts
            && self.on_max_attempts == other.on_max_attempts
    }
}

impl Eq for RetryPolicy {}

/// What happens to an invocation whose attempts are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMaxAttempts {
    /// Keep it and its journal until an operator resumes it.
    Pause,
    /// Fail it with the last error.
    Kill,
}

/// How invocations of a handler are scheduled against their key: the one type of every layer
/// (manifests, the registry, the partition log). Stored by its variant name (`Exclusive`); the
/// snake_case names of manifests (and of registries written by earlier releases) read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HandlerKind {
    /// One at a time per key, in arrival order; may write state.
    #[serde(alias = "exclusive")]
    Exclusive,
    /// Concurrent, read-only state; every handler of a stateless service.
    #[serde(alias = "shared")]
    Shared,
    /// A workflow's main handler: runs once per key, exclusive on it like `Exclusive`.
    #[serde(alias = "workflow")]
    Workflow,
}

impl HandlerKind {
    /// Whether an invocation of this kind must hold its object's lock to run.
    pub fn is_exclusive(self) -> bool {
        matches!(self, HandlerKind::Exclusive | HandlerKind::Workflow)
    }
}

/// A handler kind as manifests spell it: snake_case.
mod manifest_kind {
    use super::HandlerKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        kind: &HandlerKind,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match kind {
            HandlerKind::Exclusive => "exclusive",
            HandlerKind::Shared => "shared",
            HandlerKind::Workflow => "workflow",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<HandlerKind, D::Error> {
        HandlerKind::deserialize(deserializer)
    }
}
