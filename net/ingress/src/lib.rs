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
//! # Layout
//! - [`dispatch`]: the seam — [`Dispatcher`], [`IngressRequest`], [`Outcome`], [`DispatchError`].
//! - [`error`]: [`Rejection`], each refusal with its status and message.
//! - `route`: the path grammar; `input`: body and header checks; `time`: timestamps as Restate
//!   renders them; `handler`: the actix handler tying them together. `?delay=` is parsed by
//!   [`holdfast_schema::duration`].

pub mod dispatch;
pub mod error;

mod handler;
mod input;
mod route;
mod time;

pub use dispatch::{
    AwakeableCompletion, DispatchError, Dispatcher, Failure, IngressRequest, InvocationRef, Mode,
    Outcome, Output, SendAccepted, SendStatus, Target,
};
pub use error::{BAD_PATH, Rejection};
pub use handler::{ERROR_SOURCE, IDEMPOTENCY_EXPIRES, IDEMPOTENCY_KEY, INVOCATION_ID};
pub use holdfast_schema::duration::DelayError;

use actix_web::dev::{Server, Service};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpServer, web};
use holdfast_schema::Registry;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use tokio::sync::watch;

/// Where ingress listens unless configured otherwise (Restate's ingress port).
pub const DEFAULT_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The newest registry version, published by whoever applies the metadata log; ingress reads it
/// once per request, so a registration is visible to the next request.
pub type RegistryView = watch::Receiver<Arc<Registry>>;

/// Ingress settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    /// Largest request body accepted; larger ones are answered 413 without being read.
    pub max_body_bytes: usize,
    /// actix worker threads serving ingress.
    pub workers: usize,
}

impl IngressConfig {
    /// The default body limit: 32 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
}

impl Default for IngressConfig {
    /// 32 MiB bodies, one worker.
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            workers: 1,
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
    let state = web::Data::new(handler::State {
        config,
        registry,
        dispatcher,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap_fn(|request, service| {
                let origin = request.headers().get(header::ORIGIN).cloned();
                let response = service.call(request);
                async move {
                    let mut response = response.await?;
                    add_cors_headers(response.headers_mut(), origin);
                    Ok(response)
                }
            })
            .default_service(web::to(handler::handle))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match bind {
        Bind::Address(address) => server.bind(address)?,
        Bind::Listener(listener) => server.listen(listener)?,
    };
    Ok(server.run())
}

/// The CORS headers Restate's ingress puts on every response, so browser clients work.
fn add_cors_headers(headers: &mut header::HeaderMap, origin: Option<HeaderValue>) {
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}
