//! One client session: its DataFusion context (with `pg_catalog` and the
//! PostgreSQL functions added), its settings, and statement preparation and
//! execution with the statement timeout and row limit applied.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

use crate::PgLimits;
use crate::catalog::{CatalogSnapshot, SessionCatalogList, SessionInfo};
use crate::encode::{encode_batch, field_infos};
use crate::error::{SqlError, sqlstate};
use crate::sql::{StatementKind, classify};
use crate::{psql, udf};

/// A statement ready to run (the `Statement` of pgwire's prepared-statement
/// store).
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    /// A DataFusion plan, possibly with `$n` placeholders.
    Query {
        plan: LogicalPlan,
        /// Inferred type per placeholder (`$1` first); `None` if unknown.
        params: Vec<Option<DataType>>,
        schema: SchemaRef,
    },
    /// A precomputed result (SHOW, recognised client catalog queries).
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        tag: String,
    },
    /// A statement with only a command tag as its result.
    Command(Command),
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    Begin,
    Commit,
    Rollback,
    Set { name: String, value: Option<String> },
    Reset(String),
    Tag(String),
}

/// The transaction-status effect of a completed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnEffect {
    None,
    Begin,
    End,
}

/// Which cap cut a result short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truncated {
    /// The row limit, in rows.
    Rows(usize),
    /// The result byte limit, in bytes of encoded rows.
    Bytes(usize),
}

/// What executing a statement produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Rows {
        rows: Vec<DataRow>,
        tag: String,
        /// `Some(cap)` when rows beyond the row or byte limit were dropped.
        truncated: Option<Truncated>,
    },
    Command {
        tag: String,
        txn: TxnEffect,
    },
}

impl Prepared {
    /// The result columns, `None` for statements without rows.
    pub fn schema(&self) -> Option<SchemaRef> {
        match self {
            Prepared::Query { schema, .. } | Prepared::Rows { schema, .. } => {
                Some(Arc::clone(schema))
            }
            Prepared::Command(_) => None,
        }
    }

