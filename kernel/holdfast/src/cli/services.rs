//! `holdfast services list|describe|config`: `/services` of the admin API.

use super::table::{Table, fields, width};
use super::{Ctx, or_dash, parse, segment};
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// What `holdfast services` does.
#[derive(clap::Subcommand, Debug)]
pub enum ServicesCommand {
    /// List the live services.
    List,
    /// Show a service: its handlers, type, retention, timeouts and retry policy.
    Describe {
        /// The service's name.
        name: String,
    },
    /// Change a service's operator settings (`PATCH /services/{name}`) and print the result.
    /// Durations are written `1h`, `10m`, `500ms`, `1d` or ISO 8601 (`PT1H`).
    Config {
        /// The service's name.
        name: String,
        #[command(flatten)]
        settings: Settings,
    },
}

/// The settings `PATCH /services/{name}` changes; unset ones stay as they are.
#[derive(clap::Args, Serialize, Debug, Default)]
pub struct Settings {
    /// Whether the ingress may call it.
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    public: Option<bool>,
    /// How long idempotent results are kept.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_retention: Option<String>,
    /// How long a completed workflow (and its result) is kept.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_completion_retention: Option<String>,
    /// How long a completed invocation's journal is kept.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    journal_retention: Option<String>,
    /// How long an attempt may go without progress before it is stopped and retried.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    inactivity_timeout: Option<String>,
    /// How long a stopped attempt gets to finish before it is aborted.
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    abort_timeout: Option<String>,
}

/// A service as the admin API shows it.
#[derive(Deserialize)]
pub struct Service {
    name: String,
    ty: String,
    handlers: Vec<Handler>,
    deployment_id: String,
    revision: u32,
    public: bool,
    idempotency_retention: String,
    journal_retention: String,
    workflow_completion_retention: Option<String>,
    inactivity_timeout: String,
    abort_timeout: String,
    retry_policy: RetryPolicy,
}

/// One handler of a service.
#[derive(Deserialize)]
struct Handler {
    name: String,
    ty: Option<String>,
    public: bool,
    input_description: String,
    output_description: String,
}

/// A service's effective retry policy.
#[derive(Deserialize)]
struct RetryPolicy {
    initial_interval: String,
    exponentiation_factor: f64,
    max_attempts: Option<u32>,
    max_interval: String,
    on_max_attempts: String,
}

/// `{"services": […]}`.
#[derive(Deserialize)]
struct ServiceList {
    services: Vec<Service>,
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: ServicesCommand) -> anyhow::Result<()> {
    match command {
        ServicesCommand::List => {
            let (list, body): (ServiceList, _) = ctx.get("/services")?;
            ctx.print(&body, || {
                if list.services.is_empty() {
                    "no services\n".to_owned()
                } else {
                    service_table(&list.services).render(width())
                }
            })
        }
        ServicesCommand::Describe { name } => {
            let (service, body): (Service, _) =
                ctx.get(&format!("/services/{}", segment(&name)))?;
            ctx.print(&body, || describe(&service))
        }
        ServicesCommand::Config { name, settings } => {
            let patch = serde_json::to_value(&settings)?;
            if patch.as_object().is_none_or(serde_json::Map::is_empty) {
                bail!(
                    "nothing to change: pass at least one of --public, --idempotency-retention, \
                     --workflow-completion-retention, --journal-retention, --inactivity-timeout, \
                     --abort-timeout"
                );
            }
            let path = format!("/services/{}", segment(&name));
            let body = ctx.admin.send_json("PATCH", &path, &patch)?.body;
            let service: Service = parse(&body)?;
            ctx.print(&body, || describe(&service))
        }
    }
}

/// One row per service.
pub fn service_table(services: &[Service]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "TYPE",
        "REVISION",
        "PUBLIC",
        "DEPLOYMENT",
        "HANDLERS",
    ])
    .whole(0);
    for s in services {
        let handlers: Vec<&str> = s.handlers.iter().map(|h| h.name.as_str()).collect();
        table.row(vec![
            s.name.clone(),
            s.ty.clone(),
            s.revision.to_string(),
            s.public.to_string(),
            s.deployment_id.clone(),
            handlers.join(", "),
        ]);
    }
    table
}

/// A service's settings, then its handlers.
fn describe(s: &Service) -> String {
    let retry = &s.retry_policy;
    let attempts = retry
        .max_attempts
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let pairs = [
        ("service", s.name.clone()),
        ("type", s.ty.clone()),
        ("revision", s.revision.to_string()),
        ("deployment", s.deployment_id.clone()),
        ("public", s.public.to_string()),
        ("idempotency retention", s.idempotency_retention.clone()),
        ("journal retention", s.journal_retention.clone()),
        (
            "workflow retention",
            or_dash(s.workflow_completion_retention.as_deref()),
        ),
        ("inactivity timeout", s.inactivity_timeout.clone()),
        ("abort timeout", s.abort_timeout.clone()),
        (
            "retry policy",
            format!(
                "every {} ×{} up to {}, at most {attempts} attempts, then {}",
                retry.initial_interval,
                retry.exponentiation_factor,
                retry.max_interval,
                retry.on_max_attempts
            ),
        ),
    ];
    let mut out = fields(&pairs);
    let mut handlers = Table::new(&["HANDLER", "TYPE", "PUBLIC", "INPUT", "OUTPUT"]);
    for h in &s.handlers {
        handlers.row(vec![
            h.name.clone(),
            or_dash(h.ty.as_deref()),
            h.public.to_string(),
            h.input_description.clone(),
            h.output_description.clone(),
        ]);
    }
    out.push('\n');
    out.push_str(&handlers.render(width()));
    out
}
