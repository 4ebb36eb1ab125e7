//! The admin HTTP API (actix-web, `127.0.0.1:9070` by default): health and Prometheus metrics,
//! answered by asking every partition actor for its status.
//!
//! ```text
//!   GET /health  ──► GetStatus to the MetadataActor and each PartitionActor ──► JSON roles
//!   GET /metrics ──► GetStatus to each PartitionActor, ingress counters, span pipeline counters
//!   GET /cluster ──► members, connections and each local partition's leader, term and replicas
//!                ──► Prometheus text exposition (docs/metrics.md lists every metric)
//!   POST /deployments ──► discovery (EndpointClient) ──► ChangeRegistry to the MetadataActor
//!   GET /deployments[/{id}], /services[/{name}] ──► the published Registry
//!   PATCH /services/{name} ──► ChangeRegistry (ModifyService) to the MetadataActor
//!   POST /query ──► QueryEngine (DataFusion over the partition stores) ──► JSON rows or a table
//!   PATCH /invocations/{id}/cancel|kill|purge|pause|resume ──► Control to the owning partition
//!   GET /ui, /ui/{file} ──► the web UI's embedded files, which call the routes above
//!   POST /services/{name}/state ──► EditState to the key's partition (refused while locked)
//!   POST/GET/PATCH/DELETE /schedules[/{name}] ──► ChangeRegistry (PutSchedule, RemoveSchedule)
//!   POST/GET/PATCH/DELETE /limits[/{name}]    ──► ChangeRegistry (PutLimit, RemoveLimit)
//!   GET /version ──► what this API speaks; every route above is also served under /v4
//! ```
//!
//! With bearer tokens configured ([`AdminAccess::auth`]) every request but `GET /health` and the
//! UI's files (no data in them) needs
//! `Authorization: Bearer <token>` (401 otherwise); with a deployment allowlist
//! ([`AdminAccess::deployment_allowlist`]) `POST /deployments` refuses endpoints on other hosts.

mod cluster;
mod deployments;
mod invocations;
mod limits;
mod prometheus;
mod query;
mod schedules;
mod state;
mod ui;

pub use cluster::ClusterInfo;

use actix::Addr;
use actix_web::dev::{Server, Service};
use actix_web::{App, HttpResponse, HttpServer, web};
use holdfast_endpoint::EndpointClient;
use holdfast_metadata::{MetadataActor, MetadataStatus};
use holdfast_partition::{GetStatus, PartitionActor, PartitionStatus};
use holdfast_schema::Registry;
use holdfast_types::{NodeId, PartitionId};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a status request waits for a busy partition before reporting it unavailable.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// What the admin handlers need from the running node.
#[derive(Clone)]
pub struct Kernel {
    /// This node's id.
    pub node: NodeId,
    /// The partition actors, indexed by partition id.
    pub partitions: Vec<(PartitionId, Addr<PartitionActor>)>,
    /// The metadata log, through which deployments are registered.
    pub metadata: Addr<MetadataActor>,
    /// The newest applied registry of deployments and services.
    pub registry: watch::Receiver<Arc<Registry>>,
    /// The client that runs discovery against service endpoints.
    pub endpoints: EndpointClient,
    /// The node's `[invocation]` settings, shown where a service declares none of its own.
    pub attempt_defaults: holdfast_schema::AttemptPolicy,
    /// SQL over the partition stores and the registry, for `POST /query`.
    pub query: holdfast_introspection::QueryEngine,
    /// Ingress responses by status code, shared with the ingress server, for `/metrics`.
    pub ingress_metrics: holdfast_ingress::IngressMetrics,
    /// The span sink the node emits into; `/metrics` shows its pipeline counters.
    pub spans: holdfast_otlp::SpanSink,
    /// The cluster's members and this node's connections to them, for `GET /cluster`.
    pub cluster: ClusterInfo,
    /// The way to every partition's leader, for operator requests about invocations.
    pub router: holdfast_partition::Router,
    /// The node's raft-log file, whose writer's counters `/metrics` shows.
    pub log: holdfast_raft_store::SharedLog,
    /// The ingress's base URL (`http://127.0.0.1:8080/`), shown by `GET /version`.
    pub ingress_endpoint: Option<String>,
    /// Where a trace is viewed (`[tracing] trace_url`, with `{trace_id}`), shown by
    /// `GET /version` so the web UI links trace ids there.
    pub trace_url: Option<String>,
}

