//! JSON bodies of the admin API's deployment and service endpoints, shaped like Restate's so its
//! clients and scripts read them unchanged. Pure conversions from the registry's types; the admin
//! crate only serializes them.
//!
//! | endpoint | body |
//! |---|---|
//! | `POST /deployments` | [`Registration`] via [`registration`] |
//! | `GET /deployments` | [`DeploymentList`] via [`deployment_list`] |
//! | `GET /deployments/{id}` | [`DeploymentDetail`] via [`deployment_detail`] |
//! | `GET /services` | [`ServiceList`] via [`service_list`] |
//! | `GET /services/{name}` | [`ServiceView`] via [`service`] |
//! | `GET /services/{name}/handlers/{handler}` | [`HandlerView`] via [`handler`] |
//! | any refusal | [`ErrorView`] via [`error`] |

use crate::{
    AttemptPolicy, Deployment, DeploymentId, HandlerSchema, Millis, OnMaxAttempts, Refusal,
    Registry, RetryPolicy, ServiceSchema,
};
use holdfast_protocol::manifest::{HandlerKind, ProtocolMode, ServiceType};
use serde::Serialize;

/// Answer to a registration: the deployment and its services in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registration {
    /// The deployment's id (new, or the existing one for an identical re-registration).
    #[serde(serialize_with = "holdfast_types::deployment::serialize_public")]
    pub id: DeploymentId,
    /// Its services.
    pub services: Vec<ServiceView>,
    /// Lowest protocol version the endpoint speaks.
    pub min_protocol_version: u32,
    /// Highest protocol version the endpoint speaks.
    pub max_protocol_version: u32,
}

/// `{"deployments": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentList {
    /// Every deployment, in registration order.
    pub deployments: Vec<DeploymentSummary>,
}

/// One deployment in a listing: its services by name and revision only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentSummary {
    /// Its id.
    #[serde(serialize_with = "holdfast_types::deployment::serialize_public")]
    pub id: DeploymentId,
    /// Where it listens.
    pub uri: String,
    /// `BidiStream` or `RequestResponse`: how the invoker talks to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_type: Option<&'static str>,
    /// The HTTP version the kernel talks to it with: always `HTTP/2.0`.
    pub http_version: &'static str,
    /// Registration time, RFC 3339 in UTC.
    pub created_at: String,
    /// Lowest protocol version the endpoint speaks.
    pub min_protocol_version: u32,
    /// Highest protocol version the endpoint speaks.
    pub max_protocol_version: u32,
    /// The SDK and version the endpoint declared, e.g. `holdfast-sdk-typescript/0.1.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// The service revisions it serves.
    pub services: Vec<ServiceRevision>,
}

/// A service name and the revision a deployment serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRevision {
    /// Service name.
    pub name: String,
    /// Revision served.
    pub revision: u32,
}

/// One deployment with its services in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentDetail {
    /// Its id.
    #[serde(serialize_with = "holdfast_types::deployment::serialize_public")]
    pub id: DeploymentId,
    /// Where it listens.
    pub uri: String,
    /// `BidiStream` or `RequestResponse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_type: Option<&'static str>,
    /// The HTTP version the kernel talks to it with: always `HTTP/2.0`.
    pub http_version: &'static str,
    /// Registration time, RFC 3339 in UTC.
    pub created_at: String,
    /// Lowest protocol version the endpoint speaks.
    pub min_protocol_version: u32,
    /// Highest protocol version the endpoint speaks.
    pub max_protocol_version: u32,
    /// The SDK and version the endpoint declared, e.g. `holdfast-sdk-typescript/0.1.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    /// The service revisions it serves.
    pub services: Vec<ServiceView>,
}

/// `{"services": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceList {
    /// The newest revision of every live service, by name.
    pub services: Vec<ServiceView>,
}

