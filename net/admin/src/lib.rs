//! The admin HTTP API (actix-web, `127.0.0.1:9070` by default): health and Prometheus metrics,
//! answered by asking every partition actor for its status.
//!
//! ```text
//!   GET /health  ──► GetStatus to each PartitionActor ──► JSON: node id, per-partition role
//!   GET /metrics ──► GetStatus to each PartitionActor ──► Prometheus text exposition
//! ```

mod prometheus;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use holdfast_partition::{GetStatus, PartitionActor, PartitionStatus};
use holdfast_types::{NodeId, PartitionId};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a status request waits for a busy partition before reporting it unavailable.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// What the admin handlers need: this node's id and the partitions it runs.
#[derive(Clone)]
pub struct Kernel {
    /// This node's id.
    pub node: NodeId,
    /// The partition actors, indexed by partition id.
    pub partitions: Vec<(PartitionId, Addr<PartitionActor>)>,
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
    partitions: Vec<PartitionHealth>,
}

/// A JSON error body, `{"code": …, "message": …}`, as every API error is shaped.
#[derive(Serialize)]
struct ApiError {
    code: u16,
    message: String,
}

async fn statuses(kernel: &Kernel) -> Vec<(PartitionId, Option<PartitionStatus>)> {
    let asks = kernel.partitions.iter().map(|(id, addr)| async move {
        (*id, addr.send(GetStatus).timeout(STATUS_TIMEOUT).await.ok())
    });
    futures::future::join_all(asks).await
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
    let all_ok = partitions.iter().all(|p| p.status == "ok");
    HttpResponse::Ok().json(Health {
        node_id: kernel.node,
        status: if all_ok { "ok" } else { "degraded" },
        partitions,
    })
}

async fn metrics(kernel: web::Data<Kernel>) -> HttpResponse {
    let known: Vec<PartitionStatus> = statuses(&kernel)
        .await
        .into_iter()
        .filter_map(|(_, status)| status)
        .collect();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(prometheus::render(kernel.node, &known))
}

async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(ApiError {
        code: 404,
        message: format!("no admin route for {} {}", request.method(), request.path()),
    })
}

/// Binds the admin API on `address` and returns the server to be awaited or stopped.
pub fn serve(address: SocketAddr, kernel: Kernel) -> std::io::Result<Server> {
    let data = web::Data::new(kernel);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(address)?
    .run();
    Ok(server)
}
