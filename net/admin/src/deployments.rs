//! `/deployments` and `/services`: registering endpoints through the metadata log and reading the
//! registry it publishes.
//!
//! Registration runs discovery against the endpoint, checks the change against the current
//! registry (so a conflict is refused before anything is written), then proposes it; the answer
//! is what applying the committed command did.

use crate::{AdminAccess, ApiError, Kernel};
use actix_web::{HttpResponse, web};
use holdfast_metadata::ChangeRegistry;
use holdfast_schema::{
    Applied, DeploymentId, Millis, Refusal, RegistryCommand, ServicePatch, Timestamp, views,
};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The body of `POST /deployments`; other fields clients send (`breaking`, `use_http_11`,
/// `additional_headers`) are ignored.
#[derive(Deserialize)]
pub(crate) struct RegisterRequest {
    uri: String,
    #[serde(default)]
    force: bool,
    /// Discover and check, answer what registering would do, and write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// The query of `DELETE /deployments/{id}`.
#[derive(Deserialize)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

pub(crate) fn refused(refusal: &Refusal) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(refusal.http_status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(views::error(refusal))
}

pub(crate) fn metadata_error(error: holdfast_metadata::Error) -> HttpResponse {
    let status = match error {
        holdfast_metadata::Error::Failed(_) => actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        _ => actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpResponse::build(status).json(ApiError::new("metadata_unavailable", error.to_string()))
}

/// A fresh 128-bit seed for a deployment id; ids must not repeat, they need not be secret.
fn seed() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    u128::from_le_bytes(bytes) ^ now
}

/// Checks `command` against the registry, proposes it to the metadata log and returns what it
/// did, or the error response (a refusal, or the metadata log unavailable).
pub(crate) async fn propose(
    kernel: &crate::Kernel,
    command: holdfast_schema::RegistryCommand,
) -> Result<holdfast_schema::Applied, HttpResponse> {
    if let Err(refusal) = kernel.registry.borrow().check(&command) {
        return Err(refused(&refusal));
    }
    match kernel
        .metadata
        .send(holdfast_metadata::ChangeRegistry(command))
        .await
    {
        Ok(Ok(Ok(applied))) => Ok(applied),
        Ok(Ok(Err(refusal))) => Err(refused(&refusal)),
        Ok(Err(e)) => Err(metadata_error(e)),
        Err(e) => Err(metadata_error(holdfast_metadata::Error::Unavailable(
            e.to_string(),
        ))),
    }
}

pub(crate) fn now_ms() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Normalises an endpoint uri so that the same endpoint is always written the same way.
fn normalise(uri: &str) -> Result<(String, http::Uri), String> {
    let parsed: http::Uri = uri
        .trim()
        .parse()
        .map_err(|e| format!("`{uri}` is not a valid uri: {e}"))?;
    let scheme = match parsed.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => {
            return Err(format!(
                "`{uri}`: the endpoint must be http:// (HTTP/2 without TLS) or https:// (HTTP/2 \
                 over TLS)"
            ));
        }
    };
    let Some(authority) = parsed.authority() else {
        return Err(format!("`{uri}` has no host"));
    };
    let path = parsed.path().trim_end_matches('/');
    let text = format!("{scheme}://{authority}{path}/");
    let parsed = text.parse().map_err(|e| format!("`{uri}`: {e}"))?;
    Ok((text, parsed))
}

/// Most characters of a failed discovery's description echoed to the caller: enough to tell
/// what went wrong, too few to turn registration into a way of reading other hosts' pages.
const EXCERPT_CHARS: usize = 200;

/// `text` cut to [`EXCERPT_CHARS`] printable characters (others become spaces, runs of
/// whitespace one space), with `…` when something was cut.
fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        if count == EXCERPT_CHARS {
            out.push('…');
            return out;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out
}

/// Whether the allowlist lets registration reach `uri`'s host (an empty list allows any).
fn allowed(access: &AdminAccess, uri: &http::Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    access.deployment_allowlist.is_empty()
        || access
            .deployment_allowlist
            .iter()
            .any(|pattern| pattern.matches(host))
}

/// The answer a registration would get, computed on a copy of the registry: nothing is written
/// (the id shown for a new deployment is the copy's, not the one a real registration gets).
fn preview(kernel: &Kernel, command: &RegistryCommand) -> HttpResponse {
    let mut registry = (**kernel.registry.borrow()).clone();
    match registry.apply(command) {
        Ok(Applied::Registered(id)) => answer(&registry, id, true, &kernel.attempt_defaults),
        Ok(Applied::AlreadyRegistered(id)) => {
            answer(&registry, id, false, &kernel.attempt_defaults)
        }
        Ok(other) => HttpResponse::InternalServerError().json(ApiError::new(
            "unexpected_outcome",
            format!("registration would apply as {other:?}"),
        )),
        Err(refusal) => refused(&refusal),
    }
}

/// 201 with a new deployment's registration (and its location), 200 with an existing one's.
fn answer(
    registry: &holdfast_schema::Registry,
    id: DeploymentId,
    created: bool,
    defaults: &holdfast_schema::AttemptPolicy,
) -> HttpResponse {
    let Some(deployment) = registry.deployment(&id) else {
        return HttpResponse::InternalServerError().json(ApiError::new(
            "unexpected_outcome",
            format!("{id} not in the registry"),
        ));
    };
    let body = views::registration(deployment, defaults);
    if created {
        HttpResponse::Created()
            .insert_header(("location", format!("deployments/{id}")))
            .json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

pub(crate) async fn register(
    kernel: web::Data<Kernel>,
    access: web::Data<AdminAccess>,
    body: web::Json<RegisterRequest>,
) -> HttpResponse {
    let (uri, parsed) = match normalise(&body.uri) {
        Ok(uri) => uri,
        Err(message) => {
            return HttpResponse::BadRequest()
                .json(ApiError::new("invalid_uri", excerpt(&message)));
        }
    };
    if !allowed(&access, &parsed) {
        return HttpResponse::Forbidden().json(ApiError::new(
            "deployment_not_allowed",
            format!(
                "{uri}: host `{}` is not in `admin.deployment_allowlist`",
                parsed.host().unwrap_or_default()
            ),
        ));
    }
    let manifest = match kernel.endpoints.discover(&parsed).await {
        Ok(manifest) => manifest,
        Err(e) => {
            tracing::info!(%uri, error = %e, "discovery failed");
            return HttpResponse::BadRequest().json(ApiError::new(
                "discovery_failed",
                format!("discovery of {uri} failed: {}", excerpt(&e.to_string())),
            ));
        }
    };
    let command = RegistryCommand::RegisterDeployment {
        seed: seed(),
        uri,
        manifest,
        force: body.force,
        at_ms: now_ms(),
    };
    if let Err(refusal) = kernel.registry.borrow().check(&command) {
        return refused(&refusal);
    }
    if body.dry_run {
        return preview(&kernel, &command);
    }
    let applied = match kernel.metadata.send(ChangeRegistry(command)).await {
        Ok(Ok(Ok(applied))) => applied,
        Ok(Ok(Err(refusal))) => return refused(&refusal),
        Ok(Err(e)) => return metadata_error(e),
        Err(e) => return metadata_error(holdfast_metadata::Error::Unavailable(e.to_string())),
    };
    let (created, id) = match applied {
        Applied::Registered(id) => (true, id),
        Applied::AlreadyRegistered(id) => (false, id),
        other => {
            return HttpResponse::InternalServerError().json(ApiError::new(
                "unexpected_outcome",
                format!("registration applied as {other:?}"),
            ));
        }
    };
    let registry = kernel.registry.borrow().clone();
    answer(&registry, id, created, &kernel.attempt_defaults)
}

fn parse_id(id: &str) -> Result<DeploymentId, ApiError> {
    id.parse().map_err(|e| {
        ApiError::new(
            "invalid_deployment_id",
            format!("bad deployment id `{id}`: {e}"),
        )
    })
}

pub(crate) async fn list(kernel: web::Data<Kernel>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    HttpResponse::Ok().json(views::deployment_list(&registry))
}

pub(crate) async fn get(kernel: web::Data<Kernel>, id: web::Path<String>) -> HttpResponse {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(error) => return HttpResponse::BadRequest().json(error),
    };
    let registry = kernel.registry.borrow().clone();
    match registry.deployment(&id) {
        Some(deployment) => HttpResponse::Ok().json(views::deployment_detail(
            deployment,
            &kernel.attempt_defaults,
        )),
        None => HttpResponse::NotFound().json(ApiError::new(
            "not_found",
            format!("deployment {id} not found"),
        )),
    }
}

pub(crate) async fn remove(
    kernel: web::Data<Kernel>,
    id: web::Path<String>,
    query: web::Query<RemoveQuery>,
) -> HttpResponse {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(error) => return HttpResponse::BadRequest().json(error),
    };
    let command = RegistryCommand::RemoveDeployment {
        id,
        force: query.force,
    };
    if let Err(refusal) = kernel.registry.borrow().check(&command) {
        return refused(&refusal);
    }
    match kernel.metadata.send(ChangeRegistry(command)).await {
        Ok(Ok(Ok(_))) => HttpResponse::Accepted().finish(),
        Ok(Ok(Err(refusal))) => refused(&refusal),
        Ok(Err(e)) => metadata_error(e),
        Err(e) => metadata_error(holdfast_metadata::Error::Unavailable(e.to_string())),
    }
}

pub(crate) async fn services(kernel: web::Data<Kernel>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    HttpResponse::Ok().json(views::service_list(&registry, &kernel.attempt_defaults))
}

pub(crate) async fn service(kernel: web::Data<Kernel>, name: web::Path<String>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    match registry.service(&name) {
        Some(schema) => HttpResponse::Ok().json(views::service(schema, &kernel.attempt_defaults)),
        None => HttpResponse::NotFound().json(ApiError::new(
            "not_found",
            format!("service {name} not found"),
        )),
    }
}

/// The body of `PATCH /services/{name}`: the operator settings to change, durations written as
/// `1d`, `10m`, `500ms` or ISO 8601 (`PT1H`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifyRequest {
    public: Option<bool>,
    idempotency_retention: Option<String>,
    journal_retention: Option<String>,
    workflow_completion_retention: Option<String>,
    inactivity_timeout: Option<String>,
    abort_timeout: Option<String>,
}