/// Who may use the admin API, and which endpoints it may register.
#[derive(Debug, Clone, Default)]
pub struct AdminAccess {
    /// Bearer tokens every request but `GET /health` must carry; none: the API is open.
    pub auth: holdfast_ingress::access::BearerAuth,
    /// The networks and hosts `POST /deployments` may register endpoints on; empty: any.
    pub deployment_allowlist: Vec<holdfast_config::HostPattern>,
}

/// A partition's entry in `/health`.
#[derive(Serialize)]
struct PartitionHealth {
    id: PartitionId,
    status: &'static str,
    leader: Option<NodeId>,
    term: Option<u64>,
    applied_index: Option<u64>,
}

/// The `/health` response body.
#[derive(Serialize)]
struct Health {
    node_id: NodeId,
    status: &'static str,
    metadata: Option<MetadataStatus>,
    partitions: Vec<PartitionHealth>,
}

/// A JSON error body, `{"code": …, "message": …}`, as every API error is shaped; the code is a
/// stable name a script can match on.
#[derive(Serialize)]
struct ApiError {
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

async fn statuses(kernel: &Kernel) -> Vec<(PartitionId, Option<PartitionStatus>)> {
    let asks = kernel.partitions.iter().map(|(id, addr)| async move {
        (*id, addr.send(GetStatus).timeout(STATUS_TIMEOUT).await.ok())
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        // Partitions this node holds no replica of have nothing to report.
        .filter(|(_, status)| status.as_ref().is_none_or(|s| s.hosted))
        .collect()
}

async fn health(kernel: web::Data<Kernel>) -> HttpResponse {
    let partitions: Vec<PartitionHealth> = statuses(&kernel)
        .await
        .into_iter()
        .map(|(id, status)| match status {
            Some(s) => PartitionHealth {
                id,
                status: if s.leader.is_some() {
                    "ok"
                } else {
                    "no-leader"
                },
                leader: s.leader,
                term: Some(s.term.0),
                applied_index: Some(s.applied_index.0),
            },
            None => PartitionHealth {
                id,
                status: "unavailable",
                leader: None,
                term: None,
                applied_index: None,
            },
        })
        .collect();
    let metadata = kernel
        .metadata
        .send(holdfast_metadata::GetStatus)
        .timeout(STATUS_TIMEOUT)
        .await
        .ok();
    let all_ok = partitions.iter().all(|p| p.status == "ok")
        && metadata.as_ref().is_some_and(|m| m.leader.is_some());
    HttpResponse::Ok().json(Health {
        node_id: kernel.node,
        status: if all_ok { "ok" } else { "degraded" },
        metadata,
        partitions,
    })
}

async fn metrics(kernel: web::Data<Kernel>) -> HttpResponse {
    let known: Vec<PartitionStatus> = statuses(&kernel)
        .await
        .into_iter()
        .filter_map(|(_, status)| status)
        .collect();
    let ingress = kernel.ingress_metrics.snapshot();
    let page = prometheus::render(&prometheus::Scrape {
        node: kernel.node,
        statuses: &known,
        ingress: &ingress,
        traces: kernel.spans.stats(),
        log: kernel.log.stats(),
    });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(page)
}

async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(ApiError::new(
        "not_found",
        format!("no admin route for {} {}", request.method(), request.path()),
    ))
}

/// Binds the admin API on `address`, open to everyone, and returns the server to be awaited or
/// stopped.
pub fn serve(address: SocketAddr, kernel: Kernel) -> std::io::Result<Server> {
    serve_with(address, kernel, AdminAccess::default(), None)
}

/// The versioned path prefix the API is also served under; clients that ask `GET /version` use
/// it. Version 4 has the same routes and shapes as the unprefixed paths.
const API_PREFIX: &str = "/v4";

/// `GET /version`: what this admin API is and speaks.
async fn version(kernel: web::Data<Kernel>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "min_admin_api_version": 4,
        "max_admin_api_version": 4,
        "ingress_endpoint": kernel.ingress_endpoint,
        "features": {},
        "trace_url": kernel.trace_url,
    }))
}

