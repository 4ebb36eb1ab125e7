//! The seam between the HTTP surface and the kernel: what ingress hands over once a request is
//! validated, and what it expects back.
//!
//! Ingress never writes to the log itself; it calls a [`Dispatcher`], which the kernel implements
//! (propose, wait for the commit, wait for the result). Tests implement it with canned answers.

use bytes::Bytes;
use futures::future::BoxFuture;
use holdfast_protocol::manifest::{HandlerKind, ServiceType};
use holdfast_schema::{DeploymentId, Millis, Timestamp};
use holdfast_types::{AwakeableId, TraceContext};
use serde::Serialize;
use std::time::Duration;

/// The handler a request addresses: the one `Target` of every layer.
pub use holdfast_types::Target;

/// Whether the client waits for the result or only for the invocation to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Request-response: the HTTP response carries the handler's result.
    Call,
    /// One-way (`/send`): answered with 202 once the invocation is durable.
    Send {
        /// Start the invocation this long after it is accepted (`?delay=`).
        delay: Option<Duration>,
    },
}

/// A validated request to start (or, under an idempotency key, find) an invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressRequest {
    /// The handler to run.
    pub target: Target,
    /// The service's type as registered, so the kernel need not look it up again.
    pub service_type: ServiceType,
    /// How the handler is scheduled against its key.
    pub handler_kind: HandlerKind,
    /// The deployment serving the newest revision when the request arrived; the invocation is
    /// pinned to it.
    pub deployment: DeploymentId,
    /// How long the completed result stays retrievable (the service's idempotency retention).
    pub idempotency_retention: Millis,
    /// How long a completed workflow's result is kept; `None` unless the service is a workflow.
    pub workflow_retention: Option<Millis>,
    /// The request body, unchanged; empty means no input.
    pub argument: Bytes,
    /// The request's `content-type`, if it sent one.
    pub content_type: Option<String>,
    /// Request headers the handler may see: hop-by-hop and ingress-internal ones removed, names
    /// lower case, values that are not UTF-8 left out.
    pub headers: Vec<(String, String)>,
    /// The `idempotency-key` header: the same key for the same target runs the handler once.
    pub idempotency_key: Option<String>,
    /// Call or one-way send.
    pub mode: Mode,
    /// The trace the invocation joins, parented to the ingress request's span: the client's
    /// `traceparent` trace, or a new one.
    pub trace: Option<TraceContext>,
}

/// Names an existing invocation for `attach` and `output`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InvocationRef {
    /// By invocation id (`inv_…`), already checked to be well formed.
    Id(String),
    /// By the idempotency key it was started with, for this target.
    Idempotency {
        /// The invoked handler.
        target: Target,
        /// The key from the original request's `idempotency-key` header.
        idempotency_key: String,
    },
    /// The `run` invocation of the workflow with this key.
    Workflow {
        /// The workflow service.
        service: String,
        /// The workflow key.
        key: String,
    },
}

/// The handler's successful output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The output bytes, sent as the response body.
    pub body: Bytes,
    /// Its content type; `None` sends none (as for an empty output).
    pub content_type: Option<String>,
}

/// A terminal failure of the invocation, answered with `code` as the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status to answer with (a code outside 100..=999 is answered as 500).
    pub code: u16,
    /// Shown to the client in the error body.
    pub message: String,
}

/// How an invocation ended, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The invocation's id, returned in the `x-restate-id` header.
    pub invocation_id: String,
    /// Its output or terminal failure.
    pub result: Result<Output, Failure>,
    /// When a stored result stops being retrievable; sent as `idempotency-expires`. Set it when
    /// the answer comes from a stored result rather than a fresh completion, as Restate does.
    pub expires_at: Option<Timestamp>,
}

/// Whether a one-way send created an invocation or found the one its idempotency key made before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SendStatus {
    /// A new invocation was made durable.
    Accepted,
    /// The idempotency key named an existing invocation; nothing new was started.
    PreviouslyAccepted,
}

/// The answer to a one-way send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAccepted {
    /// The invocation's id.
    pub invocation_id: String,
    /// New or found by idempotency key.
    pub status: SendStatus,
    /// When a delayed invocation will start; sent as `executionTime`.
    pub execution_time: Option<Timestamp>,
}

/// How an awakeable is completed from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwakeableCompletion {
    /// Resolved with this value (the request body; empty means no value).
    Resolve(Bytes),
    /// Rejected: the waiting handler sees a terminal error with this message.
    Reject(String),
}

/// Why the kernel did not answer a request with an outcome. Each maps to one HTTP status with
/// `x-restate-error-source: ingress`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// No invocation matches the reference (404).
    #[error("invocation not found")]
    NotFound,
    /// No invocation has a pending or completed awakeable with this id (404).
    #[error("awakeable not found")]
    AwakeableNotFound,
    /// The invocation exists but has not completed (470, as Restate answers `output`).
    #[error("the invocation exists but has not completed yet")]
    NotReady,
    /// The request contradicts the invocation's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The kernel cannot take requests now, e.g. no partition leader or shutting down (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The kernel failed; the request may or may not have taken effect (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl DispatchError {
    /// The HTTP status ingress answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::AwakeableNotFound => 404,
            Self::NotReady => 470,
            Self::Conflict(_) => 409,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }
}

/// What the kernel offers ingress. Ingress calls it only for requests that passed validation, so
/// an implementation may assume the target exists in the registry version ingress read.
pub trait Dispatcher: Send + Sync {
    /// Starts an invocation (or finds the one with the same idempotency key) and waits for its
    /// outcome. Errors mean no outcome is known; `Unavailable` guarantees nothing was written.
    fn call(&self, request: IngressRequest) -> BoxFuture<'_, Result<Outcome, DispatchError>>;

    /// Makes an invocation durable without waiting for it to run; `request.mode` is `Send`.
    fn send(&self, request: IngressRequest) -> BoxFuture<'_, Result<SendAccepted, DispatchError>>;

    /// Waits for an existing invocation's outcome; `NotFound` if there is none.
    fn attach(&self, invocation: InvocationRef) -> BoxFuture<'_, Result<Outcome, DispatchError>>;

    /// The outcome if the invocation has completed, `None` if it is still running (answered 470);
    /// `NotFound` if there is no such invocation.
    fn output(
        &self,
        invocation: InvocationRef,
    ) -> BoxFuture<'_, Result<Option<Outcome>, DispatchError>>;

    /// Completes an awakeable from outside: with its value, or rejected with a reason. `Ok` once
    /// the completion is durable (a later completion of the same awakeable is accepted and
    /// ignored); `AwakeableNotFound` if no pending or completed awakeable has this id.
    fn complete_awakeable(
        &self,
        id: AwakeableId,
        completion: AwakeableCompletion,
    ) -> BoxFuture<'_, Result<(), DispatchError>>;

    /// Names of the services this node can invoke, for `GET /restate/health`.
    fn health_services(&self) -> Vec<String>;
}
