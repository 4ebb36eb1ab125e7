//! Everything that can go wrong talking to a service endpoint, each naming the endpoint concerned so
//! that an operator reading a log line knows which deployment to look at.

use std::time::Duration;

use http::StatusCode;
use thiserror::Error as ThisError;

/// Why a discovery or an invocation attempt could not be carried out.
#[derive(Debug, ThisError)]
pub enum Error {
    /// The endpoint URI cannot be used: wrong scheme, no host, a query string, and so on.
    #[error("endpoint URI {uri} is not usable: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A service or handler name would not stay a single path segment.
    #[error(
        "{what} name {name:?} is not a plain path segment (letters, digits, '-', '.', '_', '~')"
    )]
    InvalidName {
        /// `service` or `handler`.
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// The journal handed to an attempt does not match its `start` message.
    #[error("invalid journal for an attempt: {0}")]
    InvalidJournal(String),
    /// A message to send could not be encoded.
    #[error("cannot encode a frame for {endpoint}: {source}")]
    Encode {
        /// The endpoint the frame was meant for.
        endpoint: String,
        /// The codec's reason.
        #[source]
        source: holdfast_protocol::Error,
    },
    /// The TCP connection could not be established.
    #[error("cannot connect to endpoint {endpoint}: {source}")]
    Connect {
        /// The endpoint's `scheme://host:port`.
        endpoint: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake with an `https://` endpoint failed: its certificate is not trusted or
    /// not for its host, or it does not offer HTTP/2.
    #[error("TLS with endpoint {endpoint} failed: {reason}")]
    Tls {
        /// The endpoint's `scheme://host:port`.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// Connecting (TCP and HTTP/2 preface) took longer than the configured limit.
    #[error("connecting to endpoint {endpoint} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The endpoint's `scheme://host:port`.
        endpoint: String,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// The HTTP/2 connection or stream failed (reset, GOAWAY, broken socket, handshake).
    #[error("HTTP/2 failure with endpoint {endpoint}: {source}")]
    Transport {
        /// The endpoint concerned.
        endpoint: String,
        /// The HTTP/2 error.
        #[source]
        source: h2::Error,
    },
    /// The endpoint answered with an unexpected status.
    #[error(
        "endpoint {endpoint} answered {path} with status {status}{}",
        detail_suffix(detail)
    )]
    Status {
        /// The endpoint concerned.
        endpoint: String,
        /// The request path.
        path: String,
        /// The status received.
        status: StatusCode,
        /// The start of the response body, when one was read (may be empty).
        detail: String,
    },
    /// The endpoint answered with a content type other than the protocol's.
    #[error(
        "endpoint {endpoint} answered {path} with content type {found:?}, expected {expected:?}"
    )]
    ContentType {
        /// The endpoint concerned.
        endpoint: String,
        /// The request path.
        path: String,
        /// The content type the protocol requires.
        expected: &'static str,
        /// The content type received, if any.
        found: Option<String>,
    },
    /// The discovery manifest is larger than the configured limit.
    #[error("manifest of endpoint {endpoint} exceeds the limit of {limit} bytes")]
    ManifestTooLarge {
        /// The endpoint concerned.
        endpoint: String,
        /// The configured limit.
        limit: usize,
    },
    /// The discovery manifest is not the JSON document the protocol describes.
    #[error("manifest of endpoint {endpoint} is malformed: {source}")]
    InvalidManifest {
        /// The endpoint concerned.
        endpoint: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The endpoint does not speak the protocol version the kernel implements.
    #[error(
        "endpoint {endpoint} speaks protocol versions {min}..={max}, which excludes the kernel's version {ours}"
    )]
    IncompatibleProtocol {
        /// The endpoint concerned.
        endpoint: String,
        /// Lowest version announced by the endpoint.
        min: u32,
        /// Highest version announced by the endpoint.
        max: u32,
        /// The version this kernel speaks.
        ours: u32,
    },
    /// Discovery did not finish within the configured limit.
    #[error("discovery of endpoint {endpoint} timed out after {timeout:?}")]
    DiscoveryTimeout {
        /// The endpoint concerned.
        endpoint: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The request side of the attempt is no longer open (closed, reset, or the attempt is over).
    #[error("the attempt at endpoint {endpoint} no longer accepts messages")]
    AttemptClosed {
        /// The endpoint concerned.
        endpoint: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}
