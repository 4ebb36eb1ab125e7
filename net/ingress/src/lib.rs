//! The ingress HTTP API (actix-web, `127.0.0.1:8080` by default): Restate's invocation paths, so
//! Restate's ingress clients and curl scripts work unchanged.
//!
//! ```text
//!  client ── POST /{Svc}/[{key}/]{handler}[/send] ──► classify path ──► registry: service, handler,
//!                                                     public? key fits the type?
//!                                                 ──► body: size limit, content type, JSON syntax
//!                                                 ──► Dispatcher::call | send ──► kernel (log)
//!        ◄── output bytes + x-restate-id | {"code","message","source"} | 202 {"invocationId","status"}
//!  client ── GET /restate/invocation/…/attach|output, /restate/workflow/…  ──► Dispatcher::attach | output
//!  client ── POST /restate/awakeables/{id}/resolve|reject ──► Dispatcher::complete_awakeable ──► 202
//!  client ── GET /restate/health ──► Dispatcher::health_services
//! ```
//!
//! Ingress decides nothing about execution: every request that passes validation goes to a
//! [`Dispatcher`], which the kernel implements; every request that fails it is answered with a JSON
//! error and never reaches the dispatcher, so nothing is written to the log for it.
//!
//! # Access
//! With bearer tokens configured ([`IngressConfig::auth`]) every request but
//! `GET /restate/health` needs `Authorization: Bearer <token>` and is answered 401 before routing
//! otherwise. CORS headers go only to the origins of [`IngressConfig::cors`] (none by default);
//! their preflights are answered without a token. See [`access`].
//!
//! # Layout
//! - [`access`]: [`access::BearerAuth`] (shared with the admin API) and [`access::Cors`].
//! - [`dispatch`]: the seam — [`Dispatcher`], [`IngressRequest`], [`Outcome`], [`DispatchError`].
//! - [`error`]: [`Rejection`], each refusal with its status and message.
//! - [`metrics`]: [`IngressMetrics`], every response counted by status code.
//! - `route`: the path grammar; `input`: body and header checks; `time`: timestamps as Restate
//!   renders them; `trace`: the ingress span and the `traceparent` it continues; `handler`: the
//!   actix handler tying them together. `?delay=` is parsed by [`holdfast_schema::duration`].
//!
//! # Telemetry
//! Every response is counted by status code in [`IngressConfig::metrics`], in a middleware, so
//! rejections and errors count too. Each invocation request (call or send) joins the trace of
//! its `traceparent` header (a malformed one is ignored) or starts a new one; its ingress span is
//! emitted to [`IngressConfig::spans`] when the response is produced, and the invocation is
//! handed the span's child context ([`IngressRequest::trace`]).

pub mod access;
pub mod dispatch;
pub mod error;
pub mod metrics;

mod handler;
mod input;
mod route;
mod time;
mod trace;

pub use dispatch::{
    AwakeableCompletion, DispatchError, Dispatcher, Failure, IngressRequest, InvocationRef, Mode,
    Outcome, Output, SendAccepted, SendStatus, Target,
};
pub use error::{BAD_PATH, Rejection};
pub use handler::{ERROR_SOURCE, IDEMPOTENCY_EXPIRES, IDEMPOTENCY_KEY, INVOCATION_ID};
pub use holdfast_schema::duration::DelayError;
pub use metrics::IngressMetrics;
pub use trace::TRACEPARENT;

use actix_web::dev::{Server, Service};
use actix_web::http::header;
use actix_web::{App, HttpServer, web};
use futures::future::Either;
use holdfast_schema::Registry;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use tokio::sync::watch;

/// Where ingress listens unless configured otherwise (Restate's ingress port).
pub const DEFAULT_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The newest registry version, published by whoever applies the metadata log; ingress reads it
/// once per request, so a registration is visible to the next request.
pub type RegistryView = watch::Receiver<Arc<Registry>>;

