//! `holdfast sql "<query>"`: the node renders the rows as a psql-style table (`accept:
//! text/plain`); `--json` prints them as a JSON array.

use super::{Ctx, emit, parse};

/// The answer of `POST /query`.
#[derive(serde::Deserialize)]
struct Answer {
    rows: Vec<serde_json::Value>,
}

/// Runs `query` and prints its rows.
pub fn run(ctx: &Ctx<'_>, query: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "query": query }).to_string();
    let accept = if ctx.json {
        "application/json"
    } else {
        "text/plain"
    };
    let response = ctx.admin.send("POST", "/query", Some(&body), accept)?;
    if response.header("x-holdfast-truncated") == Some("true") {
        eprintln!(
            "holdfast: the result was cut off at the node's [sql] max_rows or max_result_bytes"
        );
    }
    if !ctx.json {
        return emit(&response.body);
    }
    let answer: Answer = parse(&response.body)?;
    // The node writes `{"rows":[…]}` with each row's columns in query order; parsed objects
    // would sort them, so the array is printed as sent when it has that shape.
    let sent = response
        .body
        .trim_end()
        .strip_prefix(r#"{"rows":"#)
        .and_then(|rest| rest.strip_suffix('}'));
    match sent {
        Some(rows) => emit(&format!("{rows}\n")),
        None => emit(&format!("{}\n", serde_json::to_string(&answer.rows)?)),
    }
}
