//! The kernel's client for service endpoints: discovery and streaming invocation attempts over
//! HTTP/2 cleartext with prior knowledge (`docs/protocol.md`, sections 1 and 2).
//!
//! The invoker holds one [`EndpointClient`]. Every attempt to an endpoint is one HTTP/2 stream on a
//! single shared connection per endpoint authority; a connection that dies is replaced on next use.
//!
//! ```text
//!  invoker                      EndpointClient                     endpoint (SDK)
//!    | start_attempt(start, journal) -> POST /invoke/S/h ----------------> |
//!    | AttemptSender: completion / ack / close -> request DATA ----------> |
//!    | Attempt::next() <- Event <- decoder <- response DATA <------------- |
//! ```
//!
//! # Layout
//! - [`client`]: [`EndpointClient`] and its [`ClientConfig`]: discovery and starting attempts.
//! - [`attempt`]: [`Attempt`], [`AttemptSender`] and [`Event`]: one attempt's two directions.
//! - [`identity`]: [`RequestSigner`]: Restate's request identity `v1`, signing every request.
//! - `discover`: `GET /discover`, bounded, with content type and version checks.
//! - `pool`: one shared HTTP/2 connection per authority, reconnecting when it dies.
//! - `target`: validating base URIs and building request URIs.
//! - [`Error`]: everything that can go wrong, each naming the endpoint.

#![warn(missing_docs)]

pub mod attempt;
pub mod client;
pub mod identity;

mod discover;
mod error;
mod pool;
mod target;

pub use attempt::{Attempt, AttemptSender, Event};
pub use client::{ClientConfig, EndpointClient};
pub use error::Error;
pub use identity::{KeyError, RequestSigner};
pub use pool::{BoxedTask, ConnectionHome};
