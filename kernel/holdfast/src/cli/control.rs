//! `holdfast invocations cancel|kill|purge|pause|resume`: one invocation by id, or every
//! invocation matching filters (counted, confirmed, then acted on one by one).

use super::filter::Filter;
use super::invocations::invocation_id;
use super::{Ctx, segment};
use crate::admin_client::AdminError;
use anyhow::{Context as _, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};

/// An operator action on invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `cancel`.
    Cancel,
    /// `kill`.
    Kill,
    /// `purge`.
    Purge,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
}

impl Action {
    /// The path segment and verb.
    fn name(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Kill => "kill",
            Action::Purge => "purge",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    /// The verb in the past tense, for progress and summaries.
    fn done(self) -> &'static str {
        match self {
            Action::Cancel => "cancelled",
            Action::Kill => "killed",
            Action::Purge => "purged",
            Action::Pause => "paused",
            Action::Resume => "resumed",
        }
    }
}

/// Which invocations an action applies to: one id, or every match of the filters.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The invocation id (`inv_…`); without one, every invocation matching the filters.
    id: Option<String>,
    #[command(flatten)]
    filter: Filter,
    /// With filters: act on at most this many matches, newest first.
    #[arg(long)]
    limit: Option<usize>,
    /// With filters: do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// What became of a bulk action, for `--json` and the summary line.
#[derive(Serialize, Default)]
struct Summary {
    action: &'static str,
    /// The action's past tense, for the text summary.
    #[serde(skip)]
    verb: &'static str,
    matched: usize,
    done: usize,
    /// Skipped invocations by the admin API's reason code (`invocation_completed`, …).
    skipped: BTreeMap<String, usize>,
    failed: Vec<Failed>,
}

/// An invocation the action failed on.
#[derive(Serialize)]
struct Failed {
    id: String,
    error: String,
}

/// How one request ended.
enum Outcome {
    Done(u16),
    /// The invocation's state made it moot (404 gone, 409 refused).
    Skipped {
        /// The admin API's code for it (`invocation_completed`).
        reason: String,
        /// Its message.
        message: String,
    },
    Failed(String),
}

impl Target {
    /// Applies `action` (with `?deployment=` for resume).
    pub fn apply(
        &self,
        ctx: &Ctx<'_>,
        action: Action,
        deployment: Option<&str>,
    ) -> anyhow::Result<()> {
        match (&self.id, self.filter.is_empty()) {
            (Some(_), false) => bail!("give an invocation id or filters, not both"),
            (None, true) => bail!(
                "give an invocation id, or filters (--service, --handler, --key, --status, \
                 --older-than, --newer-than) to {} every match",
                action.name()
            ),
            (Some(id), true) => one(ctx, action, &invocation_id(id)?, deployment),
            (None, false) => self.bulk(ctx, action, deployment),
        }
    }

    fn bulk(&self, ctx: &Ctx<'_>, action: Action, deployment: Option<&str>) -> anyhow::Result<()> {
        let limit = self
            .limit
            .map(|n| format!(" LIMIT {n}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT id FROM sys_invocation{} ORDER BY created_at DESC, id{limit}",
            self.filter.where_clause()
        );
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        let found = ctx.query::<Id>(&sql)?;
        if found.truncated {
            bail!(
                "more invocations match than the node lists at once ([sql] max_rows); narrow the \
                 filters or pass --limit"
            );
        }
        let ids: Vec<String> = found.rows.into_iter().map(|r| r.id).collect();
        let mut summary = Summary {
            action: action.name(),
            verb: action.done(),
            matched: ids.len(),
            ..Summary::default()
        };
        if !ids.is_empty() && !self.yes {
            confirm(action, ids.len())?;
        } else {
            eprintln!("{} invocation(s) match", ids.len());
        }
        let progress = std::io::stderr().is_terminal();
        for (n, id) in ids.iter().enumerate() {
            let outcome = request(ctx, action, id, deployment)
                .with_context(|| format!("stopped after {n} of {}", ids.len()))?;
            match outcome {
                Outcome::Done(_) => summary.done += 1,
                Outcome::Skipped { reason, .. } => *summary.skipped.entry(reason).or_default() += 1,
                Outcome::Failed(error) => summary.failed.push(Failed {
                    id: id.clone(),
                    error,
                }),
            }
            if progress {
                eprint!("\r {} {}/{}", action.done(), n + 1, ids.len());
            }
        }
        if progress && !ids.is_empty() {
            eprintln!();
        }
        ctx.print_value(&summary, || render(&summary))?;
        if !summary.failed.is_empty() {
            bail!(
                "{} of {} invocations could not be {}",
                summary.failed.len(),
                summary.matched,
                action.done()
            );
        }
        Ok(())
    }
}

/// One invocation: its outcome printed, an error unless done.
fn one(ctx: &Ctx<'_>, action: Action, id: &str, deployment: Option<&str>) -> anyhow::Result<()> {
    let status = match request(ctx, action, id, deployment)? {
        Outcome::Done(status) => status,
        Outcome::Skipped { message, .. } | Outcome::Failed(message) => bail!("{message}"),
    };
    let already = action == Action::Pause && status == 200;
    let value = serde_json::json!({ "id": id, "action": action.name(), "status": status });
    ctx.print_value(&value, || {
        if already {
            format!("{id} was already paused\n")
        } else {
            format!("{} {id}\n", action.done())
        }
    })
}

/// `PATCH /invocations/{id}/{action}`. Errors that would fail every request (unreachable,
/// refused token) end the command; the rest are the invocation's outcome.
fn request(
    ctx: &Ctx<'_>,
    action: Action,
    id: &str,
    deployment: Option<&str>,
) -> anyhow::Result<Outcome> {
    let query = deployment
        .map(|d| format!("?deployment={}", segment(d)))
        .unwrap_or_default();
    let path = format!("/invocations/{}/{}{query}", segment(id), action.name());
    match ctx.admin.send_empty("PATCH", &path) {
        Ok(response) => Ok(Outcome::Done(response.status)),
        Err(AdminError::Api {
            status: 404 | 409,
            code,
            message,
        }) => Ok(Outcome::Skipped {
            reason: code.unwrap_or_else(|| message.clone()),
            message,
        }),
        Err(AdminError::Api { message, .. }) => Ok(Outcome::Failed(message)),
        Err(fatal) => Err(fatal.into()),
    }
}

/// Asks on the terminal; refuses without one.
fn confirm(action: Action, count: usize) -> anyhow::Result<()> {
    let verb = action.name();
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to {verb} the {count} matching invocation(s) without confirmation: stdin \
             is not a terminal; pass --yes"
        );
    }
    eprint!("{count} invocation(s) match; {verb} them? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("nothing {}", action.done())
    }
}

fn render(summary: &Summary) -> String {
    let skipped: Vec<String> = summary
        .skipped
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    let mut out = format!("{} {} of {}", summary.verb, summary.done, summary.matched);
    if !skipped.is_empty() {
        out.push_str(&format!("; skipped {}", skipped.join(", ")));
    }
    out.push_str(&format!("; failed {}\n", summary.failed.len()));
    for failed in &summary.failed {
        out.push_str(&format!("  {}: {}\n", failed.id, failed.error));
    }
    out
}
