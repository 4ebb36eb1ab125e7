//! Reading one configuration layer (default, file or environment) into a typed partial view.
//!
//! Every layer is checked on its own — unknown keys, types and single-value ranges — so an
//! error always names the layer that introduced the bad value. Layers are then overlaid
//! field by field, which also gives `[[cluster.nodes]]` whole-array replacement semantics.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat, Map, Source, Value, ValueKind};

use crate::Member;
use crate::error::{Error, Origin};

mod limits;
mod sql_limits;
mod storage;
mod tls;
pub(crate) use sql_limits::SqlLimitKeys;
pub(crate) use storage::StorageKeys;
pub(crate) use tls::TlsKeys;

/// Prefix of the structured environment variables, e.g. `HOLDFAST__ADMIN__BIND_ADDRESS`.
pub(crate) const ENV_PREFIX: &str = "HOLDFAST";
/// Separator between the prefix and between nested keys.
pub(crate) const ENV_SEPARATOR: &str = "__";
/// Short alias for `HOLDFAST__NODE__DATA_DIR`, which wins when both are set.
pub(crate) const DATA_DIR_ALIAS: &str = "HOLDFAST_DATA_DIR";

/// A value together with the layer it came from, so cross-key rules can blame the right place.
#[derive(Debug, Clone)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// The keys one layer sets; `None` means "not set here, fall through to a lower layer".
#[derive(Debug, Default)]
pub(crate) struct Partial {
    pub node_id: Option<Sourced<u64>>,
    pub data_dir: Option<Sourced<PathBuf>>,
    pub node_address: Option<Sourced<SocketAddr>>,
    pub signing_key_file: Option<Sourced<PathBuf>>,
    pub partition_threads: Option<Sourced<u32>>,
    pub ingress: Option<Sourced<SocketAddr>>,
    pub admin: Option<Sourced<SocketAddr>>,
    pub ingress_auth_tokens: Option<Sourced<Vec<crate::Token>>>,
    pub ingress_auth_token_file: Option<Sourced<PathBuf>>,
    pub ingress_cors_allowed_origins: Option<Sourced<Vec<String>>>,
    pub admin_auth_tokens: Option<Sourced<Vec<crate::Token>>>,
    pub admin_auth_token_file: Option<Sourced<PathBuf>>,
    pub admin_deployment_allowlist: Option<Sourced<Vec<crate::HostPattern>>>,
    pub sql: Option<Sourced<SocketAddr>>,
    pub statement_timeout_ms: Option<Sourced<u64>>,
    pub max_rows: Option<Sourced<u64>>,
    /// `sql.password`: the psql password written inline.
    pub sql_password: Option<Sourced<crate::SqlPassword>>,
    /// `sql.password_file`: the file whose first line is the psql password.
    pub sql_password_file: Option<Sourced<PathBuf>>,
    /// The `[sql]` keys bounding memory, results and pgwire connections.
    pub sql_limits: SqlLimitKeys,
    /// The TLS keys of every section.
    pub tls: TlsKeys,
    pub cluster_name: Option<Sourced<String>>,
    pub partitions: Option<Sourced<u32>>,
    pub replication_factor: Option<Sourced<u32>>,
    pub nodes: Option<Sourced<Vec<Member>>>,
    /// `[[limits]]`: flow-control limits put into the registry at start.
    pub limits: Option<Sourced<Vec<holdfast_types::Limit>>>,
    pub max_batch_commands: Option<Sourced<usize>>,
    pub max_batch_bytes: Option<Sourced<usize>>,
    pub snapshot_interval: Option<Sourced<u64>>,
    pub election_timeout_ms: Option<Sourced<u64>>,
    pub heartbeat_interval_ms: Option<Sourced<u64>>,
    /// The `[storage]` page-cache sizes.
    pub storage: StorageKeys,
    pub inactivity_timeout_ms: Option<Sourced<u64>>,
    pub abort_timeout_ms: Option<Sourced<u64>>,
    pub retry_initial_interval_ms: Option<Sourced<u64>>,
    pub retry_factor: Option<Sourced<f64>>,
    pub retry_max_interval_ms: Option<Sourced<u64>>,
    pub retry_max_attempts: Option<Sourced<u32>>,
    pub max_message_bytes: Option<Sourced<usize>>,
    pub max_concurrent_attempts: Option<Sourced<usize>>,
    /// `tracing.endpoint`; `""` (or never set) means tracing is off.
    pub tracing_endpoint: Option<Sourced<String>>,
    pub tracing_service_name: Option<Sourced<String>>,
    pub tracing_queue_capacity: Option<Sourced<usize>>,
    pub tracing_batch_size: Option<Sourced<usize>>,
    pub tracing_flush_interval_ms: Option<Sourced<u64>>,
    pub tracing_export_timeout_ms: Option<Sourced<u64>>,
    /// `tracing.trace_url`; `""` (or never set): no link.
    pub tracing_trace_url: Option<Sourced<String>>,
}