impl ModifyRequest {
    fn patch(&self) -> Result<ServicePatch, ApiError> {
        let duration = |field: &str, value: &Option<String>| -> Result<Option<Millis>, ApiError> {
            let Some(text) = value else { return Ok(None) };
            let parsed = holdfast_schema::duration::parse(text).map_err(|e| {
                ApiError::new(
                    "invalid_body",
                    format!("{field}: bad duration '{text}': {e}"),
                )
            })?;
            Ok(Some(Millis(
                u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX),
            )))
        };
        Ok(ServicePatch {
            public: self.public,
            idempotency_retention: duration("idempotency_retention", &self.idempotency_retention)?,
            journal_retention: duration("journal_retention", &self.journal_retention)?,
            workflow_completion_retention: duration(
                "workflow_completion_retention",
                &self.workflow_completion_retention,
            )?,
            inactivity_timeout: duration("inactivity_timeout", &self.inactivity_timeout)?,
            abort_timeout: duration("abort_timeout", &self.abort_timeout)?,
        })
    }
}

/// `PATCH /services/{name}`: changes a live service's settings through the metadata log and
/// answers with the service as it is now; new invocations use them.
pub(crate) async fn modify(
    kernel: web::Data<Kernel>,
    name: web::Path<String>,
    body: web::Json<ModifyRequest>,
) -> HttpResponse {
    let patch = match body.patch() {
        Ok(patch) => patch,
        Err(error) => return HttpResponse::BadRequest().json(error),
    };
    let command = RegistryCommand::ModifyService {
        service: name.clone(),
        patch,
    };
    if let Err(refusal) = kernel.registry.borrow().check(&command) {
        return refused(&refusal);
    }
    match kernel.metadata.send(ChangeRegistry(command)).await {
        Ok(Ok(Ok(_))) => service(kernel, name).await,
        Ok(Ok(Err(refusal))) => refused(&refusal),
        Ok(Err(e)) => metadata_error(e),
        Err(e) => metadata_error(holdfast_metadata::Error::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::{AdminAccess, allowed, excerpt, normalise};

    #[test]
    fn discovery_errors_are_cut_to_a_printable_excerpt() {
        assert_eq!(excerpt("status 500:\r\n\tno  way"), "status 500: no way");
        let long = "x".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&"y".repeat(200)), "y".repeat(200));
        assert!(!excerpt("a\u{1b}[31mred").contains('\u{1b}'));
    }

    #[test]
    fn the_allowlist_decides_by_host() {
        let uri = |text: &str| normalise(text).map(|(_, parsed)| parsed);
        let open = AdminAccess::default();
        let strict = AdminAccess {
            deployment_allowlist: ["10.0.0.0/8", "svc.internal", "::1"]
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            ..AdminAccess::default()
        };
        for (text, expected) in [
            ("http://10.1.2.3:9080", true),
            ("http://svc.internal:9080/api", true),
            ("http://[::1]:9080", true),
            ("http://127.0.0.1:9080", false),
            ("http://169.254.169.254", false),
            ("http://svc.internal.evil.example", false),
        ] {
            let parsed = uri(text).expect("valid uri");
            assert!(allowed(&open, &parsed));
            assert_eq!(allowed(&strict, &parsed), expected, "{text}");
        }
    }

    #[test]
    fn endpoint_uris_are_normalised_and_checked() {
        assert_eq!(
            normalise("http://127.0.0.1:9080").map(|(t, _)| t),
            Ok("http://127.0.0.1:9080/".to_string())
        );
        assert_eq!(
            normalise(" http://127.0.0.1:9080/api/ ").map(|(t, _)| t),
            Ok("http://127.0.0.1:9080/api/".to_string())
        );
        assert_eq!(
            normalise("https://Svc.example:8443/api").map(|(t, _)| t),
            Ok("https://Svc.example:8443/api/".to_string())
        );
        assert!(normalise("ftp://127.0.0.1:9080").is_err());
        assert!(normalise("not a uri").is_err());
        assert!(normalise("/relative").is_err());
    }
}
