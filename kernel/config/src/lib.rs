//! Node configuration for Holdfast.
//!
//! A node's configuration is layered, lowest priority first:
//!
//! 1. the embedded single-node default ([`DEFAULT_TOML`]),
//! 2. the TOML file given with `--config`,
//! 3. the environment: `HOLDFAST__SECTION__KEY` (e.g. `HOLDFAST__ADMIN__BIND_ADDRESS`), plus
//!    the alias `HOLDFAST_DATA_DIR` for `node.data_dir` (the structured name wins if both are set).
//!
//! Tables merge key by key; `[[cluster.nodes]]` is replaced as a whole by the highest layer that
//! declares it. Every layer is checked on its own (unknown keys, types, ranges) and the merged
//! result is checked for cross-key rules, so each [`Error`] names the key and where it came from.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod access;
mod error;
mod layer;
mod sql_password;
mod validate;

#[cfg(test)]
mod tests;

pub use access::{Admin, HostPattern, Ingress, Token, read_token_file};
pub use error::{Error, Origin};
pub use sql_password::SqlPassword;

use layer::{EnvVars, Layer};

/// The embedded default: a complete single-node configuration, so a bare `holdfast` just runs.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Everything a node needs to start; produced by [`Config::load`] and shared by all subsystems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity and storage of this node.
    pub node: Node,
    /// The HTTP listener for invocations, with its tokens and CORS origins.
    pub ingress: Ingress,
    /// The HTTP listener for operators, with its tokens and registration allowlist.
    pub admin: Admin,
    /// The PostgreSQL-wire listener for `psql` introspection, with its query limits.
    pub sql: Sql,
    /// Cluster membership and partitioning, identical on every node.
    pub cluster: Cluster,
    /// Replicated-log tuning.
    pub log: Log,
    /// Page-cache sizes of the node's storage files.
    pub storage: Storage,
    /// Retry policy and attempt timeouts of invocations, unless a service or handler declares
    /// its own in its discovery manifest.
    pub invocation: Invocation,
    /// Span export over OTLP/HTTP; off unless an endpoint is set.
    pub tracing: Tracing,
    /// Flow-control limits (`[[limits]]`) the node puts into the registry at start, creating or
    /// replacing each by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<holdfast_types::Limit>,
}

/// This node's identity; the id selects its own entry in [`Cluster::nodes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique node id (>= 1): one of `cluster.nodes`, or a new id with `address` set.
    pub id: u64,
    /// Directory holding this node's durable state; relative paths resolve against the cwd.
    pub data_dir: PathBuf,
    /// The node-to-node address of a node joining a running cluster (its id is not in
    /// `cluster.nodes`; an operator adds it with `POST /cluster/nodes`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// The node's ed25519 private key (PKCS#8 PEM) with which it signs requests to service
    /// endpoints; absent means `<data_dir>/signing-key`, created on first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// Threads the node's partitions run on (their actors, attempts and endpoint connections);
    /// 0 means one per core, never more than `cluster.partitions`.
    pub partition_threads: u32,
}

/// A TCP listener; kept as a struct so each listener is its own TOML table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address to bind; port 0 asks the OS for an ephemeral port.
    pub bind_address: SocketAddr,
}

/// The SQL introspection endpoint: where it listens and how much one statement may cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// Address of the PostgreSQL-wire listener; port 0 asks the OS for an ephemeral port.
    pub bind_address: SocketAddr,
    /// A statement running longer is cancelled (SQLSTATE 57014 on the wire).
    pub statement_timeout_ms: u64,
    /// Most rows one statement returns; the rest is cut off with a notice.
    pub max_rows: u64,
    /// The node's memory pool for SQL, in bytes: every statement reserves from it and may hold
    /// at most half of it; a statement over its share fails (SQLSTATE 53200). 0: unbounded.
    pub memory_limit_bytes: u64,
    /// Most bytes of rows one statement returns; the rest is cut off with a notice. 0: no cap.
    pub max_result_bytes: u64,
    /// PostgreSQL-wire connections open at once; more are refused (SQLSTATE 53300).
    pub max_connections: u32,
    /// A pgwire connection that has not finished its startup after this long is closed.
    pub startup_timeout_ms: u64,
    /// A pgwire connection idle (no message, no statement running) this long is closed. 0: off.
    pub idle_timeout_ms: u64,
    /// Largest frontend message accepted on the pgwire listener; a larger one is refused and
    /// its connection closed, before it is read.
    pub max_message_bytes: u64,
    /// The password psql clients must present (SCRAM-SHA-256), from `password` or the first
    /// line of `password_file`; `None`: every client is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SqlPassword>,
    /// The file the password was read from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `tls_cert_file` + `tls_key_file`: the listener speaks TLS only (`sslmode=require`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