impl Partial {
    /// Lays `upper` over `self`: every key `upper` sets wins, arrays are replaced as a whole.
    pub(crate) fn overlay(self, upper: Partial) -> Partial {
        Partial {
            node_id: upper.node_id.or(self.node_id),
            data_dir: upper.data_dir.or(self.data_dir),
            node_address: upper.node_address.or(self.node_address),
            signing_key_file: upper.signing_key_file.or(self.signing_key_file),
            partition_threads: upper.partition_threads.or(self.partition_threads),
            ingress: upper.ingress.or(self.ingress),
            admin: upper.admin.or(self.admin),
            ingress_auth_tokens: upper.ingress_auth_tokens.or(self.ingress_auth_tokens),
            ingress_auth_token_file: upper
                .ingress_auth_token_file
                .or(self.ingress_auth_token_file),
            ingress_cors_allowed_origins: upper
                .ingress_cors_allowed_origins
                .or(self.ingress_cors_allowed_origins),
            admin_auth_tokens: upper.admin_auth_tokens.or(self.admin_auth_tokens),
            admin_auth_token_file: upper.admin_auth_token_file.or(self.admin_auth_token_file),
            admin_deployment_allowlist: upper
                .admin_deployment_allowlist
                .or(self.admin_deployment_allowlist),
            sql: upper.sql.or(self.sql),
            statement_timeout_ms: upper.statement_timeout_ms.or(self.statement_timeout_ms),
            max_rows: upper.max_rows.or(self.max_rows),
            sql_password: upper.sql_password.or(self.sql_password),
            sql_password_file: upper.sql_password_file.or(self.sql_password_file),
            sql_limits: self.sql_limits.overlay(upper.sql_limits),
            tls: self.tls.overlay(upper.tls),
            cluster_name: upper.cluster_name.or(self.cluster_name),
            partitions: upper.partitions.or(self.partitions),
            replication_factor: upper.replication_factor.or(self.replication_factor),
            nodes: upper.nodes.or(self.nodes),
            limits: upper.limits.or(self.limits),
            max_batch_commands: upper.max_batch_commands.or(self.max_batch_commands),
            max_batch_bytes: upper.max_batch_bytes.or(self.max_batch_bytes),
            snapshot_interval: upper.snapshot_interval.or(self.snapshot_interval),
            election_timeout_ms: upper.election_timeout_ms.or(self.election_timeout_ms),
            heartbeat_interval_ms: upper.heartbeat_interval_ms.or(self.heartbeat_interval_ms),
            storage: self.storage.overlay(upper.storage),
            inactivity_timeout_ms: upper.inactivity_timeout_ms.or(self.inactivity_timeout_ms),
            abort_timeout_ms: upper.abort_timeout_ms.or(self.abort_timeout_ms),
            retry_initial_interval_ms: upper
                .retry_initial_interval_ms
                .or(self.retry_initial_interval_ms),
            retry_factor: upper.retry_factor.or(self.retry_factor),
            retry_max_interval_ms: upper.retry_max_interval_ms.or(self.retry_max_interval_ms),
            retry_max_attempts: upper.retry_max_attempts.or(self.retry_max_attempts),
            max_message_bytes: upper.max_message_bytes.or(self.max_message_bytes),
            max_concurrent_attempts: upper
                .max_concurrent_attempts
                .or(self.max_concurrent_attempts),
            tracing_endpoint: upper.tracing_endpoint.or(self.tracing_endpoint),
            tracing_service_name: upper.tracing_service_name.or(self.tracing_service_name),
            tracing_queue_capacity: upper.tracing_queue_capacity.or(self.tracing_queue_capacity),
            tracing_batch_size: upper.tracing_batch_size.or(self.tracing_batch_size),
            tracing_flush_interval_ms: upper
                .tracing_flush_interval_ms
                .or(self.tracing_flush_interval_ms),
            tracing_export_timeout_ms: upper
                .tracing_export_timeout_ms
                .or(self.tracing_export_timeout_ms),
            tracing_trace_url: upper.tracing_trace_url.or(self.tracing_trace_url),
        }
    }
}

