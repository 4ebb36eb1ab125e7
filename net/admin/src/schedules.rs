//! `/schedules`: creating, reading, changing and removing schedules through the metadata log.
//!
//! ```text
//!   POST   /schedules          {"name", "service", "handler", "key"?, "input"?,
//!                               "cron" + "timezone"? | "every", "catch_up"?, "catch_up_max"?,
//!                               "overlap"?, "paused"?}          → 201 the schedule
//!   GET    /schedules                                           → {"schedules": [...]}
//!   GET    /schedules/{name}                                    → the schedule
//!   PATCH  /schedules/{name}   any of the fields above but name → the schedule
//!   DELETE /schedules/{name}                                    → 204
//! ```
//! A schedule's view adds its next fire time (none while paused). Giving it a new spec, or
//! resuming it, starts its ticks afresh from that moment: ticks before it are not due.

use crate::deployments::{now_ms, propose};
use crate::{ApiError, Kernel};
use actix_web::{HttpResponse, web};
use holdfast_schedule::CatchUp;
use holdfast_schema::{Millis, RegistryCommand, Schedule, ScheduleSpec, Timestamp};
use holdfast_types::Overlap;
use serde::{Deserialize, Deserializer, Serialize};

/// The body of `POST /schedules` and `PATCH /schedules/{name}`: absent fields are left as they
/// are (or defaulted, on creation); `key` and `input` may be `null` to clear them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleBody {
    name: Option<String>,
    service: Option<String>,
    handler: Option<String>,
    #[serde(default, deserialize_with = "present")]
    key: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    input: Option<Option<serde_json::Value>>,
    cron: Option<String>,
    timezone: Option<String>,
    every: Option<String>,
    catch_up: Option<String>,
    catch_up_max: Option<u32>,
    overlap: Option<Overlap>,
    paused: Option<bool>,
}

/// A field given as `null` is `Some(None)`, an absent one `None` (for PATCH bodies that clear
/// optional fields).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// One schedule as the API shows it.
#[derive(Serialize)]
struct ScheduleView {
    name: String,
    service: String,
    handler: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    catch_up: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up_max: Option<u32>,
    overlap: Overlap,
    paused: bool,
    /// Declared in code by its handler: it follows the service's registrations.
    declared: bool,
    /// When it fires next (RFC 3339, UTC); absent while paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_fire_at: Option<String>,
    created_at: String,
    updated_at: String,
}

fn view(schedule: &Schedule, now: Timestamp) -> ScheduleView {
    let (cron, timezone, every) = match &schedule.spec {
        ScheduleSpec::Cron { expression, zone } => {
            (Some(expression.clone()), Some(zone.clone()), None)
        }
        ScheduleSpec::Every { period } => (None, None, Some(period.to_string())),
    };
    let catch_up_max = match schedule.catch_up {
        CatchUp::All { max } => Some(max),
        CatchUp::Skip | CatchUp::Latest => None,
    };
    let next_fire_at = schedule.next_fire(now.0).map(|at| Timestamp(at).rfc3339());
    ScheduleView {
        name: schedule.name.clone(),
        service: schedule.service.clone(),
        handler: schedule.handler.clone(),
        key: schedule.key.clone(),
        input: schedule
            .input
            .as_ref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok()),
        cron,
        timezone,
        every,
        catch_up: schedule.catch_up.name(),
        catch_up_max,
        overlap: schedule.overlap,
        paused: schedule.paused,
        declared: schedule.declared,
        next_fire_at,
        created_at: schedule.created_at.rfc3339(),
        updated_at: schedule.updated_at.rfc3339(),
    }
}

fn invalid(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(ApiError::new("invalid_schedule", message))
}

