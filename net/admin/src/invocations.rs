//! Invocation control: `PATCH /invocations/{id}/cancel|kill|purge|pause|resume`, answered the
//! way Restate's admin API answers them.
//!
//! ```text
//!   PATCH /invocations/{id}/{action}[?deployment=latest|keep|dp_…]
//!     ──► parse id (400) ──► id.partition(count) ──► Control to the owning PartitionActor
//!     ◄── 200/202 empty ◄── committed (or nothing to do)
//!     ◄── 404 unknown id, 409 the invocation's state forbids it, 503 partition unavailable
//! ```
//!
//! | action | done | nothing to do | refused |
//! |---|---|---|---|
//! | cancel | 202 | — | 409 completed |
//! | kill | 200 | — | 409 completed |
//! | purge | 200 | — | 409 not completed |
//! | pause | 202 | 200 already paused | 409 inboxed or completed |
//! | resume | 200 | 200 running | 409 inboxed or completed, or running with `deployment` |

use crate::{ApiError, Kernel};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use holdfast_partition::{
    Answer, ControlError, ControlRequest, Controlled, DeploymentChoice, ProposeError, Refusal,
    Request,
};
use holdfast_types::InvocationId;
use serde::Deserialize;

/// The query of `PATCH /invocations/{id}/resume`.
#[derive(Deserialize)]
pub(crate) struct ResumeQuery {
    /// `keep` (the default), `latest`, or a deployment id.
    deployment: Option<String>,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ApiError::new(code, message))
}

/// Why a request was refused before it reached a partition.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    /// `?deployment=` is none of `latest`, `keep` or a deployment id.
    #[error("bad deployment '{text}': {reason} (expected latest, keep or a dp_ id)")]
    Deployment { text: String, reason: String },
    /// The last path segment names no action.
    #[error("no invocation action '{0}': expected cancel, kill, purge, pause or resume")]
    Action(String),
}

impl Invalid {
    fn response(&self) -> HttpResponse {
        match self {
            Invalid::Deployment { .. } => error(
                StatusCode::BAD_REQUEST,
                "invalid_deployment",
                self.to_string(),
            ),
            Invalid::Action(_) => error(StatusCode::NOT_FOUND, "not_found", self.to_string()),
        }
    }
}

/// The deployment choice named by `?deployment=`.
fn deployment_choice(value: Option<&str>) -> Result<DeploymentChoice, Invalid> {
    match value.map(str::trim) {
        None | Some("keep") => Ok(DeploymentChoice::Keep),
        Some("latest") => Ok(DeploymentChoice::Latest),
        Some(text) => text.parse().map(DeploymentChoice::Id).map_err(
            |e: holdfast_schema::ParseDeploymentIdError| Invalid::Deployment {
                text: text.to_owned(),
                reason: e.to_string(),
            },
        ),
    }
}

/// The request an action path segment names.
fn request_of(action: &str, query: &ResumeQuery) -> Result<ControlRequest, Invalid> {
    Ok(match action {
        "cancel" => ControlRequest::Cancel,
        "kill" => ControlRequest::Kill,
        "purge" => ControlRequest::Purge,
        "pause" => ControlRequest::Pause,
        "resume" => ControlRequest::Resume {
            deployment: deployment_choice(query.deployment.as_deref())?,
        },
        other => return Err(Invalid::Action(other.to_owned())),
    })
}

/// The status answering a carried-out request: Restate's, per action.
fn done(request: ControlRequest, controlled: Controlled) -> StatusCode {
    match (request, controlled) {
        (ControlRequest::Cancel, _) => StatusCode::ACCEPTED,
        (ControlRequest::Pause, Controlled::Applied) => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    }
}

fn refused(id: &str, refusal: Refusal) -> HttpResponse {
    let (status, code) = match refusal {
        Refusal::NotFound => (StatusCode::NOT_FOUND, "invocation_not_found"),
        Refusal::Completed => (StatusCode::CONFLICT, "invocation_completed"),
        Refusal::NotCompleted => (StatusCode::CONFLICT, "invocation_not_completed"),
        Refusal::NotStarted => (StatusCode::CONFLICT, "invocation_not_started"),
        Refusal::Running => (StatusCode::CONFLICT, "invocation_running"),
    };
    error(status, code, format!("invocation {id}: {refusal}"))
}

fn failed(id: &str, failure: ControlError) -> HttpResponse {
    match failure {
        ControlError::Refused(refusal) => refused(id, refusal),
        ControlError::UnknownDeployment(_) => error(
            StatusCode::BAD_REQUEST,
            "deployment_not_found",
            failure.to_string(),
        ),
        ControlError::NotServed { .. } => error(
            StatusCode::CONFLICT,
            "deployment_incompatible",
            failure.to_string(),
        ),
        ControlError::Propose(ProposeError::Storage { .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "partition_failed",
            failure.to_string(),
        ),
        ControlError::Propose(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition_unavailable",
            failure.to_string(),
        ),
    }
}

/// `PATCH /invocations/{id}/{action}`.
pub(crate) async fn control(
    kernel: web::Data<Kernel>,
    path: web::Path<(String, String)>,
    query: web::Query<ResumeQuery>,
) -> HttpResponse {
    let (text, action) = path.into_inner();
    let id: InvocationId = match text.parse() {
        Ok(id) => id,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_invocation_id",
                e.to_string(),
            );
        }
    };
    let request = match request_of(&action, &query) {
        Ok(request) => request,
        Err(invalid) => return invalid.response(),
    };
    // Carried out by the partition's leader, on whichever node it runs.
    let partition = id.partition(kernel.router.partitions());
    match kernel
        .router
        .ask(partition, Request::Control { id, request })
        .await
    {
        Ok(Answer::Controlled(controlled)) => {
            HttpResponse::build(done(request, controlled)).finish()
        }
        Ok(Answer::ControlRefused(failure)) => failed(&text, failure),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_outcome",
            format!("partition {partition} answered {other:?}"),
        ),
        Err(e) => failed(&text, ControlError::Propose(e)),
    }
}