/// Inclusive range accepted for an integer key; `max == None` means "no upper bound".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    pub min: i128,
    pub max: Option<i128>,
}

impl Range {
    const fn between(min: i128, max: i128) -> Range {
        Range {
            min,
            max: Some(max),
        }
    }

    const fn at_least(min: i128) -> Range {
        Range { min, max: None }
    }

    fn contains(self, n: i128) -> bool {
        n >= self.min && self.max.is_none_or(|max| n <= max)
    }

    pub(crate) fn describe(self) -> String {
        match self.max {
            Some(max) => format!("{}..={max}", self.min),
            None => format!(">= {}", self.min),
        }
    }
}

pub(crate) const NODE_ID: Range = Range::at_least(1);
pub(crate) const PARTITIONS: Range = Range::between(1, 4096);
/// `node.partition_threads`: 0 is "one per core".
pub(crate) const PARTITION_THREADS: Range = Range::between(0, 256);
pub(crate) const REPLICATION_FACTOR: Range = Range::at_least(1);
pub(crate) const MAX_BATCH_COMMANDS: Range = Range::between(1, 65536);
pub(crate) const MAX_BATCH_BYTES: Range = Range::at_least(1024);
pub(crate) const SNAPSHOT_INTERVAL: Range = Range::at_least(100);
pub(crate) const ELECTION_TIMEOUT_MS: Range = Range::between(50, 60_000);
/// Heartbeats: no busier than every 10 ms, no rarer than the longest election timeout.
pub(crate) const HEARTBEAT_INTERVAL_MS: Range = Range::between(10, 60_000);
/// Longest `cluster.name`: short enough for logs, metrics labels and the data dir's record.
pub(crate) const CLUSTER_NAME_MAX: usize = 64;
/// Timeouts and retry intervals: at least 1 ms, at most 2^53 ms so every tool reads them exactly.
pub(crate) const MILLIS: Range = Range::between(1, 1 << 53);
pub(crate) const MAX_ROWS: Range = Range::between(1, 1 << 53);
pub(crate) const RETRY_MAX_ATTEMPTS: Range = Range::between(1, u32::MAX as i128);
/// One message: at least 1 KiB, at most a protocol frame (16 MiB) less 64 KiB of framing.
pub(crate) const MAX_MESSAGE_BYTES: Range = Range::between(1024, 16_711_680);
pub(crate) const MAX_CONCURRENT_ATTEMPTS: Range = Range::between(1, 65_536);
/// Spans queued for export at most (and so per batch): 2^24, a few GiB of spans at worst.
pub(crate) const TRACING_QUEUE: Range = Range::between(1, 16_777_216);

/// Which layer is being read; decides how origins are named and whether strings may hold numbers.
pub(crate) enum Layer<'a> {
    Default,
    File(&'a Path),
    Env(&'a EnvVars),
}

impl Layer<'_> {
    /// Names the place a key came from; for the environment, the exact variable.
    fn origin(&self, key: &str) -> Origin {
        match self {
            Layer::Default => Origin::Default,
            Layer::File(path) => Origin::File(path.to_path_buf()),
            Layer::Env(vars) => Origin::Env(vars.variable_for(key)),
        }
    }

    /// Environment values are always strings, so numbers are parsed from them there only.
    fn is_env(&self) -> bool {
        matches!(self, Layer::Env(_))
    }
}

/// The `HOLDFAST` variables of an environment, with the dotted key each one addresses.
#[derive(Debug, Default)]
pub(crate) struct EnvVars {
    /// Dotted key -> variable name.
    by_key: BTreeMap<String, String>,
    /// Variable name -> value, in the spelling `config::Environment` understands.
    values: HashMap<String, String>,
}

