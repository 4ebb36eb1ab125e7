//! `/limits`: creating, reading, changing and removing flow-control limits through the metadata
//! log. Every partition applies the registry's limits within about a second.
//!
//! ```text
//!   POST   /limits          {"name", "service", "handler"?, "key_prefix"?,
//!                            "max_concurrency"?, "rate"? ("50/s"), "burst"?} → 201 the limit
//!   GET    /limits                                                       → {"limits": [...]}
//!   GET    /limits/{name}                                                → the limit
//!   PATCH  /limits/{name}   any field but name; null clears an optional one → the limit
//!   DELETE /limits/{name}                                                → 204
//! ```

use crate::deployments::propose;
use crate::{ApiError, Kernel};
use actix_web::{HttpResponse, web};
use holdfast_schema::RegistryCommand;
use holdfast_types::Limit;
use serde::{Deserialize, Serialize};

/// The body of `POST /limits` and `PATCH /limits/{name}`: absent fields are left as they are;
/// `handler`, `key_prefix`, `max_concurrency` and `rate` may be `null` to clear them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitBody {
    name: Option<String>,
    service: Option<String>,
    #[serde(default, deserialize_with = "crate::schedules::present")]
    handler: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::schedules::present")]
    key_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::schedules::present")]
    max_concurrency: Option<Option<u32>>,
    #[serde(default, deserialize_with = "crate::schedules::present")]
    rate: Option<Option<String>>,
    burst: Option<u32>,
}

/// One limit as the API shows it.
#[derive(Serialize)]
pub(crate) struct LimitView {
    name: String,
    service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

pub(crate) fn view(limit: &Limit) -> LimitView {
    LimitView {
        name: limit.name.clone(),
        service: limit.service.clone(),
        handler: limit.handler.clone(),
        key_prefix: limit.key_prefix.clone(),
        max_concurrency: limit.max_concurrency,
        rate: limit.rate.map(|rate| rate.display()),
        burst: limit.rate.map(|rate| rate.burst),
    }
}

fn invalid(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(ApiError::new("invalid_limit", message))
}

impl LimitBody {
    /// `limit` with the fields of this body applied.
    fn apply_to(&self, mut limit: Limit) -> Result<Limit, String> {
        if let Some(service) = &self.service {
            limit.service.clone_from(service);
        }
        if let Some(handler) = &self.handler {
            limit.handler.clone_from(handler);
        }
        if let Some(prefix) = &self.key_prefix {
            limit.key_prefix.clone_from(prefix);
        }
        if let Some(max) = self.max_concurrency {
            limit.max_concurrency = max;
        }
        let burst = self.burst.or(limit.rate.map(|rate| rate.burst));
        limit.rate = match &self.rate {
            Some(Some(text)) => Some(holdfast_schema::limit::parse_rate(text, burst)?),
            Some(None) => None,
            None => limit.rate.map(|rate| holdfast_types::Rate {
                burst: burst.unwrap_or(rate.burst),
                ..rate
            }),
        };
        if self.burst.is_some() && limit.rate.is_none() {
            return Err("burst applies to a rate: give rate too".into());
        }
        Ok(limit)
    }
}

/// Proposes `command`, then answers with limit `name` as the registry now has it.
async fn change(kernel: &Kernel, command: RegistryCommand, name: &str) -> HttpResponse {
    let created = match propose(kernel, command).await {
        Ok(holdfast_schema::Applied::LimitPut { created, .. }) => created,
        Ok(_) => false,
        Err(response) => return response,
    };
    let registry = kernel.registry.borrow().clone();
    match registry.limit(name) {
        Some(limit) if created => HttpResponse::Created().json(view(limit)),
        Some(limit) => HttpResponse::Ok().json(view(limit)),
        None => HttpResponse::NoContent().finish(),
    }
}

pub(crate) async fn create(kernel: web::Data<Kernel>, body: web::Json<LimitBody>) -> HttpResponse {
    let (Some(name), Some(service)) = (body.name.clone(), body.service.clone()) else {
        return invalid("name and service are required");
    };
    let blank = Limit {
        name: name.clone(),
        service,
        handler: None,
        key_prefix: None,
        max_concurrency: None,
        rate: None,
    };
    let limit = match body.apply_to(blank) {
        Ok(limit) => limit,
        Err(message) => return invalid(message),
    };
    let command = RegistryCommand::PutLimit {
        limit,
        create: true,
    };
    change(&kernel, command, &name).await
}

pub(crate) async fn list(kernel: web::Data<Kernel>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    let limits: Vec<LimitView> = registry.limits().map(view).collect();
    HttpResponse::Ok().json(serde_json::json!({ "limits": limits }))
}

fn unknown(name: &str) -> HttpResponse {
    HttpResponse::NotFound().json(ApiError::new(
        "unknown_limit",
        format!("limit '{name}' not found"),
    ))
}

pub(crate) async fn get(kernel: web::Data<Kernel>, name: web::Path<String>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    match registry.limit(&name) {
        Some(limit) => HttpResponse::Ok().json(view(limit)),
        None => unknown(&name),
    }
}

pub(crate) async fn modify(
    kernel: web::Data<Kernel>,
    name: web::Path<String>,
    body: web::Json<LimitBody>,
) -> HttpResponse {
    if body.name.as_ref().is_some_and(|given| *given != *name) {
        return invalid("a limit cannot be renamed: create one under the new name");
    }
    let Some(current) = kernel.registry.borrow().limit(&name).cloned() else {
        return unknown(&name);
    };
    let limit = match body.apply_to(current) {
        Ok(limit) => limit,
        Err(message) => return invalid(message),
    };
    let command = RegistryCommand::PutLimit {
        limit,
        create: false,
    };
    change(&kernel, command, &name).await
}

pub(crate) async fn remove(kernel: web::Data<Kernel>, name: web::Path<String>) -> HttpResponse {
    let command = RegistryCommand::RemoveLimit { name: name.clone() };
    change(&kernel, command, &name).await
}
