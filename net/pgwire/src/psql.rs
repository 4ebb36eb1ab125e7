//! Catalog queries of client tools that DataFusion cannot plan, answered
//! directly from the session's catalog.
//!
//! Most of psql's `\d` family plans after the rewrites in `sql.rs`. Two
//! kinds of query do not:
//!
//! * psql's column query of `\d name` / `\d+ name` (it has correlated scalar
//!   subqueries in its select list), recognised by its shape:
//!   `SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), …
//!   FROM pg_catalog.pg_attribute a WHERE a.attrelid = '<oid>' …`. Each
//!   select item is answered from the table's columns, so both the plain and
//!   the verbose variants work.
//! * Queries driven by a catalog table that is always empty here
//!   (`pg_policy`, `pg_statistic_ext`, `pg_publication`, `pg_inherits`,
//!   `pg_trigger`, `pg_constraint`, `pg_index`, `pg_rewrite`, …), such as
//!   the footers of `\d name`. When planning such a query fails, it is
//!   answered with zero rows and one text column per select item.

use crate::error::SqlError;
use crate::session::{Prepared, Session, text_rows};
use crate::sql::normalize_whitespace;

/// Catalog tables without rows in this endpoint.
const EMPTY_TABLES: &[&str] = &[
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
    "pg_trigger",
    "pg_constraint",
    "pg_index",
    "pg_rewrite",
    "pg_attrdef",
    "pg_description",
    "pg_depend",
    "pg_event_trigger",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_sequence",
    "pg_extension",
    "pg_enum",
    "pg_range",
    "pg_collation",
];

const AGGREGATES: &[&str] = &[
    "count(",
    "sum(",
    "min(",
    "max(",
    "avg(",
    "bool_and(",
    "bool_or(",
    "every(",
    "array_agg(",
    "string_agg(",
];

/// Whether `sql` is a client catalog query; those skip the up-front syntax
/// check of multi-statement strings.
pub(crate) fn is_client_catalog_query(sql: &str) -> bool {
    sql.contains("pg_catalog.")
}

/// Answers psql's `\d name` column query, if `sql` is one.
pub(crate) async fn recognize(session: &Session, sql: &str) -> Result<Option<Prepared>, SqlError> {
    if !sql.contains("pg_catalog.") {
        return Ok(None);
    }
    let normalized = normalize_whitespace(sql);
    if normalized.starts_with("SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)")
        && let Some(oid) = quoted_number_after(
            &normalized,
            "FROM pg_catalog.pg_attribute a WHERE a.attrelid = ",
        )
    {
        return attribute_query(session, &normalized, oid).await.map(Some);
    }
    Ok(None)
}

