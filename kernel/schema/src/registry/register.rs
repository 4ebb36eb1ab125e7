//! Registering an endpoint.
//!
//! - A uri with no current deployment gets a new deployment.
//! - The current deployment at the uri with an identical manifest is returned as it is, unless
//!   `force` (then a new deployment is created all the same, except when the command is a replay:
//!   its seed gives the current deployment's id).
//! - Otherwise a new deployment supersedes the current one at the uri: its revisions are dropped
//!   from every service's history (the endpoint no longer serves them), and it stays only for the
//!   invocations pinned to it.
//! - Every service of the manifest gets its next revision number and becomes the newest revision.
//! - Refused as a conflict unless `force`: a live service would change type, or a service or
//!   handler whose newest revision the endpoint at the same uri serves would no longer be served.

use super::{Applied, Registry, RevisionRef};
use crate::{
    Conflict, Conflicts, DEFAULT_IDEMPOTENCY_RETENTION, DEFAULT_JOURNAL_RETENTION,
    DEFAULT_WORKFLOW_COMPLETION_RETENTION, Deployment, DeploymentId, HandlerSchema, Invalid,
    Millis, OnMaxAttempts, Refusal, RetryOverrides, ServiceSchema, Timestamp,
};
use holdfast_protocol::manifest::{self, HandlerKind, Manifest, ServiceType};
use std::collections::BTreeSet;

/// The outcome of planning a registration.
pub(super) enum Plan {
    /// Nothing to do: this deployment is the identical registration.
    Existing(DeploymentId),
    /// Insert this deployment, superseding the current one at its uri, if any.
    New {
        deployment: Box<Deployment>,
        previous: Option<DeploymentId>,
    },
}

impl Registry {
    pub(super) fn plan_register(
        &self,
        seed: u128,
        uri: &str,
        manifest: &Manifest,
        force: bool,
        at: Timestamp,
    ) -> Result<Plan, Refusal> {
        if uri.is_empty() {
            return Err(Invalid::EmptyUri.into());
        }
        validate(manifest)?;
        let previous = self.current_at(uri);
        let id = DeploymentId::from_seed(seed);
        // Without force an identical endpoint is the same registration; with force only a replay of
        // this very command (same seed) is, so that a retried proposal stays harmless.
        if let Some(previous) = previous
            && (!force || previous.id == id)
            && serves_the_same(previous, manifest)
        {
            return Ok(Plan::Existing(previous.id));
        }
        if self.deployments.contains_key(&id) {
            return Err(Refusal::IdTaken(id));
        }
        if !force {
            let conflicts = self.conflicts(uri, manifest, previous);
            if !conflicts.is_empty() {
                return Err(Refusal::Conflict(Conflicts(conflicts)));
            }
        }
        let mut services = Vec::with_capacity(manifest.services.len());
        for service in &manifest.services {
            let entry = self.services.get(&service.name);
            let revision = entry
                .map_or(0, |e| e.last_revision)
                .checked_add(1)
                .ok_or_else(|| Refusal::RevisionsExhausted(service.name.clone()))?;
            let mut schema = new_schema(service, id, revision);
            if let Some(entry) = entry {
                entry.patch.overlay(&mut schema);
            }
            services.push(schema);
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        self.plan_declared(&services, at)?;
        let mut protocol_modes = Vec::with_capacity(manifest.protocol_modes.len());
        for mode in &manifest.protocol_modes {
            if !protocol_modes.contains(mode) {
                protocol_modes.push(*mode);
            }
        }
        Ok(Plan::New {
            deployment: Box::new(Deployment {
                id,
                uri: uri.to_owned(),
                created_at: at,
                sequence: self.next_sequence,
                superseded_by: None,
                min_protocol_version: manifest.min_protocol_version,
                max_protocol_version: manifest.max_protocol_version,
                protocol_modes,
                services,
                sdk_version: manifest.sdk_version.clone(),
            }),
            previous: previous.map(|p| p.id),
        })
    }

    pub(super) fn commit_register(&mut self, plan: Plan) -> Applied {
        let (deployment, previous) = match plan {
            Plan::Existing(id) => return Applied::AlreadyRegistered(id),
            Plan::New {
                deployment,
                previous,
            } => (*deployment, previous),
        };
        let id = deployment.id;
        for service in &deployment.services {
            let entry = self.services.entry(service.name.clone()).or_default();
            entry.last_revision = service.revision;
            entry.revisions.push(RevisionRef {
                revision: service.revision,
                deployment: id,
            });
        }
        if let Some(previous) = previous {
            if let Some(old) = self.deployments.get_mut(&previous) {
                old.superseded_by = Some(id);
            }
            self.drop_revisions_of(previous);
        }
        self.next_sequence = self.next_sequence.saturating_add(1);
        self.deployments.insert(id, deployment);
        self.sync_declared();
        Applied::Registered(id)
    }

    /// Every way registering `manifest` at `uri` would break live services, in a fixed order:
    /// type changes by service name, then removals by service and handler name.
    fn conflicts(
        &self,
        uri: &str,
        manifest: &Manifest,
        previous: Option<&Deployment>,
    ) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        let mut declared: Vec<&manifest::Service> = manifest.services.iter().collect();
        declared.sort_by(|a, b| a.name.cmp(&b.name));
        for service in &declared {
            if let Some(live) = self.service(&service.name)
                && live.ty != service.ty
            {
                conflicts.push(Conflict::ServiceType {
                    service: service.name.clone(),
                    from: live.ty,
                    to: service.ty,
                });
            }
        }
        let Some(previous) = previous else {
            return conflicts;
        };
        for old in &previous.services {
            if !self.is_newest(&old.name, previous.id) {
                continue;
            }
            let Some(new) = declared.iter().find(|s| s.name == old.name) else {
                conflicts.push(Conflict::ServiceRemoved {
                    service: old.name.clone(),
                    uri: uri.to_owned(),
                });
                continue;
            };
            for handler in &old.handlers {
                if !new.handlers.iter().any(|h| h.name == handler.name) {
                    conflicts.push(Conflict::HandlerRemoved {
                        service: old.name.clone(),
                        handler: handler.name.clone(),
                        uri: uri.to_owned(),
                    });
                }
            }
        }
        conflicts
    }
}