    /// The announced PostgreSQL type of each parameter.
    pub fn param_types(&self) -> Vec<Type> {
        match self {
            Prepared::Query { params, .. } => params
                .iter()
                .map(|p| crate::params::pg_param_type(p.as_ref()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Result fields with the given per-column formats.
    pub fn fields(&self, format_for: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
        self.schema()
            .map(|schema| field_infos(&schema, format_for))
            .unwrap_or_default()
    }
}

fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// A one-off result with text columns.
pub(crate) fn text_rows(
    columns: &[&str],
    rows: Vec<Vec<Option<String>>>,
    tag: &str,
) -> Result<Prepared, SqlError> {
    let schema = text_schema(columns);
    let arrays = (0..columns.len())
        .map(|c| {
            Arc::new(
                rows.iter()
                    .map(|r| r.get(c).cloned().flatten())
                    .collect::<StringArray>(),
            ) as datafusion::arrow::array::ArrayRef
        })
        .collect::<Vec<_>>();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(SqlError::from)?;
    Ok(Prepared::Rows {
        schema,
        batches: vec![batch],
        tag: tag.to_owned(),
    })
}

/// Settings every session starts with; `SHOW` and `pg_settings` read them.
fn default_settings(limits: &PgLimits) -> BTreeMap<String, String> {
    let pairs = [
        ("server_version", udf::SERVER_VERSION.to_owned()),
        ("server_version_num", "150000".to_owned()),
        ("server_encoding", "UTF8".to_owned()),
        ("client_encoding", "UTF8".to_owned()),
        ("DateStyle", "ISO, MDY".to_owned()),
        ("IntervalStyle", "postgres".to_owned()),
        ("TimeZone", "UTC".to_owned()),
        ("integer_datetimes", "on".to_owned()),
        ("standard_conforming_strings", "on".to_owned()),
        ("search_path", "\"$user\", public".to_owned()),
        ("application_name", String::new()),
        ("transaction_isolation", "read committed".to_owned()),
        ("default_transaction_isolation", "read committed".to_owned()),
        ("transaction_read_only", "on".to_owned()),
        ("default_transaction_read_only", "on".to_owned()),
        ("max_identifier_length", "63".to_owned()),
        ("max_index_keys", "32".to_owned()),
        ("block_size", "8192".to_owned()),
        ("extra_float_digits", "1".to_owned()),
        ("lc_messages", "C".to_owned()),
        ("lc_collate", "C".to_owned()),
        ("lc_ctype", "C".to_owned()),
        ("is_superuser", "off".to_owned()),
        (
            "statement_timeout",
            limits.statement_timeout.as_millis().to_string(),
        ),
        ("max_rows", limits.max_rows.to_string()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The session parameters `SET` may change: client-side presentation and the statement
/// timeout (which can only lower the server's). Everything else — DataFusion's own options
/// (`datafusion.*`: batch sizes, partitions, memory behaviour) and unknown names — is refused,
/// so a client cannot loosen the node's limits.
pub(crate) const SETTABLE: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
    "transaction_isolation",
    "transaction_read_only",
];

/// Refuses `SET name` unless `name` is in [`SETTABLE`] (SQLSTATE 42501).
pub(crate) fn check_settable(name: &str) -> Result<(), SqlError> {
    if SETTABLE.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        return Ok(());
    }
    Err(SqlError::new(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "parameter \"{name}\" cannot be set on this endpoint; SET is limited to: {}",
            SETTABLE.join(", ")
        ),
    ))
}

/// `statement_timeout` values: plain milliseconds or with a unit.
fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let millis = match unit.trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "us" => n / 1_000,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

/// One client session.
pub(crate) struct Session {
    ctx: SessionContext,
    info: Arc<SessionInfo>,
    catalogs: Arc<dyn CatalogProviderList>,
    limits: PgLimits,
    /// `SET statement_timeout`, which can only lower the server's limit.
    session_timeout: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Wraps the factory's context: same tables and functions, plus
    /// `pg_catalog`, `information_schema` and the PostgreSQL functions. The
    /// factory's catalogs are not modified.
    pub fn new(base: SessionContext, limits: PgLimits) -> Self {
        let state = base.state();
        let options = state.config().options();
        let info = Arc::new(SessionInfo {
            default_catalog: options.catalog.default_catalog.clone(),
            default_schema: options.catalog.default_schema.clone(),
            settings: Mutex::new(default_settings(&limits)),
            ..Default::default()
        });
        let catalogs: Arc<dyn CatalogProviderList> = Arc::new(SessionCatalogList::new(
            Arc::clone(state.catalog_list()),
            Arc::clone(&info),
        ));
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(Arc::clone(&catalogs))
            .build();
        state.config_mut().options_mut().catalog.information_schema = true;
        let ctx = SessionContext::new_with_state(state);
        udf::register_static(&ctx, &info.default_schema);
        udf::register_settings(&ctx, Arc::clone(&info));
        Self {
            ctx,
            info,
            catalogs,
            limits,
            session_timeout: Mutex::new(None),
        }
    }

    /// Records who connected to what, once the startup message arrived.
    pub fn set_identity(&self, user: &str, database: &str, pid: i32) {
        if let Ok(mut u) = self.info.user.lock() {
            *u = user.to_owned();
        }
        if let Ok(mut d) = self.info.database.lock() {
            *d = database.to_owned();
        }
        if let Ok(mut s) = self.info.settings.lock() {
            s.insert("session_authorization".to_owned(), user.to_owned());
        }
        udf::register_identity(&self.ctx, user, database, pid);
    }

    /// The effective statement timeout (`None`: no timeout).
    pub fn statement_timeout(&self) -> Option<Duration> {
        let server =
            (!self.limits.statement_timeout.is_zero()).then_some(self.limits.statement_timeout);
        let session = self
            .session_timeout
            .lock()
            .ok()
            .and_then(|t| *t)
            .filter(|t| !t.is_zero());
        match (server, session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs `fut` under the statement timeout (SQLSTATE 57014 when it fires;
    /// dropping the future cancels the DataFusion execution).
    pub async fn with_timeout<T>(
        &self,
        fut: impl Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        match self.statement_timeout() {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .unwrap_or_else(|_| Err(SqlError::canceled_by_timeout())),
            None => fut.await,
        }
    }

    pub async fn snapshot(&self) -> CatalogSnapshot {
        CatalogSnapshot::build(&self.catalogs, &self.info).await
    }

    /// Names of the tables in the default schema (they shadow `pg_catalog`
    /// tables of the same name in unqualified references).
    fn default_schema_tables(&self) -> HashSet<String> {
        self.catalogs
            .catalog(&self.info.default_catalog)
            .and_then(|c| c.schema(&self.info.default_schema))
            .map(|s| s.table_names().into_iter().collect())
            .unwrap_or_default()
    }

    /// Prepares one statement (as split by `sql::split_statements`).
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, SqlError> {
        match classify(sql) {
            StatementKind::Query | StatementKind::Unsupported(_) => self.prepare_query(sql).await,
            StatementKind::Begin => Ok(Prepared::Command(Command::Begin)),
            StatementKind::Commit => Ok(Prepared::Command(Command::Commit)),
            StatementKind::Rollback => Ok(Prepared::Command(Command::Rollback)),
            StatementKind::Set { name, value } => {
                Ok(Prepared::Command(Command::Set { name, value }))
            }
            StatementKind::Reset(name) => Ok(Prepared::Command(Command::Reset(name))),
            StatementKind::Show(name) => self.show(&name),
            StatementKind::NoOp(tag) => Ok(Prepared::Command(Command::Tag(tag))),
            StatementKind::Write(what) => Err(SqlError::read_only(&what)),
        }
    }

    /// Checks the syntax of a query without planning it, so that a bad
    /// statement anywhere in a multi-statement string fails the whole string
    /// before anything runs (as in PostgreSQL).
    pub fn check_syntax(&self, sql: &str) -> Result<(), SqlError> {
        if !matches!(
            classify(sql),
            StatementKind::Query | StatementKind::Unsupported(_)
        ) || psql::is_client_catalog_query(sql)
        {
            return Ok(());
        }
        parse_one(sql).map(|_| ())
    }

    async fn prepare_query(&self, sql: &str) -> Result<Prepared, SqlError> {
        if let Some(prepared) = psql::recognize(self, sql).await? {
            return Ok(prepared);
        }
        match self.plan_query(sql).await {
            Ok(prepared) => Ok(prepared),
            Err(e) => {
                if e.code != sqlstate::SYNTAX_ERROR
                    && psql::is_client_catalog_query(sql)
                    && let Some(prepared) = psql::empty_catalog_answer(sql)
                {
                    tracing::debug!(error = %e, "answering a catalog query with no rows");
                    return Ok(prepared);
                }
                Err(e)
            }
        }
    }

    async fn plan_query(&self, sql: &str) -> Result<Prepared, SqlError> {
        let statement = parse_one(sql)?;
        let statement = self.rewrite(statement, sql).await?;
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| SqlError::read_only(&format!("this statement ({})", e.message())))?;
        let params = placeholder_types(&plan)?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(Prepared::Query {
            plan,
            params,
            schema,
        })
    }

    async fn rewrite(&self, statement: DfStatement, sql: &str) -> Result<DfStatement, SqlError> {
        let lower = sql.to_ascii_lowercase();
        let snapshot = if lower.contains("::reg") || lower.contains("as reg") {
            Some(self.snapshot().await)
        } else {
            None
        };
        let user_tables = self.default_schema_tables();
        let options = RewriteOptions {
            catalog_query: lower.contains("pg_catalog") || lower.contains("information_schema"),
            arrays_supported: self
                .ctx
                .state()
                .scalar_functions()
                .contains_key("make_array"),
            default_schema: &self.info.default_schema,
        };
        let mut statement = statement;
        rewrite_df_statement(&mut statement, snapshot.as_ref(), &user_tables, options)?;
        Ok(statement)
    }

    fn show(&self, name: &str) -> Result<Prepared, SqlError> {
        let settings = self.info.settings();
        if name.eq_ignore_ascii_case("all") {
            let rows = settings
                .iter()
                .map(|(k, v)| vec![Some(k.clone()), Some(v.clone()), None])
                .collect();
            return text_rows(&["name", "setting", "description"], rows, "SHOW");
        }
        if name.to_ascii_lowercase().starts_with("datafusion.") {
            let entries = self.ctx.state().config().options().entries();
            if let Some(entry) = entries.iter().find(|e| e.key.eq_ignore_ascii_case(name)) {
                return text_rows(
                    &[entry.key.as_str()],
                    vec![vec![entry.value.clone()]],
                    "SHOW",
                );
            }
        }
        match settings.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((k, v)) => text_rows(&[k.as_str()], vec![vec![Some(v.clone())]], "SHOW"),
            None => Err(SqlError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    fn apply_set(&self, name: &str, value: Option<&str>) -> Result<(), SqlError> {
        if name.starts_with("datafusion.") {
            // Only RESET gets here (SET is refused by `check_settable`): nothing to undo.
            return Ok(());
        }
        if name == "statement_timeout" {
            let timeout = match value {
                None => None,
                Some(v) => Some(parse_duration(v).ok_or_else(|| {
                    SqlError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"statement_timeout\": \"{v}\""),
                    )
                })?),
            };
            if let Ok(mut t) = self.session_timeout.lock() {
                *t = timeout;
            }
        }
        if let Ok(mut settings) = self.info.settings.lock() {
            let key = settings
                .keys()
                .find(|k| k.eq_ignore_ascii_case(name))
                .cloned()
                .unwrap_or_else(|| name.to_owned());
            match value {
                Some(v) => {
                    settings.insert(key, v.to_owned());
                }
                None => {
                    let defaults = default_settings(&self.limits);
                    match defaults.get(&key) {
                        Some(d) => {
                            settings.insert(key, d.clone());
                        }
                        None => {
                            settings.remove(&key);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Executes a prepared statement with bound parameter values, encoding
    /// result rows with `fields` (types and formats as described to the
    /// client). Stops after the row limit.
    pub async fn execute(
        &self,
        prepared: &Prepared,
        params: Vec<ScalarValue>,
        fields: &[FieldInfo],
    ) -> Result<Outcome, SqlError> {
        match prepared {
            Prepared::Query {
                plan,
                params: expected,
                ..
            } => {
                if params.len() != expected.len() {
                    return Err(SqlError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!(
                            "statement requires {} parameters, {} given",
                            expected.len(),
                            params.len()
                        ),
                    ));
                }
                let plan = if params.is_empty() {
                    plan.clone()
                } else {
                    plan.clone()
                        .with_param_values(ParamValues::from(params))
                        .map_err(SqlError::from)?
                };
                let frame = self.ctx.execute_logical_plan(plan).await?;
                let task_ctx = Arc::new(frame.task_ctx());
                let physical = cooperative(frame.create_physical_plan().await?)?;
                let stream = execute_stream(physical, task_ctx)?;
                self.collect(stream, fields, "SELECT").await
            }
            Prepared::Rows { batches, tag, .. } => {
                let stream = futures::stream::iter(batches.clone().into_iter().map(Ok));
                self.collect(stream, fields, tag).await
            }
            Prepared::Command(command) => {
                let (tag, txn) = match command {
                    Command::Begin => ("BEGIN".to_owned(), TxnEffect::Begin),
                    Command::Commit => ("COMMIT".to_owned(), TxnEffect::End),
                    Command::Rollback => ("ROLLBACK".to_owned(), TxnEffect::End),
                    Command::Set { name, value } => {
                        check_settable(name)?;
                        self.apply_set(name, value.as_deref())?;
                        ("SET".to_owned(), TxnEffect::None)
                    }
                    Command::Reset(name) => {
                        if name == "all" {
                            if let Ok(mut s) = self.info.settings.lock() {
                                *s = default_settings(&self.limits);
                                if let Ok(mut t) = self.session_timeout.lock() {
                                    *t = None;
                                }
                            }
                        } else {
                            self.apply_set(name, None)?;
                        }
                        ("RESET".to_owned(), TxnEffect::None)
                    }
                    Command::Tag(tag) => (tag.clone(), TxnEffect::None),
                };
                Ok(Outcome::Command { tag, txn })
            }
        }
    }

    async fn collect<S>(
        &self,
        stream: S,
        fields: &[FieldInfo],
        tag: &str,
    ) -> Result<Outcome, SqlError>
    where
        S: futures::Stream<Item = datafusion::error::Result<RecordBatch>>,
    {
        let max_rows = self.limits.max_rows;
        let max_bytes = self.limits.max_result_bytes;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        let mut truncated = None;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let before = rows.len();
            if max_rows > 0 {
                let remaining = max_rows - rows.len();
                if batch.num_rows() > remaining {
                    encode_batch(&batch.slice(0, remaining), fields, &mut rows)?;
                    truncated = Some(Truncated::Rows(max_rows));
                }
            }
            if truncated.is_none() {
                encode_batch(&batch, fields, &mut rows)?;
            }
            if max_bytes > 0 {
                // Keep the rows that fit; the first one over the cap and all after it go.
                for (index, row) in rows.iter().enumerate().skip(before) {
                    bytes = bytes.saturating_add(row_bytes(row));
                    if bytes > max_bytes {
                        rows.truncate(index);
                        truncated = Some(Truncated::Bytes(max_bytes));
                        break;
                    }
                }
            }
            if truncated.is_some() {
                break;
            }
        }
        Ok(Outcome::Rows {
            rows,
            tag: tag.to_owned(),
            truncated,
        })
    }
}

/// The bytes one encoded row takes on the wire (its values and their length words).
fn row_bytes(row: &DataRow) -> usize {
    row.data.len()
}

/// Makes every operator yield to the runtime periodically, not only the
/// leaves. Operators that emit many batches per input batch (joins, unnest)
/// would otherwise keep a worker thread busy without ever returning `Pending`,
/// so the statement timeout, cancel requests and other sessions could not
/// run on that thread.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, SqlError> {
    plan.transform_up(|node| {
        if node.is::<CooperativeExec>() {
            return Ok(Transformed::no(node));
        }
        Ok(Transformed::yes(
            Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
    .map_err(SqlError::from)
}

/// Parses exactly one statement with the PostgreSQL dialect.
fn parse_one(sql: &str) -> Result<DfStatement, SqlError> {
    let dialect = PostgreSqlDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(SqlError::from)?;
    if statements.len() > 1 {
        return Err(SqlError::syntax(
            "cannot insert multiple commands into a prepared statement",
        ));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| SqlError::syntax("empty query"))?;
    check_read_only(&statement)?;
    Ok(statement)
}

/// Only queries (and EXPLAIN of queries) are accepted.
fn check_read_only(statement: &DfStatement) -> Result<(), SqlError> {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            SqlStatement::Explain { statement, .. } => match statement.as_ref() {
                SqlStatement::Query(_) => Ok(()),
                _ => Err(SqlError::read_only("EXPLAIN of this statement")),
            },
            SqlStatement::ExplainTable { .. } => Ok(()),
            other => Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "statement not supported by this read-only endpoint: {}",
                    first_words(&other.to_string())
                ),
            )),
        },
        DfStatement::Explain(explain) => check_read_only(&explain.statement),
        DfStatement::CreateExternalTable(_) => Err(SqlError::read_only("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(SqlError::read_only("COPY")),
        DfStatement::Reset(_) => Ok(()),
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, Copy)]
struct RewriteOptions<'a> {
    catalog_query: bool,
    arrays_supported: bool,
    default_schema: &'a str,
}

fn rewrite_df_statement(
    statement: &mut DfStatement,
    snapshot: Option<&CatalogSnapshot>,
    user_tables: &HashSet<String>,
    options: RewriteOptions<'_>,
) -> Result<(), SqlError> {
    match statement {
        DfStatement::Statement(s) => crate::sql::rewrite(
            s,
            snapshot,
            user_tables,
            options.catalog_query,
            options.arrays_supported,
            options.default_schema,
        ),
        DfStatement::Explain(explain) => {
            rewrite_df_statement(&mut explain.statement, snapshot, user_tables, options)
        }
        _ => Ok(()),
    }
}

/// Types of `$1..$n` as inferred by DataFusion (gaps and untyped: `None`).
fn placeholder_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, SqlError> {
    let found = plan.get_parameter_types().map_err(SqlError::from)?;
    let mut indexed = Vec::with_capacity(found.len());
    for (id, ty) in found {
        let index: usize = id
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                SqlError::syntax(format!(
                    "invalid parameter reference {id}: only $1, $2, … are supported"
                ))
            })?;
        indexed.push((index, ty));
    }
    let count = indexed.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut params = vec![None; count];
    for (index, ty) in indexed {
        params[index - 1] = ty;
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("x"), None);
    }
}