/// Cluster shape shared by all nodes; every node should load the same values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Name of the cluster (1 to 64 of `A-Z a-z 0-9 . _ -`; default `holdfast`); nodes and data
    /// dirs of a cluster with another name are refused.
    pub name: String,
    /// Number of partitions (1..=4096); fixed once the data directory is created.
    pub partitions: u32,
    /// Replicas per partition (1..=number of nodes).
    pub replication_factor: u32,
    /// All members, this node included.
    pub nodes: Vec<Member>,
    /// `tls_ca_file` + `tls_cert_file` + `tls_key_file`: the node transport speaks mutual TLS.
    /// Per node (each names its own certificate), but every node of a cluster must enable it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,
}

/// A certificate chain and its private key, PEM files a listener (or a node, to its peers)
/// presents; re-read when they change, so certificates rotate without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`tls_cert_file`).
    pub cert_file: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 or SEC1 (`tls_key_file`).
    pub key_file: PathBuf,
}

/// Mutual TLS between the nodes of a cluster: every node presents a certificate issued by the
/// cluster's CA and accepts only peers that do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTls {
    /// The CA certificates peers' certificates must chain to (`cluster.tls_ca_file`).
    pub ca_file: PathBuf,
    /// This node's certificate and key (`cluster.tls_cert_file`, `cluster.tls_key_file`).
    pub identity: TlsFiles,
}

/// One cluster member as seen by its peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's node id.
    pub id: u64,
    /// Node-to-node (raft) address peers connect to.
    pub address: SocketAddr,
}

/// Replicated-log tuning: group commit, snapshots and election timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// Group commit: most commands per raft entry (1..=65536).
    pub max_batch_commands: usize,
    /// Group commit: most encoded bytes per raft entry (>= 1024).
    pub max_batch_bytes: usize,
    /// Raft entries between checkpoints (>= 100): each makes the applied state durable and lets
    /// the log be purged up to half an interval behind it.
    pub snapshot_interval: u64,
    /// Lower bound of the raft election timeout in ms (50..=60000; default 1000); the upper bound
    /// is twice it.
    pub election_timeout_ms: u64,
    /// Period of the leader's heartbeats in ms (10..=60000, < `election_timeout_ms`; default 250).
    pub heartbeat_interval_ms: u64,
}

/// Page caches of the node's redb files: with them, a node's memory is bounded whatever the
/// amount of data it keeps (`log_cache_bytes + partitions × state_cache_bytes` at most, plus the
/// metadata store's fixed 1 MiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Cache of the node's raft log file, shared by every partition's log (64 KiB..=1 TiB).
    pub log_cache_bytes: usize,
    /// Cache of each partition's state file (64 KiB..=1 TiB): hot objects, live invocations and
    /// their journals.
    pub state_cache_bytes: usize,
}