/// Whether `deployment` was registered from a manifest equal to `manifest` (order of services,
/// handlers and modes aside; operator settings are not part of the manifest). A different
/// `sdk_version` makes a new deployment: the endpoint at the uri was upgraded.
fn serves_the_same(deployment: &Deployment, manifest: &Manifest) -> bool {
    let served = &deployment.protocol_modes;
    let declared = &manifest.protocol_modes;
    deployment.min_protocol_version == manifest.min_protocol_version
        && deployment.sdk_version == manifest.sdk_version
        && deployment.max_protocol_version == manifest.max_protocol_version
        && served.iter().all(|m| declared.contains(m))
        && declared.iter().all(|m| served.contains(m))
        && deployment.services.len() == manifest.services.len()
        && manifest.services.iter().all(|declared| {
            deployment.service(&declared.name).is_some_and(|served| {
                served.ty == declared.ty
                    && served.handlers == new_handlers(declared)
                    && served.retry_policy == service_retry(declared)
                    && declared
                        .inactivity_timeout_ms
                        .is_none_or(|ms| served.inactivity_timeout == Some(Millis(ms)))
                    && declared
                        .abort_timeout_ms
                        .is_none_or(|ms| served.abort_timeout == Some(Millis(ms)))
            })
        })
}

/// The service-level retry fields a manifest declares.
fn service_retry(service: &manifest::Service) -> RetryOverrides {
    service
        .retry_policy
        .as_ref()
        .map(overrides)
        .unwrap_or_default()
}

/// A manifest's retry policy fields as registry overrides (validated by [`validate`]).
fn overrides(policy: &manifest::RetryPolicy) -> RetryOverrides {
    RetryOverrides {
        initial_interval: policy.initial_interval_ms.map(Millis),
        exponentiation_factor: policy.factor,
        max_interval: policy.max_interval_ms.map(Millis),
        max_attempts: policy.max_attempts,
        on_max_attempts: policy.on_max_attempts.map(|on| match on {
            manifest::OnMaxAttempts::Pause => OnMaxAttempts::Pause,
            manifest::OnMaxAttempts::Kill => OnMaxAttempts::Kill,
        }),
    }
}

/// The schema of a newly registered service revision: the manifest's declarations, defaults for
/// the retentions it does not declare. Undeclared timeouts and retry fields stay unset: the
/// invoking node's configuration fills them in.
fn new_schema(
    service: &manifest::Service,
    deployment_id: DeploymentId,
    revision: u32,
) -> ServiceSchema {
    ServiceSchema {
        name: service.name.clone(),
        ty: service.ty,
        revision,
        deployment_id,
        handlers: new_handlers(service),
        public: true,
        idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
        journal_retention: DEFAULT_JOURNAL_RETENTION,
        workflow_completion_retention: (service.ty == ServiceType::Workflow)
            .then_some(DEFAULT_WORKFLOW_COMPLETION_RETENTION),
        inactivity_timeout: service.inactivity_timeout_ms.map(Millis),
        abort_timeout: service.abort_timeout_ms.map(Millis),
        retry_policy: service_retry(service),
    }
}

/// The handlers of a declared service, sorted by name, with the retry and timeout fields each
/// declares. The manifest has no per-handler visibility, so every handler is public.
fn new_handlers(service: &manifest::Service) -> Vec<HandlerSchema> {
    let mut handlers: Vec<HandlerSchema> = service
        .handlers
        .iter()
        .map(|h| HandlerSchema {
            name: h.name.clone(),
            kind: h.kind,
            input: h.input.clone(),
            output: h.output.clone(),
            public: true,
            retry: h.retry_policy.as_ref().map(overrides),
            inactivity_timeout: h.inactivity_timeout_ms.map(Millis),
            abort_timeout: h.abort_timeout_ms.map(Millis),
            schedules: h.schedules.clone(),
        })
        .collect();
    handlers.sort_by(|a, b| a.name.cmp(&b.name));
    handlers
}

