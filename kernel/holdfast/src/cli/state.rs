//! `holdfast state get <service> <key>`: an object's or workflow's state, from the SQL `state`
//! table, values shown as JSON or UTF-8 text when they are.

use super::filter::quote;
use super::table::{Table, width};
use super::{Ctx, segment};
use serde::{Deserialize, Serialize};

/// What `holdfast state` does.
#[derive(clap::Subcommand, Debug)]
pub enum StateCommand {
    /// Print the state of one virtual object or workflow: each entry's name and value.
    Get {
        /// The service (a virtual object or workflow).
        service: String,
        /// The object's or workflow's key.
        key: String,
    },
}

/// A row of `state`.
#[derive(Deserialize)]
struct Row {
    key: String,
    value_utf8: Option<String>,
    value: Option<String>,
    value_length: u64,
}

/// One entry, as `--json` prints it.
#[derive(Serialize)]
struct Entry {
    key: String,
    /// The value parsed as JSON, else as UTF-8 text; `null` for other bytes.
    value: serde_json::Value,
    /// The bytes in hex, when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
    length: u64,
    /// The value as stored, when it is text (shown as it is in tables).
    #[serde(skip)]
    text: Option<String>,
}

/// `state get --json`.
#[derive(Serialize)]
struct State {
    service: String,
    key: String,
    entries: Vec<Entry>,
}

/// Runs `command`.
pub fn run(ctx: &Ctx<'_>, command: StateCommand) -> anyhow::Result<()> {
    let StateCommand::Get { service, key } = command;
    // An unknown service is an error, not an empty state.
    ctx.admin.get(&format!("/services/{}", segment(&service)))?;
    let sql = format!(
        "SELECT key, value_utf8, value, value_length FROM state WHERE service_name = {} AND \
         service_key = {} ORDER BY key",
        quote(&service),
        quote(&key)
    );
    let entries = ctx
        .query::<Row>(&sql)?
        .rows
        .into_iter()
        .map(|row| {
            let value = match &row.value_utf8 {
                Some(text) => serde_json::from_str(text)
                    .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
                None => serde_json::Value::Null,
            };
            Entry {
                key: row.key,
                value_hex: row.value.filter(|_| row.value_utf8.is_none()),
                value,
                length: row.value_length,
                text: row.value_utf8,
            }
        })
        .collect();
    let state = State {
        service,
        key,
        entries,
    };
    ctx.print_value(&state, || render(&state))
}

fn render(state: &State) -> String {
    if state.entries.is_empty() {
        return format!("no state for {}/{}\n", state.service, state.key);
    }
    let mut table = Table::new(&["KEY", "BYTES", "VALUE"]).whole(0);
    for entry in &state.entries {
        let value = match (&entry.text, &entry.value_hex) {
            (Some(text), _) => text.clone(),
            (None, Some(hex)) => format!("0x{hex}"),
            (None, None) => "-".to_owned(),
        };
        table.row(vec![entry.key.clone(), entry.length.to_string(), value]);
    }
    table.render(width())
}