/// How invocations are retried and how long a silent attempt may run: the node-wide defaults
/// under the per-service and per-handler values of discovery manifests.
///
/// The retry fields feed the partition state machine's configuration, which must be identical on
/// every replica: like `[cluster]`, set them alike on every node of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    /// Silence (ms) after which an attempt is asked to suspend (>= 1; default 60000).
    pub inactivity_timeout_ms: u64,
    /// Time (ms) after that request at which a still running attempt is aborted (>= 1; default
    /// 600000).
    pub abort_timeout_ms: u64,
    /// Delay (ms) before the first retry of a failed attempt (>= 1; default 50).
    pub retry_initial_interval_ms: u64,
    /// Factor between consecutive retry delays (finite, >= 1.0; default 2.0).
    pub retry_factor: f64,
    /// Upper bound (ms) of a retry delay (>= `retry_initial_interval_ms`; default 60000).
    pub retry_max_interval_ms: u64,
    /// Attempts before a failing invocation is paused until resumed (>= 1; default 70).
    pub retry_max_attempts: u32,
    /// The largest message one invocation carries (1024..=16711680; default 16711680, a
    /// protocol frame less framing): a request body, an awakeable's value, one journal entry or
    /// state value. Larger bodies are refused with 413; a handler writing a larger entry fails
    /// terminally. Decides partition state, so every node of a cluster must set it alike.
    pub max_message_bytes: usize,
    /// Attempts running at once per partition (1..=65536; default 256); further invocations
    /// wait in order for a free slot.
    pub max_concurrent_attempts: usize,
    /// CA certificates (PEM) trusted for `https://` endpoints in addition to the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_tls_ca_file: Option<PathBuf>,
}

/// Where and how spans are exported (OTLP over HTTP/protobuf, e.g. to Jaeger). Purely local to
/// this node: nodes of one cluster may trace to different collectors or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The collector's OTLP/HTTP base URL (`http://jaeger:4318`; `/v1/traces` is appended) or its
    /// full traces URL; `None` (absent or `""`): tracing is off.
    pub endpoint: Option<String>,
    /// `service.name` the spans are reported under (non-empty; default `holdfast`).
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped and counted, never waited for
    /// (1..=16777216; default 65536).
    pub queue_capacity: usize,
    /// Spans per export request at most (1..=`queue_capacity`; default 512).
    pub batch_size: usize,
    /// A partial batch is sent at the latest this many ms after its first span (>= 1; default
    /// 500).
    pub flush_interval_ms: u64,
    /// Deadline in ms of one export request, retries included (>= 1; default 5000).
    pub export_timeout_ms: u64,
    /// Where a trace is viewed — a URL with `{trace_id}` in it, such as Jaeger's
    /// `http://127.0.0.1:16686/trace/{trace_id}` — so the web UI links trace ids there; `None`:
    /// no link.
    pub trace_url: Option<String>,
}

impl Tracing {
    /// Whether spans are recorded and exported at all.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }
}

/// What a node's `[cluster]` section amounts to, in a form that compares across nodes and
/// restarts: the same on every node of one cluster, recorded in each data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// `cluster.name`.
    pub name: String,
    /// `cluster.partitions`.
    pub partitions: u32,
    /// `cluster.replication_factor`.
    pub replication_factor: u32,
    /// `cluster.nodes` as `(id, raft address)`, sorted by id so the file's order does not matter.
    pub nodes: Vec<(u64, String)>,
}

/// Tags the canonical encoding hashed by [`ClusterIdentity::fingerprint`]; a new encoding gets a
/// new tag, so two encodings can never be mistaken for one another.
const FINGERPRINT_TAG: &[u8] = b"holdfast.cluster-identity.v1";

impl Cluster {
    /// The identity every node of this cluster must share (nodes sorted by id).
    pub fn identity(&self) -> ClusterIdentity {
        let mut nodes: Vec<(u64, String)> = self
            .nodes
            .iter()
            .map(|m| (m.id, m.address.to_string()))
            .collect();
        nodes.sort();
        ClusterIdentity {
            name: self.name.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            nodes,
        }
    }
}