impl EnvVars {
    /// Picks the relevant variables out of `env` and resolves the `HOLDFAST_DATA_DIR` alias.
    pub(crate) fn collect(env: &HashMap<String, String>) -> Result<EnvVars, Error> {
        let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
        let mut vars = EnvVars::default();
        let mut names: Vec<&String> = env
            .keys()
            .filter(|name| name.to_lowercase().starts_with(&prefix))
            .collect();
        names.sort();
        for name in names {
            let key = env_key(name, &prefix);
            if let Some(first) = vars.by_key.get(&key) {
                return Err(Error::Ambiguous {
                    key,
                    first: first.clone(),
                    second: name.clone(),
                });
            }
            vars.by_key.insert(key, name.clone());
            if let Some(value) = env.get(name) {
                vars.values.insert(name.clone(), value.clone());
            }
        }
        // A variable that sets a whole table and another that sets a key inside it would
        // clobber each other depending on iteration order; refuse rather than guess.
        for (shorter, first) in &vars.by_key {
            let nested = format!("{shorter}.");
            if let Some((_, second)) = vars
                .by_key
                .range(nested.clone()..)
                .find(|(key, _)| key.starts_with(&nested))
            {
                return Err(Error::Ambiguous {
                    key: shorter.clone(),
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
        if let Some(value) = env.get(DATA_DIR_ALIAS)
            && !vars.by_key.contains_key("node.data_dir")
        {
            let canonical = format!("{ENV_PREFIX}{ENV_SEPARATOR}NODE{ENV_SEPARATOR}DATA_DIR");
            vars.by_key
                .insert("node.data_dir".to_owned(), DATA_DIR_ALIAS.to_owned());
            vars.values.insert(canonical, value.clone());
        }
        Ok(vars)
    }

    /// The variable that set `key` (or a key below it); falls back to the canonical spelling.
    fn variable_for(&self, key: &str) -> String {
        if let Some(name) = self.by_key.get(key) {
            return name.clone();
        }
        let nested = format!("{key}.");
        if let Some((_, name)) = self
            .by_key
            .range(nested.clone()..)
            .find(|(k, _)| k.starts_with(&nested))
        {
            return name.clone();
        }
        format!(
            "{ENV_PREFIX}{ENV_SEPARATOR}{}",
            key.to_uppercase().replace('.', ENV_SEPARATOR)
        )
    }
}

/// The dotted key a variable addresses, derived exactly as `config::Environment` derives it.
fn env_key(name: &str, lower_prefix: &str) -> String {
    let lower = name.to_lowercase();
    let rest = lower.get(lower_prefix.len()..).unwrap_or_default();
    rest.replace(ENV_SEPARATOR, ".")
}

/// Parses TOML text (the embedded default or a config file) into a raw value tree.
pub(crate) fn parse_toml(text: &str, origin: &Origin) -> Result<Map<String, Value>, Error> {
    File::from_str(text, FileFormat::Toml)
        .collect()
        .map_err(|err| Error::Parse {
            origin: origin.clone(),
            message: err.to_string().trim_end().to_owned(),
        })
}

/// Turns the relevant environment variables into a nested raw value tree.
pub(crate) fn parse_env(vars: &EnvVars) -> Result<Map<String, Value>, Error> {
    let source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .source(Some(vars.values.clone()));
    let built = config::Config::builder()
        .add_source(source)
        .build()
        .map_err(|err| Error::Parse {
            origin: Origin::Env(format!("{ENV_PREFIX}{ENV_SEPARATOR}*")),
            message: err.to_string().trim_end().to_owned(),
        })?;
    match built.cache.kind {
        ValueKind::Table(table) => Ok(table),
        _ => Ok(Map::new()),
    }
}

/// Checks one layer's raw tree against the schema and converts it into typed values.
pub(crate) fn read_layer(tree: Map<String, Value>, layer: &Layer<'_>) -> Result<Partial, Error> {
    let mut partial = Partial::default();
    for (section, value) in sorted(tree) {
        if section == "limits" {
            partial.limits = Some(limits::limits(value, &section, layer)?);
            continue;
        }
        let fields = table(value, &section, layer)?;
        match section.as_str() {
            "node" => {
                for (name, value) in sorted(fields) {
                    let key = format!("node.{name}");
                    match name.as_str() {
                        "id" => partial.node_id = Some(int(&value, &key, NODE_ID, layer)?),
                        "data_dir" => partial.data_dir = Some(path(&value, &key, layer)?),
                        "signing_key_file" => {
                            partial.signing_key_file = Some(path(&value, &key, layer)?);
                        }
                        "partition_threads" => {
                            partial.partition_threads =
                                Some(int(&value, &key, PARTITION_THREADS, layer)?);
                        }
                        "address" => {
                            let value = member_address(&value, &key, layer)?;
                            let origin = layer.origin(&key);
                            partial.node_address = Some(Sourced { value, origin });
                        }
                        _ => return Err(unknown(&key, layer)),
                    }
                }
            }
            "ingress" | "admin" | "sql" => {
                for (name, value) in sorted(fields) {
                    let key = format!("{section}.{name}");
                    match (section.as_str(), name.as_str()) {
                        (_, "bind_address") => {}
                        _ if partial.tls.read(&section, &name, &value, layer)? => continue,
                        ("ingress" | "admin", _)
                            if access_key(&mut partial, &section, &name, &value, layer)? =>
                        {
                            continue;
                        }
                        ("sql", "statement_timeout_ms") => {
                            partial.statement_timeout_ms = Some(int(&value, &key, MILLIS, layer)?);
                            continue;
                        }
                        ("sql", "max_rows") => {
                            partial.max_rows = Some(int(&value, &key, MAX_ROWS, layer)?);
                            continue;
                        }
                        ("sql", "password") => {
                            let origin = layer.origin(&key);
                            let password = crate::sql_password::password(&value, &key, origin)?;
                            partial.sql_password = Some(password);
                            continue;
                        }
                        ("sql", "password_file") => {
                            partial.sql_password_file = Some(path(&value, &key, layer)?);
                            continue;
                        }
                        ("sql", _) if partial.sql_limits.read(&name, &value, layer)? => continue,
                        _ => return Err(unknown(&key, layer)),
                    }
                    let address = Some(socket_address(&value, &key, layer)?);
                    match section.as_str() {
                        "ingress" => partial.ingress = address,
                        "admin" => partial.admin = address,
                        _ => partial.sql = address,
                    }
                }
            }
            "cluster" => {
                for (name, value) in sorted(fields) {
                    let key = format!("cluster.{name}");
                    if partial.tls.read("cluster", &name, &value, layer)? {
                        continue;
                    }
                    match name.as_str() {
                        "name" => partial.cluster_name = Some(cluster_name(&value, &key, layer)?),
                        "partitions" => {
                            partial.partitions = Some(int(&value, &key, PARTITIONS, layer)?)
                        }
                        "replication_factor" => {
                            partial.replication_factor =
                                Some(int(&value, &key, REPLICATION_FACTOR, layer)?);
                        }
                        "nodes" => partial.nodes = Some(members(value, &key, layer)?),
                        _ => return Err(unknown(&key, layer)),
                    }
                }
            }
            "log" => {
                for (name, value) in sorted(fields) {
                    let key = format!("log.{name}");
                    match name.as_str() {
                        "max_batch_commands" => {
                            partial.max_batch_commands =
                                Some(int(&value, &key, MAX_BATCH_COMMANDS, layer)?);
                        }
                        "max_batch_bytes" => {
                            partial.max_batch_bytes =
                                Some(int(&value, &key, MAX_BATCH_BYTES, layer)?);
                        }
                        "snapshot_interval" => {
                            partial.snapshot_interval =
                                Some(int(&value, &key, SNAPSHOT_INTERVAL, layer)?);
                        }
                        "election_timeout_ms" => {
                            partial.election_timeout_ms =
                                Some(int(&value, &key, ELECTION_TIMEOUT_MS, layer)?);
                        }
                        "heartbeat_interval_ms" => {
                            partial.heartbeat_interval_ms =
                                Some(int(&value, &key, HEARTBEAT_INTERVAL_MS, layer)?);
                        }
                        _ => return Err(unknown(&key, layer)),
                    }
                }
            }
            "storage" => {
                for (name, value) in sorted(fields) {
                    partial.storage.read(&name, &value, layer)?;
                }
            }
            "invocation" => {
                for (name, value) in sorted(fields) {
                    let key = format!("invocation.{name}");
                    if partial.tls.read("invocation", &name, &value, layer)? {
                        continue;
                    }
                    match name.as_str() {
                        "inactivity_timeout_ms" => {
                            partial.inactivity_timeout_ms = Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "abort_timeout_ms" => {
                            partial.abort_timeout_ms = Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "retry_initial_interval_ms" => {
                            partial.retry_initial_interval_ms =
                                Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "retry_factor" => partial.retry_factor = Some(factor(&value, &key, layer)?),
                        "retry_max_interval_ms" => {
                            partial.retry_max_interval_ms = Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "retry_max_attempts" => {
                            partial.retry_max_attempts =
                                Some(int(&value, &key, RETRY_MAX_ATTEMPTS, layer)?);
                        }
                        "max_message_bytes" => {
                            partial.max_message_bytes =
                                Some(int(&value, &key, MAX_MESSAGE_BYTES, layer)?);
                        }
                        "max_concurrent_attempts" => {
                            partial.max_concurrent_attempts =
                                Some(int(&value, &key, MAX_CONCURRENT_ATTEMPTS, layer)?);
                        }
                        _ => return Err(unknown(&key, layer)),
                    }
                }
            }
            "tracing" => {
                for (name, value) in sorted(fields) {
                    let key = format!("tracing.{name}");
                    match name.as_str() {
                        "endpoint" => partial.tracing_endpoint = Some(url(&value, &key, layer)?),
                        "service_name" => {
                            partial.tracing_service_name =
                                Some(non_empty(&value, &key, "a service name string", layer)?);
                        }
                        "queue_capacity" => {
                            partial.tracing_queue_capacity =
                                Some(int(&value, &key, TRACING_QUEUE, layer)?);
                        }
                        "batch_size" => {
                            partial.tracing_batch_size =
                                Some(int(&value, &key, TRACING_QUEUE, layer)?);
                        }
                        "flush_interval_ms" => {
                            partial.tracing_flush_interval_ms =
                                Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "export_timeout_ms" => {
                            partial.tracing_export_timeout_ms =
                                Some(int(&value, &key, MILLIS, layer)?);
                        }
                        "trace_url" => {
                            partial.tracing_trace_url = Some(trace_url(&value, &key, layer)?);
                        }
                        _ => return Err(unknown(&key, layer)),
                    }
                }
            }
            _ => return Err(unknown(&section, layer)),
        }
    }
    Ok(partial)
}

/// A retry factor: a finite number >= 1 (integers accepted; strings only from the environment).
fn factor(value: &Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<f64>, Error> {
    let expected = "a number >= 1.0";
    #[allow(clippy::cast_precision_loss)]
    let x = match &value.kind {
        ValueKind::Float(x) => *x,
        ValueKind::I64(n) => *n as f64,
        ValueKind::U64(n) => *n as f64,
        ValueKind::String(s) if layer.is_env() => match s.trim().parse::<f64>() {
            Ok(x) => x,
            Err(_) => return Err(invalid_type(&value.kind, key, expected, layer)),
        },
        other => return Err(invalid_type(other, key, expected, layer)),
    };
    if !(x.is_finite() && x >= 1.0) {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: x.to_string(),
            expected: "a finite number >= 1.0".to_owned(),
        });
    }
    Ok(Sourced {
        value: x,
        origin: layer.origin(key),
    })
}

/// Reads the `[[cluster.nodes]]` array; each entry must be complete since arrays never merge.
fn members(value: Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<Vec<Member>>, Error> {
    if layer.is_env() {
        return Err(Error::Unsupported {
            origin: layer.origin(key),
            key: key.to_owned(),
            reason: "cluster members cannot be set from the environment; \
                     declare [[cluster.nodes]] in the config file",
        });
    }
    let items = match value.kind {
        ValueKind::Array(items) => items,
        other => {
            return Err(Error::InvalidType {
                origin: layer.origin(key),
                key: key.to_owned(),
                found: describe(&other),
                expected: "an array of tables ([[cluster.nodes]])",
            });
        }
    };
    let mut members = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let entry = format!("{key}[{index}]");
        let fields = table(item, &entry, layer)?;
        let mut id = None;
        let mut address = None;
        for (name, value) in sorted(fields) {
            let field = format!("{entry}.{name}");
            match name.as_str() {
                "id" => id = Some(int::<u64>(&value, &field, NODE_ID, layer)?.value),
                "address" => address = Some(member_address(&value, &field, layer)?),
                _ => return Err(unknown(&field, layer)),
            }
        }
        let Some(id) = id else {
            return Err(missing(&format!("{entry}.id"), layer));
        };
        let Some(address) = address else {
            return Err(missing(&format!("{entry}.address"), layer));
        };
        members.push(Member { id, address });
    }
    Ok(Sourced {
        value: members,
        origin: layer.origin(key),
    })
}

/// Keys sorted so that the first error reported is deterministic.
fn sorted(map: Map<String, Value>) -> Vec<(String, Value)> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn unknown(key: &str, layer: &Layer<'_>) -> Error {
    Error::UnknownKey {
        origin: layer.origin(key),
        key: key.to_owned(),
    }
}

fn missing(key: &str, layer: &Layer<'_>) -> Error {
    Error::MissingKey {
        origin: layer.origin(key),
        key: key.to_owned(),
    }
}

fn invalid_type(kind: &ValueKind, key: &str, expected: &'static str, layer: &Layer<'_>) -> Error {
    Error::InvalidType {
        origin: layer.origin(key),
        key: key.to_owned(),
        found: describe(kind),
        expected,
    }
}

/// Human description of a raw value for "found ..." in type errors.
fn describe(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(b) => format!("boolean {b}"),
        ValueKind::I64(n) => format!("integer {n}"),
        ValueKind::I128(n) => format!("integer {n}"),
        ValueKind::U64(n) => format!("integer {n}"),
        ValueKind::U128(n) => format!("integer {n}"),
        ValueKind::Float(x) => format!("float {x}"),
        ValueKind::String(s) => format!("string {s:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "an array".to_owned(),
    }
}

fn table(value: Value, key: &str, layer: &Layer<'_>) -> Result<Map<String, Value>, Error> {
    match value.kind {
        ValueKind::Table(fields) => Ok(fields),
        other => Err(invalid_type(&other, key, "a table", layer)),
    }
}

/// An integer within `range`; strings are accepted only from the environment.
fn int<T: TryFrom<i128>>(
    value: &Value,
    key: &str,
    range: Range,
    layer: &Layer<'_>,
) -> Result<Sourced<T>, Error> {
    let n: i128 = match &value.kind {
        ValueKind::I64(n) => i128::from(*n),
        ValueKind::I128(n) => *n,
        ValueKind::U64(n) => i128::from(*n),
        ValueKind::U128(n) => i128::try_from(*n).unwrap_or(i128::MAX),
        ValueKind::String(s) if layer.is_env() => match s.trim().parse::<i128>() {
            Ok(n) => n,
            Err(_) => return Err(invalid_type(&value.kind, key, "an integer", layer)),
        },
        other => return Err(invalid_type(other, key, "an integer", layer)),
    };
    let out_of_range = || Error::InvalidValue {
        origin: layer.origin(key),
        key: key.to_owned(),
        value: n.to_string(),
        expected: range.describe(),
    };
    if !range.contains(n) {
        return Err(out_of_range());
    }
    let value = T::try_from(n).map_err(|_| out_of_range())?;
    Ok(Sourced {
        value,
        origin: layer.origin(key),
    })
}

fn string<'v>(
    value: &'v Value,
    key: &str,
    expected: &'static str,
    layer: &Layer<'_>,
) -> Result<&'v str, Error> {
    match &value.kind {
        ValueKind::String(s) => Ok(s),
        other => Err(invalid_type(other, key, expected, layer)),
    }
}

fn path(value: &Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<PathBuf>, Error> {
    let text = string(value, key, "a path string", layer)?;
    if text.is_empty() {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: "\"\"".to_owned(),
            expected: "a non-empty path".to_owned(),
        });
    }
    Ok(Sourced {
        value: PathBuf::from(text),
        origin: layer.origin(key),
    })
}

/// A string that may not be empty (trimmed when it comes from the environment).
fn non_empty(
    value: &Value,
    key: &str,
    expected: &'static str,
    layer: &Layer<'_>,
) -> Result<Sourced<String>, Error> {
    let text = string(value, key, expected, layer)?;
    let text = if layer.is_env() { text.trim() } else { text };
    if text.trim().is_empty() {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: format!("{text:?}"),
            expected: "a non-empty string".to_owned(),
        });
    }
    Ok(Sourced {
        value: text.to_owned(),
        origin: layer.origin(key),
    })
}

/// A cluster name: 1 to [`CLUSTER_NAME_MAX`] characters of `A-Z a-z 0-9 . _ -`, so it can be
/// compared byte for byte and printed anywhere (trimmed when it comes from the environment).
fn cluster_name(value: &Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<String>, Error> {
    let text = string(value, key, "a cluster name string", layer)?;
    let text = if layer.is_env() { text.trim() } else { text };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if text.is_empty() || text.len() > CLUSTER_NAME_MAX || !text.chars().all(allowed) {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: format!("{text:?}"),
            expected: format!(
                "1 to {CLUSTER_NAME_MAX} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            ),
        });
    }
    Ok(Sourced {
        value: text.to_owned(),
        origin: layer.origin(key),
    })
}

/// An `http://` or `https://` URL with a host (and, if given, a valid port), or `""` for "none".
fn url(value: &Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<String>, Error> {
    let text = string(
        value,
        key,
        "a URL string like \"http://127.0.0.1:4318\"",
        layer,
    )?;
    let text = if layer.is_env() { text.trim() } else { text };
    if !text.is_empty() && !is_http_url(text) {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: format!("{text:?}"),
            expected: "an http:// or https:// URL with a host, like \"http://127.0.0.1:4318\", \
                       or \"\" for none"
                .to_owned(),
        });
    }
    Ok(Sourced {
        value: text.to_owned(),
        origin: layer.origin(key),
    })
}

/// A trace viewer's URL template: an http(s) URL holding `{trace_id}`, or `""` for none.
fn trace_url(value: &Value, key: &str, layer: &Layer<'_>) -> Result<Sourced<String>, Error> {
    let sourced = url(value, key, layer)?;
    if !sourced.value.is_empty() && !sourced.value.contains(TRACE_ID) {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: format!("{:?}", sourced.value),
            expected: format!(
                "a URL holding {TRACE_ID}, like \"http://127.0.0.1:16686/trace/{TRACE_ID}\", \
                 or \"\" for none"
            ),
        });
    }
    Ok(sourced)
}