/// One service revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// `Service`, `VirtualObject` or `Workflow`.
    pub ty: &'static str,
    /// Its handlers.
    pub handlers: Vec<HandlerView>,
    /// The deployment serving this revision.
    #[serde(serialize_with = "holdfast_types::deployment::serialize_public")]
    pub deployment_id: DeploymentId,
    /// The revision.
    pub revision: u32,
    /// Whether ingress may call it.
    pub public: bool,
    /// E.g. `1d`.
    pub idempotency_retention: String,
    /// E.g. `1d`.
    pub journal_retention: String,
    /// Workflows only, e.g. `1d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_completion_retention: Option<String>,
    /// E.g. `1m`.
    pub inactivity_timeout: String,
    /// E.g. `10m`.
    pub abort_timeout: String,
    /// Backoff between attempts.
    pub retry_policy: RetryPolicyView,
}

/// A service's retry policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicyView {
    /// E.g. `50ms`.
    pub initial_interval: String,
    /// E.g. `2.0`.
    pub exponentiation_factor: f64,
    /// Attempts before `on_max_attempts` applies (always set; `null` is Restate's "forever").
    pub max_attempts: Option<u32>,
    /// E.g. `1m`.
    pub max_interval: String,
    /// `Pause` or `Kill`.
    pub on_max_attempts: &'static str,
}

/// One handler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandlerView {
    /// Handler name.
    pub name: String,
    /// `Exclusive`, `Shared` or `Workflow`; absent for a stateless service's handlers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ty: Option<&'static str>,
    /// Whether ingress may call it.
    pub public: bool,
    /// Content type of its input.
    pub input_description: String,
    /// Content type of its output.
    pub output_description: String,
    /// Fields overriding the service's retry policy; `null` keeps the service's value.
    pub retry_policy: RetryOverridesView,
}

/// A handler's retry overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryOverridesView {
    /// Overridden initial interval.
    pub initial_interval: Option<String>,
    /// Overridden factor.
    pub exponentiation_factor: Option<f64>,
    /// Overridden attempt limit.
    pub max_attempts: Option<u32>,
    /// Overridden maximum interval.
    pub max_interval: Option<String>,
    /// Overridden exhaustion behaviour.
    pub on_max_attempts: Option<&'static str>,
}

/// Body of a refused admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorView {
    /// What went wrong and, for conflicts, how to override.
    pub message: String,
    /// Stable name of the refusal ([`Refusal::code`]).
    pub code: &'static str,
}

/// The answer to `POST /deployments` for `deployment`; `defaults` (the node's configuration)
/// fills in what services do not declare.
pub fn registration(deployment: &Deployment, defaults: &AttemptPolicy) -> Registration {
    Registration {
        id: deployment.id,
        services: deployment
            .services
            .iter()
            .map(|s| service(s, defaults))
            .collect(),
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
    }
}

/// How the kernel talks to every endpoint: HTTP/2 (prior knowledge, or ALPN over TLS).
const HTTP_VERSION: &str = "HTTP/2.0";

/// The answer to `GET /deployments`.
pub fn deployment_list(registry: &Registry) -> DeploymentList {
    DeploymentList {
        deployments: registry
            .deployments()
            .into_iter()
            .map(deployment_summary)
            .collect(),
    }
}

/// One entry of `GET /deployments`.
pub fn deployment_summary(deployment: &Deployment) -> DeploymentSummary {
    DeploymentSummary {
        id: deployment.id,
        uri: deployment.uri.clone(),
        protocol_type: protocol_type(deployment),
        http_version: HTTP_VERSION,
        created_at: deployment.created_at.rfc3339(),
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
        sdk_version: deployment.sdk_version.clone(),
        services: deployment
            .services
            .iter()
            .map(|s| ServiceRevision {
                name: s.name.clone(),
                revision: s.revision,
            })
            .collect(),
    }
}

/// The answer to `GET /deployments/{id}`.
pub fn deployment_detail(deployment: &Deployment, defaults: &AttemptPolicy) -> DeploymentDetail {
    DeploymentDetail {
        id: deployment.id,
        uri: deployment.uri.clone(),
        protocol_type: protocol_type(deployment),
        http_version: HTTP_VERSION,
        created_at: deployment.created_at.rfc3339(),
        min_protocol_version: deployment.min_protocol_version,
        max_protocol_version: deployment.max_protocol_version,
        sdk_version: deployment.sdk_version.clone(),
        services: deployment
            .services
            .iter()
            .map(|s| service(s, defaults))
            .collect(),
    }
}

