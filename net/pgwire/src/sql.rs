//! SQL text handling: splitting a query string into statements, classifying
//! session commands (SET, SHOW, BEGIN, …), and rewriting PostgreSQL-only
//! syntax of catalog queries into something DataFusion plans.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType as SqlType, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Value, VisitorMut,
};

use crate::catalog::{CatalogSnapshot, PG_CATALOG_TABLES, type_oid_by_name};
use crate::error::{SqlError, sqlstate};

/// Splits a query string into statements at top-level semicolons, honouring
/// quotes, dollar quotes and comments. Statements holding only whitespace and
/// comments are dropped.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => i = skip_dollar_quoted(bytes, i),
            b';' => {
                push_statement(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < sql.len() {
        push_statement(&mut out, &sql[start..]);
    }
    out
}

fn push_statement(out: &mut Vec<String>, text: &str) {
    if !strip_leading_comments(text).is_empty() {
        out.push(text.trim().to_owned());
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Returns the index just after the closing quote (or the end of input).
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ … $tag$`; a `$` that does not open a dollar quote (such as the
/// placeholder `$1`) is skipped as a single byte.
fn skip_dollar_quoted(bytes: &[u8], open: usize) -> usize {
    if open > 0 && is_ident_byte(bytes[open - 1]) {
        return open + 1;
    }
    let mut j = open + 1;
    while j < bytes.len() && is_ident_byte(bytes[j]) {
        j += 1;
    }
    if j >= bytes.len() || bytes[j] != b'$' || bytes.get(open + 1).is_some_and(u8::is_ascii_digit) {
        return open + 1;
    }
    let tag = &bytes[open..=j];
    let mut i = j + 1;
    while i + tag.len() <= bytes.len() {
        if &bytes[i..i + tag.len()] == tag {
            return i + tag.len();
        }
        i += 1;
    }
    bytes.len()
}

/// The statement without leading whitespace and comments.
pub(crate) fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |p| &rest[p + 1..]);
        } else if s.starts_with("/*") {
            let end = skip_block_comment(s.as_bytes(), 0);
            s = &s[end..];
        } else {
            return s;
        }
    }
}

/// Collapses runs of whitespace to one space; used to recognise client
/// queries independently of their layout.
pub(crate) fn normalize_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a statement is, decided from its leading keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatementKind {
    /// SELECT, WITH, VALUES, EXPLAIN, TABLE: planned by DataFusion.
    Query,
    Begin,
    Commit,
    Rollback,
    /// `SET name = value`; `value` is `None` for `SET name TO DEFAULT`.
    Set {
        name: String,
        value: Option<String>,
    },
    /// `RESET name` / `RESET ALL`.
    Reset(String),
    Show(String),
    /// A statement accepted without effect, answered with this tag.
    NoOp(String),
    /// A statement that would change data or schema.
    Write(String),
    /// Anything else.
    Unsupported(String),
}

fn words(s: &str, n: usize) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Classifies one statement (as produced by [`split_statements`]).
pub(crate) fn classify(statement: &str) -> StatementKind {
    let body = strip_leading_comments(statement);
    if body.starts_with('(') {
        return StatementKind::Query;
    }
    let w = words(body, 4);
    let first = w.first().map(String::as_str).unwrap_or("");
    let second = w.get(1).map(String::as_str).unwrap_or("");
    match first {
        "select" | "with" | "values" | "explain" | "table" | "describe" => StatementKind::Query,
        "begin" | "start" => StatementKind::Begin,
        "commit" | "end" => StatementKind::Commit,
        "rollback" | "abort" => {
            if w.iter().any(|x| x == "to") {
                StatementKind::NoOp("ROLLBACK".to_owned())
            } else {
                StatementKind::Rollback
            }
        }
        "savepoint" => StatementKind::NoOp("SAVEPOINT".to_owned()),
        "release" => StatementKind::NoOp("RELEASE".to_owned()),
        "set" => parse_set(body),
        "reset" => StatementKind::Reset(if second.is_empty() {
            "all".to_owned()
        } else {
            unquote(second)
        }),
        "show" => StatementKind::Show(show_name(&w[1..])),
        "discard" => StatementKind::NoOp(format!("DISCARD {}", second.to_ascii_uppercase())),
        "deallocate" => StatementKind::NoOp(if w.iter().any(|x| x == "all") {
            "DEALLOCATE ALL".to_owned()
        } else {
            "DEALLOCATE".to_owned()
        }),
        "listen" | "unlisten" | "notify" | "checkpoint" | "load" => {
            StatementKind::NoOp(first.to_ascii_uppercase())
        }
        "insert" | "update" | "delete" | "merge" | "create" | "drop" | "alter" | "truncate"
        | "copy" | "grant" | "revoke" | "comment" | "vacuum" | "analyze" | "cluster"
        | "reindex" | "refresh" | "lock" | "import" | "security" | "call" | "do" => {
            StatementKind::Write(first.to_ascii_uppercase())
        }
        other => StatementKind::Unsupported(other.to_ascii_uppercase()),
    }
}

fn show_name(rest: &[String]) -> String {
    let joined = rest.join(" ");
    match joined.as_str() {
        "time zone" => "timezone".to_owned(),
        "transaction isolation level" => "transaction_isolation".to_owned(),
        _ => rest.first().map(|s| unquote(s)).unwrap_or_default(),
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && (s.starts_with('\'') && s.ends_with('\'') || s.starts_with('"') && s.ends_with('"'))
    {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

fn parse_set(body: &str) -> StatementKind {
    let rest = body[3..].trim().trim_end_matches(';').trim();
    let lower = rest.to_ascii_lowercase();
    // SET SESSION CHARACTERISTICS / SET TRANSACTION / SET CONSTRAINTS / SET ROLE …
    for prefix in [
        "transaction",
        "session characteristics",
        "constraints",
        "role",
    ] {
        if lower.starts_with(prefix) {
            return StatementKind::NoOp("SET".to_owned());
        }
    }
    let rest = if lower.starts_with("session ") {
        rest[8..].trim_start()
    } else if lower.starts_with("local ") {
        rest[6..].trim_start()
    } else {
        rest
    };
    let lower = rest.to_ascii_lowercase();
    if let Some(value) = lower.strip_prefix("time zone") {
        let value = rest[rest.len() - value.len()..].trim();
        return StatementKind::Set {
            name: "timezone".to_owned(),
            value: set_value(value),
        };
    }
    if lower.starts_with("names") {
        return StatementKind::Set {
            name: "client_encoding".to_owned(),
            value: set_value(rest[5..].trim()),
        };
    }
    let (name, value) = match rest.find(['=', ' ']) {
        Some(pos) => {
            let name = rest[..pos].trim();
            let mut value = rest[pos..].trim_start();
            if let Some(v) = value.strip_prefix('=') {
                value = v;
            } else if value.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("to")) {
                value = &value[2..];
            }
            (name, value.trim())
        }
        None => (rest, ""),
    };
    StatementKind::Set {
        name: unquote(name).to_ascii_lowercase(),
        value: set_value(value),
    }
}

fn set_value(value: &str) -> Option<String> {
    if value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("local") {
        return None;
    }
    let parts: Vec<String> = value
        .split(',')
        .map(|p| unquote(p.trim()))
        .filter(|p| !p.is_empty())
        .collect();
    Some(parts.join(", "))
}

/// Rewrites PostgreSQL-specific expressions in a parsed statement so that
/// DataFusion can plan it:
///
/// * `pg_catalog.f(…)` → `f(…)` (DataFusion has no qualified function names);
/// * `OPERATOR(pg_catalog.~)` and friends → the plain operator;
/// * `expr COLLATE "x"` → `expr`;
/// * `'name'::regclass` / `'type'::regtype` / `'nsp'::regnamespace` → the oid,
///   other `::regclass`-like casts and `::oid` → integer, `::name` → text;
/// * `x::regtype::text` → `format_type(x, NULL)`;
/// * unqualified `pg_class`, `pg_type`, … → `pg_catalog.pg_class`, … unless a
///   user table of that name exists.
pub(crate) struct Rewriter<'a> {
    pub snapshot: Option<&'a CatalogSnapshot>,
    pub user_tables: &'a HashSet<String>,
    /// The statement reads `pg_catalog`: apply the catalog-only rewrites.
    pub catalog_query: bool,
    /// Array literals can be planned (DataFusion's nested functions exist).
    pub arrays_supported: bool,
    /// The session's default schema (what `current_schemas()` lists).
    pub default_schema: &'a str,
    pub error: Option<SqlError>,
}

fn last_ident(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .map(|i| i.value.to_ascii_lowercase())
}

fn custom_type_name(dt: &SqlType) -> Option<String> {
    match dt {
        SqlType::Custom(name, _) => last_ident(name),
        SqlType::Regclass => Some("regclass".to_owned()),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    }
}

fn int_literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn first_arg_is_true(f: &Function) -> bool {
    match &f.args {
        FunctionArguments::List(list) => matches!(
            list.args.first(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))))
                if v.value == Value::Boolean(true)
        ),
        _ => false,
    }
}

fn number(n: i64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).with_empty_span())
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn custom_operator(parts: &[String]) -> Option<BinaryOperator> {
    Some(match parts.last()?.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        _ => return None,
    })
}

impl Rewriter<'_> {
    fn lookup_oid(&mut self, type_name: &str, literal: &str) -> Option<i64> {
        let found = match type_name {
            "regtype" => type_oid_by_name(literal).map(i64::from),
            "regclass" => self
                .snapshot
                .and_then(|s| s.table_oid_by_name(literal))
                .map(i64::from),
            "regnamespace" => self
                .snapshot
                .and_then(|s| s.namespace_oid(literal.trim_matches('"')))
                .map(i64::from),
            _ => None,
        };
        if found.is_none() && self.error.is_none() {
            self.error = Some(match type_name {
                "regclass" => SqlError::new(
                    sqlstate::UNDEFINED_TABLE,
                    format!("relation \"{literal}\" does not exist"),
                ),
                "regnamespace" => SqlError::new(
                    sqlstate::INVALID_SCHEMA_NAME,
                    format!("schema \"{literal}\" does not exist"),
                ),
                _ => SqlError::new(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("type \"{literal}\" does not exist"),
                ),
            });
        }
        found
    }
}

/// Built-in types spelled as custom (e.g. schema-qualified) type names.
fn plain_type(name: &str) -> Option<SqlType> {
    Some(match name {
        "text" | "varchar" | "name" | "char" | "bpchar" | "citext" | "unknown" => SqlType::Text,
        "int2" | "smallint" => SqlType::SmallInt(None),
        "int4" | "int" | "integer" => SqlType::Int(None),
        "int8" | "bigint" => SqlType::BigInt(None),
        "bool" | "boolean" => SqlType::Boolean,
        "float4" | "real" => SqlType::Real,
        "float8" => SqlType::DoublePrecision,
        "numeric" => SqlType::Numeric(ast::ExactNumberInfo::None),
        "date" => SqlType::Date,
        "bytea" => SqlType::Bytea,
        _ => return None,
    })
}

const OID_LIKE: &[&str] = &[
    "regclass",
    "regtype",
    "regproc",
    "regprocedure",
    "regnamespace",
    "regrole",
    "regoper",
    "regoperator",
    "regconfig",
    "regdictionary",
    "oid",
    "xid",
    "cid",
];

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if relation.0.len() == 1
            && let Some(name) = last_ident(relation)
            && PG_CATALOG_TABLES.contains(&name.as_str())
            && !self.user_tables.contains(&name)
        {
            relation
                .0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        // `SELECT n.oid, n.* …` (common in GUI tools) repeats a column, which
        // DataFusion rejects; the wildcard already returns it.
        if !self.catalog_query {
            return ControlFlow::Continue(());
        }
        let wildcards: Vec<Option<String>> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                ast::SelectItem::Wildcard(_) => Some(None),
                ast::SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => Some(last_ident(name)),
                _ => None,
            })
            .collect();
        if !wildcards.is_empty() {
            select.projection.retain(|item| match item {
                ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts))
                    if parts.len() == 2 =>
                {
                    let qualifier = parts[0].value.to_ascii_lowercase();
                    !wildcards
                        .iter()
                        .any(|w| w.is_none() || w.as_deref() == Some(qualifier.as_str()))
                }
                _ => true,
            });
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        // pg_catalog.generate_series(…) and other qualified table functions.
        if let ast::TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
            && name.0.len() == 2
            && name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog"))
        {
            name.0.remove(0);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.catalog_query {
            match expr {
                // ARRAY(subquery): no catalog table here has array members.
                Expr::Function(f)
                    if last_ident(&f.name).as_deref() == Some("array")
                        && matches!(f.args, FunctionArguments::Subquery(_)) =>
                {
                    *expr = Expr::Value(Value::Null.with_empty_span());
                    return ControlFlow::Continue(());
                }
                Expr::Array(_) if !self.arrays_supported => {
                    *expr = Expr::Value(Value::Null.with_empty_span());
                    return ControlFlow::Continue(());
                }
                // (current_schemas(b))[n]: the n-th schema of the search path.
                Expr::CompoundFieldAccess { root, access_chain } if access_chain.len() == 1 => {
                    let mut base = root.as_ref();
                    while let Expr::Nested(inner) = base {
                        base = inner;
                    }
                    if let Expr::Function(f) = base
                        && last_ident(&f.name).as_deref() == Some("current_schemas")
                        && let ast::AccessExpr::Subscript(ast::Subscript::Index { index }) =
                            &access_chain[0]
                        && let Some(n) = int_literal(index)
                    {
                        let implicit = first_arg_is_true(f);
                        let mut schemas = Vec::new();
                        if implicit {
                            schemas.push("pg_catalog");
                        }
                        schemas.push(self.default_schema);
                        *expr = usize::try_from(n)
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .and_then(|i| schemas.get(i))
                            .map(|s| {
                                Expr::Value(
                                    Value::SingleQuotedString((*s).to_owned()).with_empty_span(),
                                )
                            })
                            .unwrap_or_else(|| Expr::Value(Value::Null.with_empty_span()));
                        return ControlFlow::Continue(());
                    }
                }
                // A correlated scalar subquery returns at most one row in
                // catalog queries; DataFusion wants that spelt as an aggregate.
                Expr::Subquery(query) => wrap_scalar_subquery(query),
                _ => {}
            }
        }
        // x::regtype::text → format_type(x, NULL)
        if let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
            && (matches!(
                data_type,
                SqlType::Text | SqlType::Varchar(_) | SqlType::String(_)
            ) || matches!(
                custom_type_name(data_type).as_deref(),
                Some("text" | "varchar")
            ))
            && let Expr::Cast {
                expr: innermost,
                data_type: inner_type,
                ..
            } = inner.as_ref()
            && custom_type_name(inner_type).as_deref() == Some("regtype")
            && string_literal(innermost).is_none()
        {
            let arg = innermost.as_ref().clone();
            *expr = call(
                "format_type",
                vec![arg, Expr::Value(Value::Null.with_empty_span())],
            );
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f)
                if f.name.0.len() > 1
                    && f.name.0[0]
                        .as_ident()
                        .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_catalog")) =>
            {
                let last = f.name.0.split_off(f.name.0.len() - 1);
                f.name = ObjectName(last);
            }
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                    && let Some(plain) = custom_operator(parts)
                {
                    *op = plain;
                }
            }
            Expr::Collate { expr: inner, .. } => {
                let inner =
                    std::mem::replace(inner.as_mut(), Expr::Value(Value::Null.with_empty_span()));
                *expr = inner;
            }
            Expr::Cast {
                expr: inner,
                data_type,
                kind,
                ..
            } => {
                if let Some(type_name) = custom_type_name(data_type) {
                    if OID_LIKE.contains(&type_name.as_str()) {
                        let literal = string_literal(inner).map(str::to_owned);
                        if matches!(type_name.as_str(), "regproc" | "regprocedure") {
                            // Functions are named, not numbered, in this catalog.
                            *expr = match literal {
                                Some(name) => Expr::Value(
                                    Value::SingleQuotedString(
                                        name.strip_prefix("pg_catalog.")
                                            .unwrap_or(&name)
                                            .to_owned(),
                                    )
                                    .with_empty_span(),
                                ),
                                None => Expr::Cast {
                                    kind: CastKind::Cast,
                                    expr: Box::new(std::mem::replace(
                                        inner.as_mut(),
                                        Expr::Value(Value::Null.with_empty_span()),
                                    )),
                                    data_type: SqlType::Text,
                                    array: false,
                                    format: None,
                                },
                            };
                        } else if let Some(literal) = literal
                            && type_name != "oid"
                            && let Some(oid) = self.lookup_oid(&type_name, &literal)
                        {
                            *expr = number(oid);
                        } else {
                            *data_type = SqlType::BigInt(None);
                            *kind = CastKind::Cast;
                        }
                    } else if let Some(plain) = plain_type(&type_name) {
                        *data_type = plain;
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

const AGGREGATE_NAMES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
];

fn has_aggregate(e: &Expr) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    AGGREGATE_NAMES
        .iter()
        .any(|name| text.contains(&format!("{name}(")))
}

/// `(SELECT x FROM … WHERE …)` → `(SELECT max(x) FROM … WHERE …)` when the
/// subquery has a single plain item and no grouping, DISTINCT or LIMIT.
fn wrap_scalar_subquery(query: &mut ast::Query) {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() {
        return;
    }
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped
        || select.distinct.is_some()
        || select.having.is_some()
        || select.projection.len() != 1
    {
        return;
    }
    let item = match &mut select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) => e,
        ast::SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if has_aggregate(item) {
        return;
    }
    let inner = std::mem::replace(item, Expr::Value(Value::Null.with_empty_span()));
    *item = call("max", vec![inner]);
}

/// Names unnamed function calls of the outermost select list after the
/// function (`SELECT version()` → column `version`) and literals
/// `?column?`, as PostgreSQL does, when that name is unique in the list.
fn name_function_columns(statement: &mut ast::Statement) {
    let ast::Statement::Query(query) = statement else {
        return;
    };
    let ast::SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            ast::SelectItem::UnnamedExpr(Expr::Function(f)) => last_ident(&f.name),
            ast::SelectItem::UnnamedExpr(Expr::Value(_)) => Some("?column?".to_owned()),
            ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.to_ascii_lowercase()),
            ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|i| i.value.to_ascii_lowercase())
            }
            ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    let mut literals = 0;
    for (idx, item) in select.projection.iter_mut().enumerate() {
        let ast::SelectItem::UnnamedExpr(expr @ (Expr::Function(_) | Expr::Value(_))) = item else {
            continue;
        };
        let Some(name) = &names[idx] else {
            continue;
        };
        let mut name = name.clone();
        if names
            .iter()
            .filter(|n| n.as_deref() == Some(name.as_str()))
            .count()
            != 1
        {
            if !matches!(expr, Expr::Value(_)) {
                continue;
            }
            // Repeated literals (`SELECT NULL, NULL`) need distinct names in
            // DataFusion.
            literals += 1;
            if literals > 1 {
                name = format!("?column?{literals}");
            }
        }
        let expr = std::mem::replace(expr, Expr::Value(Value::Null.with_empty_span()));
        *item = ast::SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', name),
        };
    }
}

/// Applies [`Rewriter`] to a statement.
pub(crate) fn rewrite(
    statement: &mut ast::Statement,
    snapshot: Option<&CatalogSnapshot>,
    user_tables: &HashSet<String>,
    catalog_query: bool,
    arrays_supported: bool,
    default_schema: &str,
) -> Result<(), SqlError> {
    use datafusion::sql::sqlparser::ast::VisitMut;
    let mut rewriter = Rewriter {
        snapshot,
        user_tables,
        catalog_query,
        arrays_supported,
        default_schema,
        error: None,
    };
    let _ = statement.visit(&mut rewriter);
    if let Some(e) = rewriter.error {
        return Err(e);
    }
    name_function_columns(statement);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_semicolons() {
        let parts = split_statements(
            "SELECT 'a;b'; SELECT \"x;\" FROM t -- c;\n; /* ; */ SELECT $$;$$; SELECT $1;;",
        );
        assert_eq!(
            parts,
            vec![
                "SELECT 'a;b'",
                "SELECT \"x;\" FROM t -- c;",
                "/* ; */ SELECT $$;$$",
                "SELECT $1"
            ]
        );
        assert!(split_statements(" ; -- only a comment\n;").is_empty());
        assert_eq!(split_statements("SELECT E'\\';'; SELECT 2").len(), 2);
    }

    #[test]
    fn classifies_commands() {
        assert_eq!(classify("select 1"), StatementKind::Query);
        assert_eq!(
            classify("/* x */ WITH a AS (SELECT 1) SELECT * FROM a"),
            StatementKind::Query
        );
        assert_eq!(classify("BEGIN"), StatementKind::Begin);
        assert_eq!(
            classify("start transaction read only"),
            StatementKind::Begin
        );
        assert_eq!(classify("COMMIT"), StatementKind::Commit);
        assert_eq!(classify("rollback"), StatementKind::Rollback);
        assert_eq!(
            classify("SET extra_float_digits = 3"),
            StatementKind::Set {
                name: "extra_float_digits".to_owned(),
                value: Some("3".to_owned())
            }
        );
        assert_eq!(
            classify("SET SESSION application_name TO 'psql'"),
            StatementKind::Set {
                name: "application_name".to_owned(),
                value: Some("psql".to_owned())
            }
        );
        assert_eq!(
            classify("set time zone 'UTC'"),
            StatementKind::Set {
                name: "timezone".to_owned(),
                value: Some("UTC".to_owned())
            }
        );
        assert_eq!(
            classify("SET search_path TO DEFAULT"),
            StatementKind::Set {
                name: "search_path".to_owned(),
                value: None
            }
        );
        assert_eq!(
            classify("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            StatementKind::NoOp("SET".to_owned())
        );
        assert_eq!(
            classify("SHOW TIME ZONE"),
            StatementKind::Show("timezone".to_owned())
        );
        assert_eq!(
            classify("show server_version"),
            StatementKind::Show("server_version".to_owned())
        );
        assert_eq!(
            classify("insert into t values (1)"),
            StatementKind::Write("INSERT".to_owned())
        );
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parse");
        let mut statement = statements.remove(0);
        rewrite(&mut statement, None, &HashSet::new(), true, false, "public").expect("rewrite");
        statement.to_string()
    }

    #[test]
    fn catalog_rewrites() {
        assert_eq!(
            rewritten("SELECT n.oid, n.*, d.description FROM pg_namespace n, pg_description d"),
            "SELECT n.*, d.description FROM pg_catalog.pg_namespace n, pg_catalog.pg_description d"
        );
        assert_eq!(
            rewritten(
                "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname ~ '^(x)$' AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(
            rewritten(
                "SELECT x::pg_catalog.regtype::pg_catalog.text, 'int4'::regtype, (current_schemas(true))[1], NULL, NULL FROM t"
            ),
            "SELECT format_type(x, NULL) AS \"format_type\", 23 AS \"?column?\", 'pg_catalog' AS \"?column?2\", NULL AS \"?column?3\", NULL AS \"?column?4\" FROM t"
        );
        assert_eq!(
            rewritten(
                "SELECT (SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid) FROM pg_type t"
            ),
            "SELECT (SELECT max(c.relkind = 'c') FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) FROM pg_catalog.pg_type t"
        );
    }
}