/// What a trace URL template holds where the trace id goes.
const TRACE_ID: &str = "{trace_id}";

/// Checks the shape of an HTTP(S) URL: scheme, a non-empty host, an optional numeric port, and
/// no whitespace. Deliberately small: the HTTP client parses it for real when it starts.
fn is_http_url(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, after)) => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    !host.is_empty() && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0))
}

fn socket_address(
    value: &Value,
    key: &str,
    layer: &Layer<'_>,
) -> Result<Sourced<SocketAddr>, Error> {
    let text = string(
        value,
        key,
        "a socket address string like \"127.0.0.1:8080\"",
        layer,
    )?;
    let text = if layer.is_env() { text.trim() } else { text };
    match text.parse::<SocketAddr>() {
        Ok(address) => Ok(Sourced {
            value: address,
            origin: layer.origin(key),
        }),
        Err(_) => Err(Error::InvalidAddress {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: text.to_owned(),
        }),
    }
}

/// A member's raft address must be dialable by its peers: a concrete IP and a real port.
fn member_address(value: &Value, key: &str, layer: &Layer<'_>) -> Result<SocketAddr, Error> {
    let address = socket_address(value, key, layer)?.value;
    if address.ip().is_unspecified() || address.port() == 0 {
        return Err(Error::InvalidValue {
            origin: layer.origin(key),
            key: key.to_owned(),
            value: address.to_string(),
            expected: "an address peers can connect to (a specific IP and a non-zero port)"
                .to_owned(),
        });
    }
    Ok(address)
}