/// After planning `sql` failed: zero rows if the query is driven by an
/// always-empty catalog table.
pub(crate) fn empty_catalog_answer(sql: &str) -> Option<Prepared> {
    let normalized = normalize_whitespace(sql);
    let (items, from) = select_items(&normalized)?;
    let lower = items.join(",").to_ascii_lowercase();
    let from_lower = from.to_ascii_lowercase();
    let driving = from_lower
        .strip_prefix("from ")?
        .split([' ', ',', ')'])
        .next()?
        .trim_start_matches('(');
    let driving = driving.strip_prefix("pg_catalog.").unwrap_or(driving);
    let empty = EMPTY_TABLES.contains(&driving) || inner_joins_empty_table(&normalized);
    if !empty || AGGREGATES.iter().any(|a| lower.contains(a)) {
        return None;
    }
    let names: Vec<String> = items.iter().map(|item| column_name(item)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    text_rows(&names, Vec::new(), "SELECT").ok()
}

/// Whether the query inner-joins an always-empty catalog table (so has no
/// rows), as JDBC's primary key and index lookups join `pg_index`.
fn inner_joins_empty_table(normalized: &str) -> bool {
    let lower = normalized.to_ascii_lowercase();
    let words: Vec<&str> = lower.split([' ', '(']).filter(|w| !w.is_empty()).collect();
    words.windows(2).enumerate().any(|(i, pair)| {
        let table = pair[1].trim_end_matches(',');
        let table = table.strip_prefix("pg_catalog.").unwrap_or(table);
        let joined = pair[0] == "join"
            && !matches!(
                i.checked_sub(1).and_then(|p| words.get(p)).copied(),
                Some("left" | "right" | "full" | "outer")
            );
        // `FROM a, pg_catalog.pg_constraint con, …`
        let listed = pair[0].ends_with(',') && !lower.contains(" union ");
        EMPTY_TABLES.contains(&table) && (joined || listed)
    })
}

/// `'12345'` (or a bare number) right after `prefix`.
fn quoted_number_after(s: &str, prefix: &str) -> Option<i64> {
    let start = s.find(prefix)? + prefix.len();
    let rest = s[start..].trim_start_matches('\'');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Splits the select list of the first (top-level) SELECT into items and
/// returns them with the rest of the query starting at its FROM.
fn select_items(sql: &str) -> Option<(Vec<String>, String)> {
    let lower = sql.to_ascii_lowercase();
    let mut start = lower.find("select ")? + "select ".len();
    if lower[start..].starts_with("distinct ") {
        start += "distinct ".len();
    }
    let bytes = sql.as_bytes();
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut item_start = start;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                items.push(sql[item_start..i].trim().to_owned());
                item_start = i + 1;
            }
            b' ' if depth == 0 && lower[i..].starts_with(" from ") => {
                items.push(sql[item_start..i].trim().to_owned());
                return Some((items, sql[i + 1..].to_owned()));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The column name PostgreSQL gives a select item (alias, column or
/// function name, else `?column?`).
fn column_name(item: &str) -> String {
    let lower = item.to_ascii_lowercase();
    if let Some(pos) = lower.rfind(" as ") {
        let alias = item[pos + 4..].trim();
        if !alias.contains([' ', '(', ')']) || alias.starts_with('"') {
            return alias.trim_matches('"').to_owned();
        }
    }
    let head = item.split('(').next().unwrap_or(item).trim();
    let simple = head
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if simple && !head.is_empty() {
        return head.rsplit('.').next().unwrap_or(head).to_owned();
    }
    "?column?".to_owned()
}

/// psql's column query of `\d name`: one row per column of the table.
async fn attribute_query(
    session: &Session,
    normalized: &str,
    oid: i64,
) -> Result<Prepared, SqlError> {
    let Some((items, _)) = select_items(normalized) else {
        return text_rows(&["attname"], Vec::new(), "SELECT");
    };
    let snapshot = session.snapshot().await;
    let columns = snapshot
        .tables
        .iter()
        .find(|t| i64::from(t.oid) == oid)
        .map(|t| t.columns.clone())
        .unwrap_or_default();
    let rows = columns
        .iter()
        .map(|column| {
            items
                .iter()
                .map(|item| attribute_item(item, column))
                .collect::<Vec<_>>()
        })
        .collect();
    let names: Vec<String> = items.iter().map(|item| column_name(item)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    text_rows(&names, rows, "SELECT")
}

fn attribute_item(item: &str, column: &crate::catalog::ColumnInfo) -> Option<String> {
    let bool_text = |b: bool| Some(if b { "t" } else { "f" }.to_owned());
    let ty = column.pg_type();
    if item == "a.attname" {
        Some(column.name.clone())
    } else if item.starts_with("pg_catalog.format_type(a.atttypid") {
        crate::catalog::format_type(i64::from(ty.oid()))
    } else if item == "a.attnotnull" {
        bool_text(!column.nullable)
    } else if item.contains("attidentity") || item.contains("attgenerated") {
        Some(String::new())
    } else if item == "a.attstorage" {
        Some(
            if crate::encode::type_size(&ty) > 0 {
                "p"
            } else {
                "x"
            }
            .to_owned(),
        )
    } else if item.contains("attcompression") {
        Some(String::new())
    } else {
        // Defaults, collations, statistics targets, descriptions, FDW
        // options: none here.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_list_split() {
        let (items, from) = select_items(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT x FROM y) AS d, 'a,b' FROM t WHERE 1",
        )
        .expect("select list");
        assert_eq!(items.len(), 4);
        assert_eq!(column_name(&items[0]), "attname");
        assert_eq!(column_name(&items[1]), "format_type");
        assert_eq!(column_name(&items[2]), "d");
        assert_eq!(column_name(&items[3]), "?column?");
        assert!(from.starts_with("FROM t"));
    }

    #[test]
    fn empty_catalog_tables() {
        let policy = "SELECT pol.polname, pol.polpermissive, CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END, pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '1' ORDER BY 1;";
        match empty_catalog_answer(policy) {
            Some(Prepared::Rows {
                schema, batches, ..
            }) => {
                assert_eq!(schema.fields().len(), 4);
                assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
            }
            other => panic!("expected an empty answer, got {other:?}"),
        }
        assert!(empty_catalog_answer("SELECT count(*) FROM pg_catalog.pg_index").is_none());
        assert!(
            empty_catalog_answer(
                "SELECT ct.relname AS t, a.attname FROM pg_catalog.pg_class ct JOIN pg_catalog.pg_index i ON (ct.oid = i.indrelid)"
            )
            .is_some()
        );
        assert!(
            empty_catalog_answer(
                "SELECT ct.relname FROM pg_catalog.pg_class ct LEFT JOIN pg_catalog.pg_index i ON (ct.oid = i.indrelid)"
            )
            .is_none()
        );
        assert!(empty_catalog_answer("SELECT relname FROM pg_catalog.pg_class").is_none());
    }

    #[test]
    fn numbers_after_prefix() {
        assert_eq!(
            quoted_number_after("WHERE a.attrelid = '42' AND", "a.attrelid = "),
            Some(42)
        );
    }
}
