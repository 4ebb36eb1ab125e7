//! `holdfast invocations list|describe|cancel|kill|purge|pause|resume`: reads through SQL
//! (`sys_invocation`, `sys_journal`), acts through `PATCH /invocations/{id}/{action}`.

use super::control::{Action, Target};
use super::filter::{Filter, quote};
use super::table::{Table, fields, width};
use super::{Ctx, or_dash};
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// What `holdfast invocations` does.
#[derive(clap::Subcommand, Debug)]
pub enum InvocationsCommand {
    /// List invocations, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show an invocation: its target, status, times, attempts and failure, then its journal.
    Describe {
        /// The invocation id (`inv_…`).
        id: String,
    },
    /// Cancel: the handler sees a cancellation at its next step and may compensate.
    Cancel(Target),
    /// Kill: stop at once, without running the handler again.
    Kill(Target),
    /// Purge a completed invocation's result and journal.
    Purge(Target),
    /// Pause: stop retrying until resumed.
    Pause(Target),
    /// Resume a paused invocation (or retry a backing-off one now).
    Resume {
        #[command(flatten)]
        target: Target,
        /// Which deployment the next attempt uses: `keep` (default), `latest` or a `dp_…` id.
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: Option<String>,
    },
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: InvocationsCommand) -> anyhow::Result<()> {
    match command {
        InvocationsCommand::List { filter, limit } => list(ctx, &filter, limit),
        InvocationsCommand::Describe { id } => describe(ctx, &id),
        InvocationsCommand::Cancel(target) => target.apply(ctx, Action::Cancel, None),
        InvocationsCommand::Kill(target) => target.apply(ctx, Action::Kill, None),
        InvocationsCommand::Purge(target) => target.apply(ctx, Action::Purge, None),
        InvocationsCommand::Pause(target) => target.apply(ctx, Action::Pause, None),
        InvocationsCommand::Resume { target, deployment } => {
            target.apply(ctx, Action::Resume, deployment.as_deref())
        }
    }
}

/// An invocation in a listing.
#[derive(Deserialize, Serialize)]
struct Listed {
    id: String,
    target: String,
    status: String,
    created_at: Option<String>,
    completed_at: Option<String>,
    retry_count: Option<u64>,
    last_failure: Option<String>,
    completion_failure: Option<String>,
}

fn list(ctx: &Ctx<'_>, filter: &Filter, limit: usize) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT id, target, status, created_at, completed_at, retry_count, last_failure, \
         completion_failure FROM sys_invocation{} ORDER BY created_at DESC, id LIMIT {limit}",
        filter.where_clause()
    );
    let found = ctx.query::<Listed>(&sql)?;
    if found.truncated {
        eprintln!(
            "holdfast: the node cut the list off at its [sql] limits; narrow the filters or \
             lower --limit"
        );
    }
    ctx.print_value(&found.rows, || {
        let mut table =
            Table::new(&["ID", "TARGET", "STATUS", "CREATED", "ATTEMPTS", "FAILURE"]).whole(0);
        for row in &found.rows {
            let failure = row
                .completion_failure
                .as_ref()
                .or(row.last_failure.as_ref());
            table.row(vec![
                row.id.clone(),
                row.target.clone(),
                row.status.clone(),
                or_dash(row.created_at.as_deref()),
                row.retry_count
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                or_dash(failure.map(String::as_str)),
            ]);
        }
        if table.is_empty() {
            "no invocations match\n".to_owned()
        } else {
            table.render(width())
        }
    })
}

/// An invocation in full, as `sys_invocation` has it.
#[derive(Deserialize, Serialize)]
struct Invocation {
    id: String,
    target: String,
    target_service_ty: Option<String>,
    status: String,
    invoked_by: Option<String>,
    invoked_by_id: Option<String>,
    pinned_deployment_id: Option<String>,
    retry_count: Option<u64>,
    last_failure: Option<String>,
    last_failure_error_code: Option<String>,
    trace_id: Option<String>,
    idempotency_key: Option<String>,
    journal_size: Option<u32>,
    created_at: Option<String>,
    modified_at: Option<String>,
    completed_at: Option<String>,
    scheduled_start_at: Option<String>,
    completion_result: Option<String>,
    completion_failure: Option<String>,
}

/// A journal entry, as `sys_journal` has it.
#[derive(Deserialize, Serialize)]
struct Entry {
    index: u32,
    entry_type: String,
    name: Option<String>,
    completed: Option<bool>,
    invoked_id: Option<String>,
    invoked_target: Option<String>,
    sleep_wakeup_at: Option<String>,
    promise_name: Option<String>,
    appended_at: Option<String>,
    completion_result: Option<String>,
    completion_failure: Option<String>,
}

