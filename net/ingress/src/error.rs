//! [`Rejection`]: why ingress refused a request before any invocation existed, and how each
//! reason is answered (status and message; the body is `{"code","message","source":"ingress"}`).

use crate::DispatchError;

/// The `message` Restate answers a malformed invocation path with; clients may match on it.
pub const BAD_PATH: &str =
    "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler";

/// A request ingress refused; nothing was dispatched for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No live service has this name (404).
    #[error("service '{0}' not found, make sure to register the service before calling it.")]
    ServiceNotFound(String),
    /// The service exists but its newest revision has no such handler (404).
    #[error(
        "the service '{service}' exists, but the handler '{handler}' was not found, check that the handler exists in the latest registered service version."
    )]
    HandlerNotFound {
        /// The service.
        service: String,
        /// The missing handler.
        handler: String,
    },
    /// The path does not fit the service's type, e.g. an object without a key (400).
    #[error("{BAD_PATH}")]
    BadPath,
    /// The path fits no ingress route (404).
    #[error("no ingress route for '{0}'")]
    NoRoute(String),
    /// The `/restate/...` lookup path is malformed (400).
    #[error("bad path '{path}', expected {expected}")]
    BadLookupPath {
        /// The request path.
        path: String,
        /// The accepted shapes.
        expected: &'static str,
    },
    /// The service or the handler is not exposed to ingress, only to other services (403).
    #[error("the handler '{service}/{handler}' is private: only other services may call it")]
    Private {
        /// The service.
        service: String,
        /// The handler.
        handler: String,
    },
    /// A workflow route names a service that is not a workflow (400).
    #[error("service '{0}' is not a workflow")]
    NotAWorkflow(String),
    /// The method is not served on this path (405).
    #[error("method {method} is not allowed here, use {allowed}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The methods the path serves, as in the `allow` header.
        allowed: &'static str,
    },
    /// The body's content type is not the handler's input type (400).
    #[error("input validation error: Content-type '{got}' does not match '{expected}'")]
    ContentType {
        /// The request's content type.
        got: String,
        /// The handler's input content type.
        expected: String,
    },
    /// A body was sent without a content type (400).
    #[error("input validation error: missing content-type, expected '{0}'")]
    MissingContentType(String),
    /// The body of a JSON handler is not JSON (400).
    #[error("input validation error: the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body exceeds the configured limit (413).
    #[error("the request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Requests in flight already hold the node's budget of body bytes (503, retry later).
    #[error("the node holds its limit of {0} bytes of request bodies in flight; retry later")]
    Busy(usize),
    /// Reading the body failed, e.g. the client broke the chunked encoding (400).
    #[error("failed to read the request body: {0}")]
    Body(String),
    /// `?delay=` on a request-response call (400, Restate's message).
    #[error(
        "cannot use the delay query parameter with calls. The delay is supported only with sends"
    )]
    DelayWithCall,
    /// `?delay=` is not a duration (400).
    #[error("bad delay query parameter '{raw}': {reason}")]
    BadDelay {
        /// The parameter as sent.
        raw: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The invocation id in the path is malformed (400); holds the parser's explanation.
    #[error("{0}")]
    BadInvocationId(String),
    /// The awakeable id in the path is malformed (400); holds the parser's explanation.
    #[error("{0}")]
    BadAwakeableId(String),
    /// A rejection's reason is not UTF-8 text (400).
    #[error("the reason of an awakeable rejection must be UTF-8 text")]
    BadReason,
    /// The `idempotency-key` header is empty or not UTF-8 (400).
    #[error("the idempotency-key header must be a non-empty UTF-8 string")]
    BadIdempotencyKey,
    /// The kernel did not produce an outcome.
    #[error("{0}")]
    Dispatch(#[from] DispatchError),
}

impl Rejection {
    /// The HTTP status this rejection is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::ServiceNotFound(_) | Self::HandlerNotFound { .. } | Self::NoRoute(_) => 404,
            Self::Private { .. } => 403,
            Self::MethodNotAllowed { .. } => 405,
            Self::TooLarge(_) => 413,
            Self::Busy(_) => 503,
            Self::BadPath
            | Self::BadLookupPath { .. }
            | Self::NotAWorkflow(_)
            | Self::ContentType { .. }
            | Self::MissingContentType(_)
            | Self::InvalidJson(_)
            | Self::Body(_)
            | Self::DelayWithCall
            | Self::BadDelay { .. }
            | Self::BadInvocationId(_)
            | Self::BadAwakeableId(_)
            | Self::BadReason
            | Self::BadIdempotencyKey => 400,
            Self::Dispatch(error) => error.status(),
        }
    }
}