impl ClusterIdentity {
    /// A lowercase hex SHA-256 of a canonical encoding of every field, so nodes can compare
    /// identities by one short string; equal exactly when [`ClusterIdentity::difference`] is
    /// `None` (the order of `nodes` does not count).
    pub fn fingerprint(&self) -> String {
        // Length-prefixed fields in a fixed order, big-endian numbers: no two identities encode
        // alike, whatever their strings contain.
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_TAG);
        let text = |hasher: &mut Sha256, s: &str| {
            hasher.update((s.len() as u64).to_be_bytes());
            hasher.update(s.as_bytes());
        };
        text(&mut hasher, &self.name);
        hasher.update(self.partitions.to_be_bytes());
        hasher.update(self.replication_factor.to_be_bytes());
        let nodes = self.sorted_nodes();
        hasher.update((nodes.len() as u64).to_be_bytes());
        for (id, address) in nodes {
            hasher.update(id.to_be_bytes());
            text(&mut hasher, address);
        }
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The first key whose value differs from `other`'s (`cluster.name`, `cluster.partitions`,
    /// `cluster.replication_factor`, `cluster.nodes`), or `None` if the identities are equal.
    pub fn difference(&self, other: &ClusterIdentity) -> Option<&'static str> {
        if self.name != other.name {
            Some("cluster.name")
        } else if self.partitions != other.partitions {
            Some("cluster.partitions")
        } else if self.replication_factor != other.replication_factor {
            Some("cluster.replication_factor")
        } else if self.sorted_nodes() != other.sorted_nodes() {
            Some("cluster.nodes")
        } else {
            None
        }
    }

    /// `nodes` in id order, for an identity built by hand (or read back) in another order.
    fn sorted_nodes(&self) -> Vec<(u64, &str)> {
        let mut nodes: Vec<(u64, &str)> = self
            .nodes
            .iter()
            .map(|(id, address)| (*id, address.as_str()))
            .collect();
        nodes.sort_unstable();
        nodes
    }
}

/// Returned by [`Config::member`] only for hand-built configs that lack this node's entry.
static NO_MEMBER: Member = Member {
    id: 0,
    address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
};

impl Config {
    /// Loads the layered configuration using the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, Error> {
        let env = process_env()?;
        Config::load_from(file, &env)
    }

    /// Loads the layered configuration with an explicit environment, so tests stay hermetic.
    pub fn load_from(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, Error> {
        let default = layer::read_layer(
            layer::parse_toml(DEFAULT_TOML, &Origin::Default)?,
            &Layer::Default,
        )?;
        let mut merged = default;
        if let Some(path) = file {
            let origin = Origin::File(path.to_path_buf());
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let tree = layer::parse_toml(&text, &origin)?;
            merged = merged.overlay(layer::read_layer(tree, &Layer::File(path))?);
        }
        let vars = EnvVars::collect(env)?;
        let tree = layer::parse_env(&vars)?;
        merged = merged.overlay(layer::read_layer(tree, &Layer::Env(&vars))?);
        validate::finish(merged)
    }

    /// This node's own entry in `cluster.nodes` (its raft address), or its `node.address` when it
    /// joins a running cluster.
    ///
    /// Always present in a loaded config; a hand-built config without it gets a placeholder
    /// with id 0 and an unspecified address instead of a panic.
    pub fn member(&self) -> Member {
        if let Some(address) = self.node.address {
            return Member {
                id: self.node.id,
                address,
            };
        }
        self.cluster
            .nodes
            .iter()
            .find(|m| m.id == self.node.id)
            .unwrap_or(&NO_MEMBER)
            .clone()
    }

    /// Whether this node joins a running cluster instead of being one of its configured nodes.
    pub fn joining(&self) -> bool {
        self.node.address.is_some()
    }
}

/// The process environment restricted to Holdfast's variables, refusing non-UTF-8 values.
fn process_env() -> Result<HashMap<String, String>, Error> {
    let prefix = format!("{}{}", layer::ENV_PREFIX, layer::ENV_SEPARATOR).to_lowercase();
    let mut env = HashMap::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        if !(name.to_lowercase().starts_with(&prefix) || name == layer::DATA_DIR_ALIAS) {
            continue;
        }
        match value.into_string() {
            Ok(value) => {
                env.insert(name, value);
            }
            Err(_) => return Err(Error::NotUnicode { var: name }),
        }
    }
    Ok(env)
}