/// Refuses manifests the kernel could not route invocations to.
fn validate(manifest: &Manifest) -> Result<(), Invalid> {
    if manifest.min_protocol_version > manifest.max_protocol_version {
        return Err(Invalid::ProtocolRange {
            min: manifest.min_protocol_version,
            max: manifest.max_protocol_version,
        });
    }
    if manifest.protocol_modes.is_empty() {
        return Err(Invalid::NoProtocolMode);
    }
    if let Some(sdk_version) = &manifest.sdk_version {
        check_sdk_version(sdk_version)?;
    }
    if manifest.services.is_empty() {
        return Err(Invalid::NoServices);
    }
    let mut service_names = BTreeSet::new();
    for service in &manifest.services {
        check_name(&service.name)?;
        if !service_names.insert(service.name.as_str()) {
            return Err(Invalid::DuplicateService(service.name.clone()));
        }
        check_settings(
            &service.name,
            service.retry_policy.as_ref(),
            service.inactivity_timeout_ms,
            service.abort_timeout_ms,
        )?;
        let mut handler_names = BTreeSet::new();
        for handler in &service.handlers {
            check_name(&handler.name)?;
            check_settings(
                &format!("{}/{}", service.name, handler.name),
                handler.retry_policy.as_ref(),
                handler.inactivity_timeout_ms,
                handler.abort_timeout_ms,
            )?;
            if !handler_names.insert(handler.name.as_str()) {
                return Err(Invalid::DuplicateHandler {
                    service: service.name.clone(),
                    handler: handler.name.clone(),
                });
            }
            let allowed = match service.ty {
                ServiceType::Service => handler.kind == HandlerKind::Shared,
                ServiceType::Object => handler.kind != HandlerKind::Workflow,
                ServiceType::Workflow => handler.kind != HandlerKind::Exclusive,
            };
            if !allowed {
                return Err(Invalid::HandlerKind {
                    service: service.name.clone(),
                    handler: handler.name.clone(),
                    kind: handler.kind,
                    ty: service.ty,
                });
            }
        }
        if service.ty == ServiceType::Workflow {
            let count = service
                .handlers
                .iter()
                .filter(|h| h.kind == HandlerKind::Workflow)
                .count();
            if count != 1 {
                return Err(Invalid::WorkflowHandlers {
                    service: service.name.clone(),
                    count,
                });
            }
        }
    }
    Ok(())
}

/// Names appear as path segments of invocation urls.
fn check_name(name: &str) -> Result<(), Invalid> {
    let bad = name.is_empty()
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if bad {
        Err(Invalid::Name(name.to_owned()))
    } else {
        Ok(())
    }
}

/// Longest `sdk_version` accepted, in bytes.
const SDK_VERSION_MAX_LEN: usize = 128;

/// The SDK version is shown to operators as it is: 1 to 128 printable ASCII characters.
fn check_sdk_version(sdk_version: &str) -> Result<(), Invalid> {
    let bad = sdk_version.is_empty()
        || sdk_version.len() > SDK_VERSION_MAX_LEN
        || !sdk_version.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if bad {
        Err(Invalid::SdkVersion(sdk_version.to_owned()))
    } else {
        Ok(())
    }
}

/// Refuses retry and timeout declarations no invocation could run with: a factor below 1 or not
/// finite, no attempt at all, a zero interval or timeout, or an initial interval above the maximum
/// declared next to it.
fn check_settings(
    target: &str,
    retry: Option<&manifest::RetryPolicy>,
    inactivity_timeout_ms: Option<u64>,
    abort_timeout_ms: Option<u64>,
) -> Result<(), Invalid> {
    let invalid = |field: &str, value: String, expected: &str| Invalid::Setting {
        target: target.to_owned(),
        field: field.to_owned(),
        value,
        expected: expected.to_owned(),
    };
    let positive = [
        ("inactivity_timeout_ms", inactivity_timeout_ms),
        ("abort_timeout_ms", abort_timeout_ms),
        (
            "retry_policy.initial_interval_ms",
            retry.and_then(|r| r.initial_interval_ms),
        ),
        (
            "retry_policy.max_interval_ms",
            retry.and_then(|r| r.max_interval_ms),
        ),
        (
            "retry_policy.max_attempts",
            retry.and_then(|r| r.max_attempts).map(u64::from),
        ),
    ];
    for (field, value) in positive {
        if value == Some(0) {
            return Err(invalid(field, "0".to_owned(), "at least 1"));
        }
    }
    let Some(retry) = retry else { return Ok(()) };
    if let Some(factor) = retry.factor
        && !(factor.is_finite() && factor >= 1.0)
    {
        return Err(invalid(
            "retry_policy.factor",
            factor.to_string(),
            "a finite number >= 1",
        ));
    }
    if let (Some(initial), Some(max)) = (retry.initial_interval_ms, retry.max_interval_ms)
        && initial > max
    {
        return Err(invalid(
            "retry_policy.initial_interval_ms",
            initial.to_string(),
            &format!("at most retry_policy.max_interval_ms ({max})"),
        ));
    }
    Ok(())
}