/// The answer to `GET /services`.
pub fn service_list(registry: &Registry, defaults: &AttemptPolicy) -> ServiceList {
    ServiceList {
        services: registry
            .services()
            .into_iter()
            .map(|s| service(s, defaults))
            .collect(),
    }
}

/// The answer to `GET /services/{name}`: the effective service-level settings, the node's
/// configuration `defaults` filling in what the service does not declare.
pub fn service(schema: &ServiceSchema, defaults: &AttemptPolicy) -> ServiceView {
    ServiceView {
        name: schema.name.clone(),
        ty: service_type(schema.ty),
        handlers: schema.handlers.iter().map(|h| handler(schema, h)).collect(),
        deployment_id: schema.deployment_id,
        revision: schema.revision,
        public: schema.public,
        idempotency_retention: schema.idempotency_retention.to_string(),
        journal_retention: schema.journal_retention.to_string(),
        workflow_completion_retention: schema.workflow_completion_retention.map(|m| m.to_string()),
        inactivity_timeout: schema
            .inactivity_timeout
            .unwrap_or(defaults.inactivity_timeout)
            .to_string(),
        abort_timeout: schema
            .abort_timeout
            .unwrap_or(defaults.abort_timeout)
            .to_string(),
        retry_policy: retry_policy(&schema.retry_policy.apply_to(defaults.retry)),
    }
}

/// The answer to `GET /services/{name}/handlers/{handler}`.
pub fn handler(service: &ServiceSchema, handler: &HandlerSchema) -> HandlerView {
    let overrides = handler.retry.unwrap_or_default();
    HandlerView {
        name: handler.name.clone(),
        ty: (service.ty != ServiceType::Service).then_some(handler_kind(handler.kind)),
        public: handler.public,
        input_description: handler.input.clone(),
        output_description: handler.output.clone(),
        retry_policy: RetryOverridesView {
            initial_interval: overrides.initial_interval.map(|m| m.to_string()),
            exponentiation_factor: overrides.exponentiation_factor,
            max_attempts: overrides.max_attempts,
            max_interval: overrides.max_interval.map(|m| m.to_string()),
            on_max_attempts: overrides.on_max_attempts.map(on_max_attempts),
        },
    }
}

/// The body for a refused command; the status is [`Refusal::http_status`].
pub fn error(refusal: &Refusal) -> ErrorView {
    ErrorView {
        message: refusal.to_string(),
        code: refusal.code(),
    }
}

fn retry_policy(policy: &RetryPolicy) -> RetryPolicyView {
    RetryPolicyView {
        initial_interval: Millis(policy.initial_interval_ms).to_string(),
        exponentiation_factor: policy.factor,
        max_attempts: Some(policy.max_attempts),
        max_interval: Millis(policy.max_interval_ms).to_string(),
        on_max_attempts: on_max_attempts(policy.on_max_attempts),
    }
}

fn service_type(ty: ServiceType) -> &'static str {
    match ty {
        ServiceType::Service => "Service",
        ServiceType::Object => "VirtualObject",
        ServiceType::Workflow => "Workflow",
    }
}

fn handler_kind(kind: HandlerKind) -> &'static str {
    match kind {
        HandlerKind::Exclusive => "Exclusive",
        HandlerKind::Shared => "Shared",
        HandlerKind::Workflow => "Workflow",
    }
}

fn on_max_attempts(value: OnMaxAttempts) -> &'static str {
    match value {
        OnMaxAttempts::Pause => "Pause",
        OnMaxAttempts::Kill => "Kill",
    }
}

fn protocol_type(deployment: &Deployment) -> Option<&'static str> {
    deployment.preferred_mode().map(|mode| match mode {
        ProtocolMode::Stream => "BidiStream",
        ProtocolMode::RequestResponse => "RequestResponse",
    })
}