/// Ingress settings, and where it reports what it served.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Largest request body accepted; larger ones are answered 413 without being read.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once by requests in flight, node-wide; beyond it new
    /// requests are answered 503 with `Retry-After` (one request is always admitted).
    pub max_inflight_bytes: usize,
    /// actix worker threads serving ingress.
    pub workers: usize,
    /// Counts every response by status code; share a clone with whoever renders `/metrics`.
    pub metrics: IngressMetrics,
    /// Receives the ingress span of each invocation request; disabled by default.
    pub spans: holdfast_otlp::SpanSink,
    /// Bearer tokens every request but `/restate/health` must carry; none by default.
    pub auth: access::BearerAuth,
    /// Origins that get CORS headers and preflight answers; none by default.
    pub cors: access::Cors,
    /// With a TLS configuration the listener speaks HTTPS (HTTP/2 or HTTP/1.1 by ALPN) only.
    pub tls: Option<holdfast_tls::ServerConfig>,
}

impl IngressConfig {
    /// The default body limit: 32 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
}

impl Default for IngressConfig {
    /// 32 MiB bodies, 256 MiB of them in flight, one worker, fresh counters, no tracing, no
    /// tokens, no CORS origins.
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_inflight_bytes: 8 * Self::DEFAULT_MAX_BODY_BYTES,
            workers: 1,
            metrics: IngressMetrics::new(),
            spans: holdfast_otlp::SpanSink::disabled(),
            auth: access::BearerAuth::default(),
            cors: access::Cors::default(),
            tls: None,
        }
    }
}

/// Where the server gets its socket.
enum Bind {
    Address(SocketAddr),
    Listener(TcpListener),
}

/// Binds ingress on `address` and returns the server to be awaited or stopped.
pub fn serve(
    address: SocketAddr,
    config: IngressConfig,
    registry: RegistryView,
    dispatcher: Arc<dyn Dispatcher>,
) -> std::io::Result<Server> {
    build(Bind::Address(address), config, registry, dispatcher)
}

/// Serves ingress on an already bound listener (e.g. port 0 in tests, or a socket handed over).
pub fn serve_on(
    listener: TcpListener,
    config: IngressConfig,
    registry: RegistryView,
    dispatcher: Arc<dyn Dispatcher>,
) -> std::io::Result<Server> {
    build(Bind::Listener(listener), config, registry, dispatcher)
}

fn build(
    bind: Bind,
    config: IngressConfig,
    registry: RegistryView,
    dispatcher: Arc<dyn Dispatcher>,
) -> std::io::Result<Server> {
    let workers = config.workers.max(1);
    let metrics = config.metrics.clone();
    let auth = config.auth.clone();
    let cors = config.cors.clone();
    let tls = config.tls.clone();
    let state = web::Data::new(handler::State {
        inflight: input::Budget::new(config.max_inflight_bytes),
        config,
        registry,
        dispatcher,
    });
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        let auth = auth.clone();
        let cors = cors.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |request, service| {
                let allowed = cors.allow_origin(request.headers().get(header::ORIGIN));
                // A preflight from an allowed origin carries no token; everything else but the
                // health check must.
                let early = cors
                    .preflight(request.method(), request.headers())
                    .or_else(|| {
                        (request.path() != "/restate/health" && !auth.permits(request.headers()))
                            .then(|| access::unauthorized(request.headers()))
                    });
                let response = match early {
                    Some(answer) => {
                        Either::Left(std::future::ready(Ok(request.into_response(answer))))
                    }
                    None => Either::Right(service.call(request)),
                };
                let metrics = metrics.clone();
                let cors = cors.clone();
                async move {
                    let mut response = match response.await {
                        Ok(response) => response,
                        Err(error) => {
                            // actix answers an error with its status; count that answer too.
                            metrics.record(error.as_response_error().status_code().as_u16());
                            return Err(error);
                        }
                    };
                    metrics.record(response.status().as_u16());
                    if let Some(allowed) = allowed
                        && !response
                            .headers()
                            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                    {
                        cors.decorate(response.headers_mut(), allowed);
                    }
                    Ok(response)
                }
            })
            .default_service(web::to(handler::handle))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match (bind, tls) {
        (Bind::Address(address), None) => server.bind(address)?,
        (Bind::Address(address), Some(tls)) => server.bind_rustls_0_23(address, tls)?,
        (Bind::Listener(listener), None) => server.listen(listener)?,
        (Bind::Listener(listener), Some(tls)) => server.listen_rustls_0_23(listener, tls)?,
    };
    Ok(server.run())
}
