//! `holdfast limits list|describe|create|update|delete`: `/limits` of the admin API, with what
//! each limit's home partition has running and waiting (`sys_queue`).

use super::filter::quote;
use super::table::{Table, fields, width};
use super::{Ctx, or_dash, parse, segment};
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What `holdfast limits` does.
#[derive(clap::Subcommand, Debug)]
pub enum LimitsCommand {
    /// List the limits with the permits they have out and the invocations waiting for one.
    List,
    /// Show one limit and its queue.
    Describe {
        /// Its name.
        name: String,
    },
    /// Create a limit (`POST /limits`): `--max-concurrency`, `--rate`, or both.
    Create(Box<Definition>),
    /// Change a limit (`PATCH /limits/{name}`): only the options given; `--no-…` clears one.
    Update(Box<Changes>),
    /// Remove a limit; invocations waiting for its permits start at once.
    Delete {
        /// Its name.
        name: String,
    },
}

/// The body of `POST /limits`.
#[derive(clap::Args, Serialize, Debug)]
#[command(group = clap::ArgGroup::new("budget")
    .required(true)
    .multiple(true)
    .args(["max_concurrency", "rate"]))]
pub struct Definition {
    /// The limit's name (A-Z, a-z, 0-9, '.', '_', '-').
    name: String,
    /// The service whose invocations it covers.
    #[arg(long)]
    service: String,
    /// Only invocations of this handler (default: every handler of the service).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    /// Only virtual objects or workflows whose key starts with this.
    #[arg(long, value_name = "PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    key_prefix: Option<String>,
    /// At most this many covered attempts run at once.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    /// At most this many attempts start per period: `50/s`, `10/m`, `3/2s`.
    #[arg(long, value_name = "RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    /// How many starts the rate lets through at once after a quiet spell (default 1).
    #[arg(long, value_name = "N", requires = "rate")]
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

/// What `holdfast limits update` changes; options not given stay as they are.
#[derive(clap::Args, Debug)]
pub struct Changes {
    /// The limit's name.
    name: String,
    /// The service whose invocations it covers.
    #[arg(long)]
    service: Option<String>,
    /// Only invocations of this handler.
    #[arg(long, conflicts_with = "no_handler")]
    handler: Option<String>,
    /// Cover every handler of the service.
    #[arg(long)]
    no_handler: bool,
    /// Only virtual objects or workflows whose key starts with this.
    #[arg(long, value_name = "PREFIX", conflicts_with = "no_key_prefix")]
    key_prefix: Option<String>,
    /// Cover every key.
    #[arg(long)]
    no_key_prefix: bool,
    /// At most this many covered attempts run at once.
    #[arg(long, value_name = "N", conflicts_with = "no_max_concurrency")]
    max_concurrency: Option<u32>,
    /// No cap on concurrent attempts (the limit keeps its rate).
    #[arg(long)]
    no_max_concurrency: bool,
    /// At most this many attempts start per period: `50/s`, `10/m`, `3/2s`.
    #[arg(long, value_name = "RATE", conflicts_with = "no_rate")]
    rate: Option<String>,
    /// No rate (the limit keeps its concurrency cap).
    #[arg(long)]
    no_rate: bool,
    /// How many starts the rate lets through at once after a quiet spell.
    #[arg(long, value_name = "N", conflicts_with = "no_rate")]
    burst: Option<u32>,
}

impl Changes {
    /// The body of `PATCH /limits/{name}`: given options, and `null` for each `--no-…`.
    fn patch(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        fn field<T: Into<Value> + Clone>(value: Option<&T>, clear: bool) -> Option<Value> {
            match value {
                Some(value) => Some(value.clone().into()),
                None if clear => Some(Value::Null),
                None => None,
            }
        }
        let fields = [
            ("service", field(self.service.as_ref(), false)),
            ("handler", field(self.handler.as_ref(), self.no_handler)),
            (
                "key_prefix",
                field(self.key_prefix.as_ref(), self.no_key_prefix),
            ),
            (
                "max_concurrency",
                field(self.max_concurrency.as_ref(), self.no_max_concurrency),
            ),
            ("rate", field(self.rate.as_ref(), self.no_rate)),
            ("burst", field(self.burst.as_ref(), false)),
        ];
        fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
            .collect()
    }
}

/// A limit as the admin API shows it.
#[derive(Deserialize)]
pub struct Limit {
    name: String,
    service: String,
    handler: Option<String>,
    key_prefix: Option<String>,
    max_concurrency: Option<u32>,
    rate: Option<String>,
    burst: Option<u32>,
}

impl Limit {
    fn rate(&self) -> String {
        match (&self.rate, self.burst) {
            (Some(rate), Some(burst)) => format!("{rate} (burst {burst})"),
            (Some(rate), None) => rate.clone(),
            (None, _) => "-".to_owned(),
        }
    }

