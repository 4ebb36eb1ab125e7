//! `POST /services/{service}/state`: an operator replaces the whole state of one virtual object
//! or workflow key — `{"object_key": "k", "new_state": {"name": [byte, …]}, "version": …}` — as
//! Restate's admin API takes it. The edit is carried out by the key's partition leader and is
//! refused (409 `object_locked`) while an invocation holds the object's lock, so a running handler
//! never has its state changed under it. `version` is the state's version as Restate's CLI
//! computes it ([`holdfast_types::state_version`]) when it read the state the edit is based on:
//! the partition compares it with the current state's when the edit applies, and refuses the edit
//! (409 `state_version_mismatch`, nothing changed) if the state changed since. `null` or absent:
//! the edit is forced, whatever the state.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use holdfast_partition::{Answer, EditStateError, ProposeError, Request};
use holdfast_protocol::manifest::ServiceType;
use holdfast_types::{ObjectKey, StateEntry, routing};
use serde::Deserialize;

use crate::{ApiError, Kernel};

/// The body of `POST /services/{service}/state`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditRequest {
    /// The version of the state the edit was based on: the edit is refused unless the object's
    /// state still has it. `None`: forced.
    #[serde(default)]
    version: Option<String>,
    /// The object's key.
    object_key: String,
    /// The new state: every entry's name and value bytes; absent entries are removed.
    new_state: BTreeMap<String, Vec<u8>>,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ApiError::new(code, message))
}

/// `POST /services/{service}/state`: 202 once the new state is durable.
pub(crate) async fn edit(
    kernel: web::Data<Kernel>,
    service: web::Path<String>,
    body: web::Json<EditRequest>,
) -> HttpResponse {
    let service = service.into_inner();
    let EditRequest {
        version,
        object_key,
        new_state,
    } = body.into_inner();
    let ty = kernel.registry.borrow().service(&service).map(|s| s.ty);
    match ty {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "service_not_found",
                format!("service {service} not found"),
            );
        }
        Some(ServiceType::Service) => {
            return error(
                StatusCode::BAD_REQUEST,
                "service_has_no_state",
                format!(
                    "service {service} is a plain service: only virtual objects and workflows keep state"
                ),
            );
        }
        Some(_) => {}
    }
    let object = ObjectKey::new(service, object_key);
    let entries = new_state
        .into_iter()
        .map(|(name, value)| StateEntry { name, value })
        .collect();
    let partition = routing::partition_of(&object, kernel.router.partitions());
    let shown = format!("{}/{}", object.service, object.key);
    match kernel
        .router
        .ask(
            partition,
            Request::EditState {
                object,
                entries,
                expected_version: version,
            },
        )
        .await
    {
        Ok(Answer::StateEdited) => HttpResponse::Accepted().finish(),
        Ok(Answer::StateRefused(refused)) => refusal(&shown, refused),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_outcome",
            format!("partition {partition} answered {other:?}"),
        ),
        Err(e) => refusal(&shown, EditStateError::Propose(e)),
    }
}

fn refusal(object: &str, refused: EditStateError) -> HttpResponse {
    let message = format!("state of {object}: {refused}");
    match refused {
        EditStateError::VersionMismatch(version) => error(
            StatusCode::CONFLICT,
            "state_version_mismatch",
            format!(
                "the state of {object} changed since version {version} was read; read it again"
            ),
        ),
        EditStateError::Locked(_) | EditStateError::Raced => {
            error(StatusCode::CONFLICT, "object_locked", message)
        }
        EditStateError::Propose(ProposeError::Storage { .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "partition_failed",
            message,
        ),
        EditStateError::Propose(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition_unavailable",
            message,
        ),
    }
}