/// Reads the access-control keys of `[ingress]` and `[admin]` (tokens, token file, CORS
/// origins, deployment allowlist) into `partial`; `false` for any other key.
fn access_key(
    partial: &mut Partial,
    section: &str,
    name: &str,
    value: &Value,
    layer: &Layer<'_>,
) -> Result<bool, Error> {
    use crate::access;
    let key = format!("{section}.{name}");
    let list = || access::strings(value, &key, layer.origin(&key), layer.is_env());
    match (section, name) {
        ("ingress", "auth_tokens") => {
            partial.ingress_auth_tokens = Some(access::tokens(list()?, &key)?);
        }
        ("admin", "auth_tokens") => {
            partial.admin_auth_tokens = Some(access::tokens(list()?, &key)?);
        }
        ("ingress", "auth_token_file") => {
            partial.ingress_auth_token_file = Some(path(value, &key, layer)?);
        }
        ("admin", "auth_token_file") => {
            partial.admin_auth_token_file = Some(path(value, &key, layer)?);
        }
        ("ingress", "cors_allowed_origins") => {
            partial.ingress_cors_allowed_origins = Some(access::origins(list()?, &key)?);
        }
        ("admin", "deployment_allowlist") => {
            partial.admin_deployment_allowlist = Some(access::host_patterns(list()?, &key)?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}
