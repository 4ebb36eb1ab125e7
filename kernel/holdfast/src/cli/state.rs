//! `holdfast state get <service> <key>`: an object's or workflow's state, from the SQL `state`
//! table, values shown as JSON or UTF-8 text when they are.
//!
//! `holdfast state set <service> <key> <name> <json>` and `state clear <service> <key> [name]`
//! edit it: they read the key's entries from the `state` table (the `value` column's hex, so any
//! bytes round-trip), change one entry (or clear them all) and send the whole new state to
//! `POST /services/{service}/state` with the version of what they read. The kernel refuses the
//! edit if the state changed meanwhile (`state_version_mismatch`), and the read-modify-write is
//! retried; `--force` sends no version and overwrites whatever is there.

use super::filter::quote;
use super::table::{Table, width};
use super::{Ctx, segment};
use crate::admin_client::AdminError;
use anyhow::{Context as _, bail};
use holdfast_types::state_version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How often a refused edit is read, changed and sent again before giving up.
const RETRIES: usize = 3;

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
    /// Set one state entry of a virtual object or workflow, keeping the others. Refused while
    /// an invocation holds the key.
    Set {
        /// The service (a virtual object or workflow).
        service: String,
        /// The object's or workflow's key.
        key: String,
        /// The entry's name.
        name: String,
        /// The entry's new value, as JSON (`'"text"'`, `42`, `'{"a":1}'`).
        value: String,
        /// Overwrite the state even if it changed while it was edited (send no version).
        #[arg(long)]
        force: bool,
    },
    /// Remove one state entry of a virtual object or workflow, or all of its state. Refused
    /// while an invocation holds the key.
    Clear {
        /// The service (a virtual object or workflow).
        service: String,
        /// The object's or workflow's key.
        key: String,
        /// The entry to remove; default: every entry.
        name: Option<String>,
        /// Overwrite the state even if it changed while it was edited (send no version).
        #[arg(long)]
        force: bool,
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
    match command {
        StateCommand::Get { service, key } => get(ctx, service, key),
        StateCommand::Set {
            service,
            key,
            name,
            value,
            force,
        } => {
            let value: serde_json::Value = serde_json::from_str(&value)
                .with_context(|| format!("the value of {name} is not JSON: {value}"))?;
            let bytes = serde_json::to_vec(&value)?;
            let done = format!("set {name} of {service}/{key}\n");
            edit(
                ctx,
                Edit::Set(&name),
                &service,
                &key,
                force,
                done,
                |state| {
                    state.insert(name.clone(), bytes.clone());
                },
            )
        }
        StateCommand::Clear {
            service,
            key,
            name: Some(name),
            force,
        } => {
            let done = format!("cleared {name} of {service}/{key}\n");
            edit(
                ctx,
                Edit::Clear(&name),
                &service,
                &key,
                force,
                done,
                |state| {
                    state.remove(&name);
                },
            )
        }
        StateCommand::Clear {
            service,
            key,
            name: None,
            force,
        } => {
            let done = format!("cleared the state of {service}/{key}\n");
            edit(ctx, Edit::ClearAll, &service, &key, force, done, |state| {
                state.clear();
            })
        }
    }
}

fn get(ctx: &Ctx<'_>, service: String, key: String) -> anyhow::Result<()> {
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

/// What `state set` or `state clear` changes.
#[derive(Clone, Copy)]
enum Edit<'a> {
    Set(&'a str),
    Clear(&'a str),
    ClearAll,
}

/// `state set --json` and `state clear --json`.
#[derive(Serialize)]
struct Edited<'a> {
    service: &'a str,
    key: &'a str,
    /// `set`, `clear` or `clear_all`.
    action: &'static str,
    /// The entry set or cleared; absent for `clear_all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// The version of the state the edit was based on; `null` with `--force`.
    based_on: Option<String>,
    /// The version of the new state.
    version: String,
    /// How many read-modify-writes it took.
    attempts: usize,
}

/// The body of `POST /services/{service}/state`.
#[derive(Serialize)]
struct EditBody<'a> {
    version: Option<&'a str>,
    object_key: &'a str,
    new_state: &'a BTreeMap<String, Vec<u8>>,
}

/// Reads the key's state, applies `change` and sends the new state with the version of what was
/// read; a refusal because the state changed meanwhile starts over, up to [`RETRIES`] times.
fn edit(
    ctx: &Ctx<'_>,
    what: Edit<'_>,
    service: &str,
    key: &str,
    force: bool,
    done: String,
    change: impl Fn(&mut BTreeMap<String, Vec<u8>>),
) -> anyhow::Result<()> {
    let path = format!("/services/{}/state", segment(service));
    for attempt in 1..=RETRIES + 1 {
        let mut state = read(ctx, service, key)?;
        let based_on = (!force).then(|| state_version(&state));
        change(&mut state);
        let body = EditBody {
            version: based_on.as_deref(),
            object_key: key,
            new_state: &state,
        };
        match ctx.admin.send_json("POST", &path, &body) {
            Ok(_) => {
                let (action, name) = match what {
                    Edit::Set(name) => ("set", Some(name)),
                    Edit::Clear(name) => ("clear", Some(name)),
                    Edit::ClearAll => ("clear_all", None),
                };
                let edited = Edited {
                    service,
                    key,
                    action,
                    name,
                    based_on,
                    version: state_version(&state),
                    attempts: attempt,
                };
                return ctx.print_value(&edited, || done);
            }
            Err(AdminError::Api {
                status: 409,
                code: Some(code),
                ..
            }) if code == "state_version_mismatch" => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "the state of {service}/{key} changed each time it was read ({} attempts): try again, \
         or pass --force to overwrite it",
        RETRIES + 1
    )
}

/// A row of `state` with the value's bytes.
#[derive(Deserialize)]
struct RawRow {
    key: String,
    /// The bytes in hex.
    value: Option<String>,
}

/// The key's state as stored: each entry's name and exact bytes.
fn read(ctx: &Ctx<'_>, service: &str, key: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let sql = format!(
        "SELECT key, value FROM state WHERE service_name = {} AND service_key = {} ORDER BY key",
        quote(service),
        quote(key)
    );
    let rows = ctx.query::<RawRow>(&sql)?;
    if rows.truncated {
        bail!(
            "the state of {service}/{key} is larger than the admin API sends in one answer: it \
             cannot be edited entry by entry"
        );
    }
    rows.rows
        .into_iter()
        .map(|row| {
            let bytes = unhex(row.value.as_deref().unwrap_or_default())
                .with_context(|| format!("the admin API sent the value of {} garbled", row.key))?;
            Ok((row.key, bytes))
        })
        .collect()
}

/// The bytes `text` (hex digits, as the `/query` JSON shows binary columns) stands for.
fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .context("not hex")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn hex_values_round_trip() {
        assert_eq!(unhex("").expect("empty"), Vec::<u8>::new());
        assert_eq!(unhex("00ff7B35").expect("hex"), vec![0, 0xff, 0x7b, 0x35]);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }
}