    fn max_concurrency(&self) -> String {
        self.max_concurrency
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    }
}

/// `{"limits": […]}`.
#[derive(Deserialize)]
struct LimitList {
    limits: Vec<Limit>,
}

/// What a limit's home partition keeps of it (`sys_queue`, summed over partitions).
#[derive(Deserialize, Serialize, Default)]
struct Queue {
    #[serde(skip_serializing)]
    name: String,
    /// Permits out: attempts running under the limit.
    running: u64,
    /// Invocations waiting for a permit.
    queued: u64,
    /// When the oldest waiting invocation asked.
    oldest_queued_at: Option<String>,
    /// How long it has waited, by the node's clock.
    #[serde(skip_serializing)]
    oldest_wait_ms: Option<i64>,
    /// Permits granted since the limit was created.
    granted: u64,
}

/// `sys_queue` per limit; the wait is measured on the node, whose clock stamped the queue.
const QUEUE_SQL: &str = "SELECT name, SUM(running) AS running, SUM(queued) AS queued, \
     MIN(oldest_queued_at) AS oldest_queued_at, \
     CAST(date_part('epoch', now()) * 1000 AS BIGINT) \
     - CAST(date_part('epoch', MIN(oldest_queued_at)) * 1000 AS BIGINT) AS oldest_wait_ms, \
     SUM(granted) AS granted FROM sys_queue";

/// The queues of every limit (or only of `name`) by limit name; a limit without a row has
/// nothing out and nothing waiting. The definitions matter more than the figures: a failed query
/// is reported on stderr and gives `None`.
fn queues(ctx: &Ctx<'_>, name: Option<&str>) -> Option<HashMap<String, Queue>> {
    let filter = name.map_or_else(String::new, |name| format!(" WHERE name = {}", quote(name)));
    let sql = format!("{QUEUE_SQL}{filter} GROUP BY name");
    match ctx.query::<Queue>(&sql) {
        Ok(found) => Some(
            found
                .rows
                .into_iter()
                .map(|queue| (queue.name.clone(), queue))
                .collect(),
        ),
        Err(e) => {
            eprintln!("holdfast: the queue figures are left out: {e:#}");
            None
        }
    }
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: LimitsCommand) -> anyhow::Result<()> {
    let path = |name: &str| format!("/limits/{}", segment(name));
    let body = match command {
        LimitsCommand::List => return list(ctx),
        LimitsCommand::Describe { name } => return describe(ctx, &path(&name)),
        LimitsCommand::Create(definition) => {
            let body = serde_json::to_value(&definition)?;
            ctx.admin.send_json("POST", "/limits", &body)?.body
        }
        LimitsCommand::Update(changes) => {
            let patch = changes.patch();
            if patch.is_empty() {
                bail!(
                    "nothing to change: pass at least one of --service, --handler, --no-handler, \
                     --key-prefix, --no-key-prefix, --max-concurrency, --no-max-concurrency, \
                     --rate, --no-rate, --burst"
                );
            }
            let patch = serde_json::Value::Object(patch);
            ctx.admin
                .send_json("PATCH", &path(&changes.name), &patch)?
                .body
        }
        LimitsCommand::Delete { name } => {
            ctx.admin.send_empty("DELETE", &path(&name))?;
            let gone = serde_json::json!({ "deleted": name });
            return ctx.print_value(&gone, || format!("limit {name} deleted\n"));
        }
    };
    let limit: Limit = parse(&body)?;
    ctx.print(&body, || fields(&definition(&limit)))
}

/// `limits list`: the definitions, each with its queue (`"queue"` in `--json`).
fn list(ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let (list, body): (LimitList, String) = ctx.get("/limits")?;
    let queues = if list.limits.is_empty() {
        Some(HashMap::new())
    } else {
        queues(ctx, None)
    };
    if ctx.json {
        let mut value: serde_json::Value = parse(&body)?;
        if let (Some(queues), Some(limits)) = (
            &queues,
            value
                .get_mut("limits")
                .and_then(serde_json::Value::as_array_mut),
        ) {
            for limit in limits
                .iter_mut()
                .filter_map(serde_json::Value::as_object_mut)
            {
                let queue = limit
                    .get("name")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|name| queues.get(name));
                let queue = serde_json::to_value(queue.unwrap_or(&Queue::default()))?;
                limit.insert("queue".to_owned(), queue);
            }
        }
        return ctx.print_value(&value, String::new);
    }
    ctx.print(&body, || {
        if list.limits.is_empty() {
            "no limits\n".to_owned()
        } else {
            limit_table(&list.limits, queues.as_ref()).render(width())
        }
    })
}

