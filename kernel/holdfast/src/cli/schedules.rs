//! `holdfast schedules list|describe|create|pause|resume|delete`: `/schedules` of the admin API.

use super::table::{Table, fields, width};
use super::{Ctx, or_dash, parse, segment};
use serde::{Deserialize, Serialize};

/// What `holdfast schedules` does.
#[derive(clap::Subcommand, Debug)]
pub enum SchedulesCommand {
    /// List the schedules with their next tick.
    List,
    /// Show one schedule.
    Describe {
        /// Its name.
        name: String,
    },
    /// Create a schedule (`POST /schedules`): `--cron` (with `--timezone`) or `--every`.
    Create(Box<Definition>),
    /// Pause a schedule: it fires nothing until resumed.
    Pause {
        /// Its name.
        name: String,
    },
    /// Resume a paused schedule; ticks while it was paused are not due.
    Resume {
        /// Its name.
        name: String,
    },
    /// Remove a schedule; ticks it queued still run.
    Delete {
        /// Its name.
        name: String,
    },
}

/// The body of `POST /schedules`.
#[derive(clap::Args, Serialize, Debug)]
pub struct Definition {
    /// The schedule's name (A-Z, a-z, 0-9, '.', '_', '-').
    name: String,
    /// The service, virtual object or workflow to invoke.
    #[arg(long)]
    service: String,
    /// Its handler.
    #[arg(long)]
    handler: String,
    /// The object's key, or a workflow's key with `{tick}` or `{tick_ms}` in it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The JSON each tick sends as input.
    #[arg(long, value_name = "JSON", value_parser = json_value)]
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<serde_json::Value>,
    /// A cron expression: 5 fields, 6 (seconds first) or an alias such as `@hourly`.
    #[arg(long, conflicts_with = "every")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default UTC).
    #[arg(long, requires = "cron")]
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    /// A fixed interval (`500ms`, `30s`, `5m`, `1h30m`).
    #[arg(long, value_name = "DURATION", required_unless_present = "cron")]
    #[serde(skip_serializing_if = "Option::is_none")]
    every: Option<String>,
    /// Missed ticks after downtime: `skip` (default), `latest` or `all`.
    #[arg(long, value_name = "POLICY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up: Option<String>,
    /// With `--catch-up all`: at most this many missed ticks fire.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up_max: Option<u32>,
    /// A tick while an earlier one runs: `skip` (default), `queue` or `allow`.
    #[arg(long, value_name = "POLICY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    overlap: Option<String>,
}

fn json_value(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// A schedule as the admin API shows it.
#[derive(Deserialize)]
pub struct Schedule {
    name: String,
    service: String,
    handler: String,
    key: Option<String>,
    input: Option<serde_json::Value>,
    cron: Option<String>,
    timezone: Option<String>,
    every: Option<String>,
    catch_up: String,
    catch_up_max: Option<u32>,
    overlap: String,
    paused: bool,
    next_fire_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl Schedule {
    fn when(&self) -> String {
        match (&self.cron, &self.every) {
            (Some(cron), _) => format!("{cron} ({})", or_dash(self.timezone.as_deref())),
            (None, Some(every)) => format!("every {every}"),
            (None, None) => "-".to_owned(),
        }
    }

    fn target(&self) -> String {
        match &self.key {
            Some(key) => format!("{}/{key}/{}", self.service, self.handler),
            None => format!("{}/{}", self.service, self.handler),
        }
    }
}

/// `{"schedules": […]}`.
#[derive(Deserialize)]
struct ScheduleList {
    schedules: Vec<Schedule>,
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: SchedulesCommand) -> anyhow::Result<()> {
    let path = |name: &str| format!("/schedules/{}", segment(name));
    let body = match command {
        SchedulesCommand::List => {
            let (list, body): (ScheduleList, _) = ctx.get("/schedules")?;
            return ctx.print(&body, || {
                if list.schedules.is_empty() {
                    "no schedules\n".to_owned()
                } else {
                    schedule_table(&list.schedules).render(width())
                }
            });
        }
        SchedulesCommand::Describe { name } => ctx.admin.get(&path(&name))?.body,
        SchedulesCommand::Create(definition) => {
            let body = serde_json::to_value(&definition)?;
            ctx.admin.send_json("POST", "/schedules", &body)?.body
        }
        SchedulesCommand::Pause { name } => {
            let body = serde_json::json!({ "paused": true });
            ctx.admin.send_json("PATCH", &path(&name), &body)?.body
        }
        SchedulesCommand::Resume { name } => {
            let body = serde_json::json!({ "paused": false });
            ctx.admin.send_json("PATCH", &path(&name), &body)?.body
        }
        SchedulesCommand::Delete { name } => {
            ctx.admin.send_empty("DELETE", &path(&name))?;
            let gone = serde_json::json!({ "deleted": name });
            return ctx.print_value(&gone, || format!("schedule {name} deleted\n"));
        }
    };
    let schedule: Schedule = parse(&body)?;
    ctx.print(&body, || describe(&schedule))
}

/// One row per schedule.
fn schedule_table(schedules: &[Schedule]) -> Table {
    let mut table = Table::new(&["NAME", "TARGET", "WHEN", "NEXT", "PAUSED"]).whole(0);
    for s in schedules {
        table.row(vec![
            s.name.clone(),
            s.target(),
            s.when(),
            or_dash(s.next_fire_at.as_deref()),
            s.paused.to_string(),
        ]);
    }
    table
}

/// A schedule's fields.
fn describe(s: &Schedule) -> String {
    let catch_up = match s.catch_up_max {
        Some(max) => format!("{} (at most {max})", s.catch_up),
        None => s.catch_up.clone(),
    };
    let pairs = [
        ("schedule", s.name.clone()),
        ("target", s.target()),
        (
            "input",
            s.input
                .as_ref()
                .map_or_else(|| "-".to_owned(), serde_json::Value::to_string),
        ),
        ("when", s.when()),
        ("next tick", or_dash(s.next_fire_at.as_deref())),
        ("catch up", catch_up),
        ("overlap", s.overlap.clone()),
        ("paused", s.paused.to_string()),
        ("created", s.created_at.clone()),
        ("updated", s.updated_at.clone()),
    ];
    fields(&pairs)
}