impl ScheduleBody {
    /// `base` with the fields of this body applied, at `now`; a new spec or a resume starts
    /// the ticks afresh.
    fn apply_to(&self, mut schedule: Schedule, now: Timestamp) -> Result<Schedule, String> {
        if let Some(service) = &self.service {
            schedule.service.clone_from(service);
        }
        if let Some(handler) = &self.handler {
            schedule.handler.clone_from(handler);
        }
        if let Some(key) = &self.key {
            schedule.key.clone_from(key);
        }
        if let Some(input) = &self.input {
            schedule.input = match input {
                Some(value) => Some(serde_json::to_vec(value).map_err(|e| e.to_string())?),
                None => None,
            };
        }
        let spec = match (&self.cron, &self.every) {
            (Some(_), Some(_)) => return Err("give either cron or every, not both".into()),
            (Some(expression), None) => Some(ScheduleSpec::Cron {
                expression: expression.clone(),
                zone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            }),
            (None, Some(every)) => {
                if self.timezone.is_some() {
                    return Err("timezone applies to cron only, not to every".into());
                }
                let period = holdfast_schema::duration::parse(every)
                    .map_err(|e| format!("every `{every}`: {e}"))?;
                Some(ScheduleSpec::Every {
                    period: Millis(u64::try_from(period.as_millis()).unwrap_or(u64::MAX)),
                })
            }
            (None, None) => match (&self.timezone, &schedule.spec) {
                (Some(zone), ScheduleSpec::Cron { expression, .. }) => Some(ScheduleSpec::Cron {
                    expression: expression.clone(),
                    zone: zone.clone(),
                }),
                (Some(_), ScheduleSpec::Every { .. }) => {
                    return Err("timezone applies to cron only, not to every".into());
                }
                (None, _) => None,
            },
        };
        if let Some(spec) = spec
            && spec != schedule.spec
        {
            schedule.spec = spec;
            schedule.since = now;
        }
        schedule.catch_up = match (self.catch_up.as_deref(), self.catch_up_max) {
            (None, None) => schedule.catch_up,
            (None, Some(max)) if matches!(schedule.catch_up, CatchUp::All { .. }) => {
                CatchUp::All { max }
            }
            (name, max) => holdfast_schema::schedule::catch_up_of(name, max)?,
        };
        if let Some(overlap) = self.overlap {
            schedule.overlap = overlap;
        }
        if let Some(paused) = self.paused {
            if schedule.paused && !paused {
                schedule.since = now;
            }
            schedule.paused = paused;
        }
        schedule.updated_at = now;
        Ok(schedule)
    }
}

/// Proposes `command`, then answers with the schedule as the registry now has it.
async fn change(
    kernel: &Kernel,
    command: RegistryCommand,
    name: &str,
    created: bool,
) -> HttpResponse {
    if let Err(response) = propose(kernel, command).await {
        return response;
    }
    let registry = kernel.registry.borrow().clone();
    match registry.schedule(name) {
        Some(schedule) if created => HttpResponse::Created().json(view(schedule, now_ms())),
        Some(schedule) => HttpResponse::Ok().json(view(schedule, now_ms())),
        None => HttpResponse::NoContent().finish(),
    }
}

pub(crate) async fn create(
    kernel: web::Data<Kernel>,
    body: web::Json<ScheduleBody>,
) -> HttpResponse {
    let Some(name) = body.name.clone() else {
        return invalid("name is required");
    };
    let (Some(service), Some(handler)) = (body.service.clone(), body.handler.clone()) else {
        return invalid("service and handler are required");
    };
    if body.cron.is_none() && body.every.is_none() {
        return invalid("give cron (with an optional timezone) or every");
    }
    let now = now_ms();
    let blank = Schedule {
        name: name.clone(),
        service,
        handler,
        key: None,
        input: None,
        spec: ScheduleSpec::Every {
            period: Millis::MINUTE,
        },
        catch_up: CatchUp::Skip,
        overlap: Overlap::Skip,
        paused: false,
        since: now,
        created_at: now,
        updated_at: now,
        declared: false,
    };
    let schedule = match body.apply_to(blank, now) {
        Ok(schedule) => schedule,
        Err(message) => return invalid(message),
    };
    let command = RegistryCommand::PutSchedule {
        schedule,
        create: true,
    };
    change(&kernel, command, &name, true).await
}

pub(crate) async fn list(kernel: web::Data<Kernel>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    let now = now_ms();
    let schedules: Vec<ScheduleView> = registry.schedules().map(|s| view(s, now)).collect();
    HttpResponse::Ok().json(serde_json::json!({ "schedules": schedules }))
}

fn unknown(name: &str) -> HttpResponse {
    HttpResponse::NotFound().json(ApiError::new(
        "unknown_schedule",
        format!("schedule '{name}' not found"),
    ))
}

pub(crate) async fn get(kernel: web::Data<Kernel>, name: web::Path<String>) -> HttpResponse {
    let registry = kernel.registry.borrow().clone();
    match registry.schedule(&name) {
        Some(schedule) => HttpResponse::Ok().json(view(schedule, now_ms())),
        None => unknown(&name),
    }
}

pub(crate) async fn modify(
    kernel: web::Data<Kernel>,
    name: web::Path<String>,
    body: web::Json<ScheduleBody>,
) -> HttpResponse {
    if body.name.as_ref().is_some_and(|given| *given != *name) {
        return invalid("a schedule cannot be renamed: create one under the new name");
    }
    let Some(current) = kernel.registry.borrow().schedule(&name).cloned() else {
        return unknown(&name);
    };
    let schedule = match body.apply_to(current, now_ms()) {
        Ok(schedule) => schedule,
        Err(message) => return invalid(message),
    };
    let command = RegistryCommand::PutSchedule {
        schedule,
        create: false,
    };
    change(&kernel, command, &name, false).await
}

pub(crate) async fn remove(kernel: web::Data<Kernel>, name: web::Path<String>) -> HttpResponse {
    let command = RegistryCommand::RemoveSchedule { name: name.clone() };
    change(&kernel, command, &name, false).await
}