/// `limits describe`: the definition and its queue.
fn describe(ctx: &Ctx<'_>, path: &str) -> anyhow::Result<()> {
    let (limit, body): (Limit, String) = ctx.get(path)?;
    let queue = queues(ctx, Some(&limit.name))
        .map(|mut queues| queues.remove(&limit.name).unwrap_or_default());
    if ctx.json {
        let mut value: serde_json::Value = parse(&body)?;
        if let (Some(queue), Some(fields)) = (&queue, value.as_object_mut()) {
            fields.insert("queue".to_owned(), serde_json::to_value(queue)?);
        }
        return ctx.print_value(&value, String::new);
    }
    let mut pairs = definition(&limit);
    if let Some(queue) = &queue {
        pairs.extend([
            ("running", running(&limit, queue)),
            ("queued", queue.queued.to_string()),
            ("oldest wait", oldest_wait(queue)),
            ("granted", queue.granted.to_string()),
        ]);
    }
    ctx.print(&body, || fields(&pairs))
}

/// One row per limit, with its queue (`-` when the figures are missing).
fn limit_table(limits: &[Limit], queues: Option<&HashMap<String, Queue>>) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "SERVICE",
        "HANDLER",
        "KEY PREFIX",
        "MAX CONCURRENCY",
        "RATE",
        "RUNNING",
        "QUEUED",
        "OLDEST WAIT",
    ])
    .whole(0);
    let idle = Queue::default();
    for limit in limits {
        let mut row = vec![
            limit.name.clone(),
            limit.service.clone(),
            or_dash(limit.handler.as_deref()),
            or_dash(limit.key_prefix.as_deref()),
            limit.max_concurrency(),
            limit.rate(),
        ];
        match queues {
            Some(queues) => {
                let queue = queues.get(&limit.name).unwrap_or(&idle);
                row.extend([
                    queue.running.to_string(),
                    queue.queued.to_string(),
                    oldest_wait(queue),
                ]);
            }
            None => row.extend(["-", "-", "-"].map(str::to_owned)),
        }
        table.row(row);
    }
    table
}

/// A limit's definition as `name  value` pairs.
fn definition(limit: &Limit) -> Vec<(&'static str, String)> {
    vec![
        ("limit", limit.name.clone()),
        ("service", limit.service.clone()),
        ("handler", or_dash(limit.handler.as_deref())),
        ("key prefix", or_dash(limit.key_prefix.as_deref())),
        ("max concurrency", limit.max_concurrency()),
        ("rate", limit.rate()),
    ]
}

/// Permits out, against the cap when there is one: `3 of 10`.
fn running(limit: &Limit, queue: &Queue) -> String {
    match limit.max_concurrency {
        Some(max) => format!("{} of {max}", queue.running),
        None => queue.running.to_string(),
    }
}

/// How long the oldest waiting invocation has waited, or `-` when none waits.
fn oldest_wait(queue: &Queue) -> String {
    match (queue.queued, queue.oldest_wait_ms) {
        (0, _) | (_, None) => "-".to_owned(),
        (_, Some(ms)) => span(u64::try_from(ms).unwrap_or(0)),
    }
}

/// A duration in its two largest units: `850ms`, `12s`, `4m05s`, `2h10m`, `3d04h`.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: LimitsCommand,
    }

    fn patch(args: &[&str]) -> serde_json::Value {
        let cli = Cli::try_parse_from([&["limits", "update", "api"], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            LimitsCommand::Update(changes) => serde_json::Value::Object(changes.patch()),
            other => panic!("not an update: {other:?}"),
        }
    }

    #[test]
    fn updates_send_only_what_is_given_and_null_for_what_is_cleared() {
        assert_eq!(
            patch(&["--max-concurrency", "4"]),
            serde_json::json!({"max_concurrency": 4})
        );
        assert_eq!(
            patch(&["--no-rate", "--handler", "h"]),
            serde_json::json!({"rate": null, "handler": "h"})
        );
        assert_eq!(
            patch(&["--rate", "5/s", "--burst", "3", "--no-max-concurrency"]),
            serde_json::json!({"rate": "5/s", "burst": 3, "max_concurrency": null})
        );
        assert_eq!(patch(&[]), serde_json::json!({}));
        let both = ["limits", "update", "api", "--rate", "1/s", "--no-rate"];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn a_new_limit_needs_a_cap_or_a_rate() {
        let args = ["limits", "create", "api", "--service", "S"];
        assert!(Cli::try_parse_from(args).is_err());
        let burst_alone = [&args[..], &["--max-concurrency", "2", "--burst", "4"]].concat();
        assert!(Cli::try_parse_from(burst_alone).is_err());
        let rated = [&args[..], &["--rate", "10/m"]].concat();
        assert!(Cli::try_parse_from(rated).is_ok());
    }

    #[test]
    fn waits_read_in_their_two_largest_units() {
        assert_eq!(span(850), "850ms");
        assert_eq!(span(12_400), "12s");
        assert_eq!(span(245_000), "4m05s");
        assert_eq!(span(7_800_000), "2h10m");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }
}