/// `invocations describe --json`.
#[derive(Serialize)]
struct Described {
    invocation: Invocation,
    journal: Vec<Entry>,
}

/// The public text of the invocation id `text` (either text is accepted), which needs no quoting.
pub fn invocation_id(text: &str) -> anyhow::Result<String> {
    let id = text
        .parse::<holdfast_types::InvocationId>()
        .with_context(|| {
            format!("'{text}' is not an invocation id (inv_1 and 33 base62 digits)")
        })?;
    Ok(id.to_string())
}

fn describe(ctx: &Ctx<'_>, id: &str) -> anyhow::Result<()> {
    let id = quote(&invocation_id(id)?);
    let found =
        ctx.query::<Invocation>(&format!("SELECT * FROM sys_invocation WHERE id = {id}"))?;
    let Some(invocation) = found.rows.into_iter().next() else {
        bail!("no invocation {}", id.trim_matches('\''));
    };
    let journal = ctx
        .query::<Entry>(&format!(
            "SELECT * FROM sys_journal WHERE id = {id} ORDER BY index"
        ))?
        .rows;
    let described = Described {
        invocation,
        journal,
    };
    ctx.print_value(&described, || render(&described))
}

fn render(described: &Described) -> String {
    let i = &described.invocation;
    let invoked_by = match (&i.invoked_by, &i.invoked_by_id) {
        (Some(by), Some(caller)) => format!("{by} ({caller})"),
        (by, _) => or_dash(by.as_deref()),
    };
    let failure = match (&i.last_failure, &i.last_failure_error_code) {
        (Some(message), Some(code)) => format!("[{code}] {message}"),
        (message, _) => or_dash(message.as_deref()),
    };
    let result = match (&i.completion_result, &i.completion_failure) {
        (_, Some(failure)) => format!("failure {failure}"),
        (result, None) => or_dash(result.as_deref()),
    };
    let mut out = fields(&[
        ("invocation", i.id.clone()),
        (
            "target",
            format!("{} ({})", i.target, or_dash(i.target_service_ty.as_deref())),
        ),
        ("status", i.status.clone()),
        ("created", or_dash(i.created_at.as_deref())),
        ("modified", or_dash(i.modified_at.as_deref())),
        ("scheduled start", or_dash(i.scheduled_start_at.as_deref())),
        ("completed", or_dash(i.completed_at.as_deref())),
        ("result", result),
        (
            "attempts",
            i.retry_count
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        ),
        ("last failure", failure),
        ("deployment", or_dash(i.pinned_deployment_id.as_deref())),
        ("invoked by", invoked_by),
        ("idempotency key", or_dash(i.idempotency_key.as_deref())),
        ("trace id", or_dash(i.trace_id.as_deref())),
    ]);
    let mut timeline = Table::new(&["#", "AT", "KIND", "NAME", "DETAIL", "STATE"]);
    for entry in &described.journal {
        // The input entry was written when the invocation was created.
        let at = entry
            .appended_at
            .as_deref()
            .or(i.created_at.as_deref().filter(|_| entry.index == 0));
        timeline.row(vec![
            entry.index.to_string(),
            or_dash(at),
            entry.entry_type.clone(),
            or_dash(entry.name.as_deref().or(entry.promise_name.as_deref())),
            detail(entry),
            state(entry),
        ]);
    }
    out.push_str(&format!(
        "\njournal ({} entries)\n",
        described.journal.len()
    ));
    out.push_str(&timeline.render(width()));
    out
}

/// How far an entry got: waiting, done, or the result of one that completes (a failure with
/// its code and message).
fn state(entry: &Entry) -> String {
    match (
        entry.completed,
        entry.completion_result.as_deref(),
        &entry.completion_failure,
    ) {
        (Some(false), ..) => "waiting".to_owned(),
        (_, Some("failure"), Some(failure)) => format!("failed {failure}"),
        (_, Some(result), _) => result.to_owned(),
        (Some(true), None, _) => "done".to_owned(),
        (None, ..) => "-".to_owned(),
    }
}

/// What a journal entry points at: a call's target and callee, a sleep's wake-up time.
fn detail(entry: &Entry) -> String {
    match (
        &entry.invoked_target,
        &entry.invoked_id,
        &entry.sleep_wakeup_at,
    ) {
        (Some(target), Some(callee), _) => format!("→ {target} ({callee})"),
        (Some(target), None, _) => format!("→ {target}"),
        (None, _, Some(at)) => format!("until {at}"),
        _ => "-".to_owned(),
    }
}