/// Every API route, served at the root and under [`API_PREFIX`].
fn api(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/cluster", web::get().to(cluster::view))
        .route("/cluster/nodes", web::post().to(cluster::add))
        .route("/cluster/nodes/{id}", web::delete().to(cluster::remove))
        .route("/deployments", web::post().to(deployments::register))
        .route("/deployments", web::get().to(deployments::list))
        .route("/deployments/{id}", web::get().to(deployments::get))
        .route("/deployments/{id}", web::delete().to(deployments::remove))
        .route("/services", web::get().to(deployments::services))
        .route("/services/{name}", web::get().to(deployments::service))
        .route("/services/{name}", web::patch().to(deployments::modify))
        .route("/services/{name}/state", web::post().to(state::edit))
        .route("/schedules", web::post().to(schedules::create))
        .route("/schedules", web::get().to(schedules::list))
        .route("/schedules/{name}", web::get().to(schedules::get))
        .route("/schedules/{name}", web::patch().to(schedules::modify))
        .route("/schedules/{name}", web::delete().to(schedules::remove))
        .route("/limits", web::post().to(limits::create))
        .route("/limits", web::get().to(limits::list))
        .route("/limits/{name}", web::get().to(limits::get))
        .route("/limits/{name}", web::patch().to(limits::modify))
        .route("/limits/{name}", web::delete().to(limits::remove))
        .route("/query", web::post().to(query::query))
        .route(
            "/invocations/{id}/{action}",
            web::patch().to(invocations::control),
        );
}

/// Binds the admin API on `address` with the given tokens and allowlist, over HTTPS when `tls`
/// is given, and returns the server to be awaited or stopped.
pub fn serve_with(
    address: SocketAddr,
    kernel: Kernel,
    access: AdminAccess,
    tls: Option<holdfast_tls::ServerConfig>,
) -> std::io::Result<Server> {
    let data = web::Data::new(kernel);
    let access = web::Data::new(access);
    let server = HttpServer::new(move || {
        let gate = access.clone();
        App::new()
            .app_data(data.clone())
            .app_data(access.clone())
            .wrap_fn(move |request, service| {
                let path = request.path();
                let open = matches!(path, "/health" | "/version")
                    || path.strip_prefix(API_PREFIX) == Some("/health")
                    || ui::is_public(request.method(), path);
                let refused = (!open && !gate.auth.permits(request.headers()))
                    .then(|| holdfast_ingress::access::unauthorized(request.headers()));
                match refused {
                    Some(answer) => futures::future::Either::Left(std::future::ready(Ok(
                        request.into_response(answer)
                    ))),
                    None => futures::future::Either::Right(service.call(request)),
                }
            })
            .route("/version", web::get().to(version))
            .configure(api)
            .service(web::scope(API_PREFIX).configure(api))
            .configure(ui::routes)
            .app_data(web::JsonConfig::default().error_handler(|error, _| {
                let message = error.to_string();
                actix_web::error::InternalError::from_response(
                    error,
                    HttpResponse::BadRequest().json(ApiError::new("invalid_body", message)),
                )
                .into()
            }))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(address, tls)?,
        None => server.bind(address)?,
    };
    Ok(server.run())
}
