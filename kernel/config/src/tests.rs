use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{
    Admin, Cluster, ClusterIdentity, Config, DEFAULT_TOML, Error, HostPattern, Ingress, Invocation,
    Log, Member, Node, Origin, Sql, SqlPassword, Storage, Token, Tracing,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn addr(text: &str) -> SocketAddr {
    match text.parse() {
        Ok(address) => address,
        Err(err) => panic!("bad test address {text:?}: {err}"),
    }
}

/// A config file in a temporary directory; the directory lives as long as the value.
struct TempConfig {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn file(toml: &str) -> TempConfig {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("tempdir: {err}"),
    };
    let path = dir.path().join("x.toml");
    if let Err(err) = std::fs::write(&path, toml) {
        panic!("write {}: {err}", path.display());
    }
    TempConfig { _dir: dir, path }
}

fn load(toml: Option<&str>, vars: &[(&str, &str)]) -> (Result<Config, Error>, Option<TempConfig>) {
    let temp = toml.map(file);
    let result = Config::load_from(temp.as_ref().map(|t| t.path.as_path()), &env(vars));
    (result, temp)
}

fn ok(toml: Option<&str>, vars: &[(&str, &str)]) -> Config {
    match load(toml, vars).0 {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got: {err}"),
    }
}

/// Loads and expects an error; returns it with the temp file path (for exact messages).
fn fail(toml: Option<&str>, vars: &[(&str, &str)]) -> (Error, PathBuf) {
    let (result, temp) = load(toml, vars);
    let path = temp.map(|t| t.path.clone()).unwrap_or_default();
    match result {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => (err, path),
    }
}

fn file_origin(path: &Path) -> Option<Origin> {
    Some(Origin::File(path.to_path_buf()))
}

fn env_origin(var: &str) -> Option<Origin> {
    Some(Origin::Env(var.to_owned()))
}

const THREE_NODES: &str = r#"
[cluster]
replication_factor = 3
[[cluster.nodes]]
id = 1
address = "127.0.0.1:5122"
[[cluster.nodes]]
id = 2
address = "127.0.0.2:5123"
[[cluster.nodes]]
id = 3
address = "127.0.0.3:5124"
"#;

fn default_config() -> Config {
    Config {
        node: Node {
            id: 1,
            data_dir: PathBuf::from("./holdfast-data"),
            address: None,
            signing_key_file: None,
            partition_threads: 0,
        },
        ingress: Ingress {
            bind_address: addr("127.0.0.1:8080"),
            auth_tokens: Vec::new(),
            auth_token_file: None,
            file_tokens: Vec::new(),
            cors_allowed_origins: Vec::new(),
            tls: None,
        },
        admin: Admin {
            bind_address: addr("127.0.0.1:9070"),
            auth_tokens: Vec::new(),
            auth_token_file: None,
            file_tokens: Vec::new(),
            deployment_allowlist: Vec::new(),
            tls: None,
        },
        sql: Sql {
            bind_address: addr("127.0.0.1:9071"),
            statement_timeout_ms: 30_000,
            max_rows: 100_000,
            memory_limit_bytes: 256 << 20,
            max_result_bytes: 64 << 20,
            max_connections: 64,
            startup_timeout_ms: 10_000,
            idle_timeout_ms: 600_000,
            max_message_bytes: 1 << 20,
            password: None,
            password_file: None,
            tls: None,
        },
        cluster: Cluster {
            name: "holdfast".to_owned(),
            partitions: 8,
            replication_factor: 1,
            nodes: vec![Member {
                id: 1,
                address: addr("127.0.0.1:5122"),
            }],
            tls: None,
        },
        log: Log {
            max_batch_commands: 1024,
            max_batch_bytes: 4_194_304,
            snapshot_interval: 2_000,
            election_timeout_ms: 500,
            heartbeat_interval_ms: 250,
        },
        storage: Storage {
            log_cache_bytes: 8 << 20,
            state_cache_bytes: 2 << 20,
        },
        invocation: Invocation {
            inactivity_timeout_ms: 60_000,
            abort_timeout_ms: 600_000,
            retry_initial_interval_ms: 50,
            retry_factor: 2.0,
            retry_max_interval_ms: 60_000,
            retry_max_attempts: 70,
            max_message_bytes: 16_711_680,
            max_concurrent_attempts: 256,
            endpoint_tls_ca_file: None,
        },
        tracing: Tracing {
            endpoint: None,
            service_name: "holdfast".to_owned(),
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval_ms: 500,
            export_timeout_ms: 5000,
            trace_url: None,
        },
        limits: Vec::new(),
    }
}

// ---------------------------------------------------------------- defaults & layering

#[test]
fn default_is_the_documented_single_node() {
    let config = ok(None, &[]);
    assert_eq!(config, default_config());
    assert_eq!(
        config.member(),
        Member {
            id: 1,
            address: addr("127.0.0.1:5122")
        }
    );
    assert!(DEFAULT_TOML.contains("[[cluster.nodes]]"));
}

#[test]
fn file_overrides_default_key_by_key() {
    let config = ok(
        Some("[cluster]\npartitions = 16\n[admin]\nbind_address = \"127.0.0.1:19070\"\n"),
        &[],
    );
    assert_eq!(config.cluster.partitions, 16);
    assert_eq!(config.admin.bind_address, addr("127.0.0.1:19070"));
    // Keys the file does not mention keep the default, including siblings in the same table.
    assert_eq!(config.cluster.replication_factor, 1);
    assert_eq!(config.cluster.nodes, default_config().cluster.nodes);
    assert_eq!(config.log, default_config().log);
}

#[test]
fn empty_file_equals_default() {
    assert_eq!(ok(Some(""), &[]), default_config());
}

#[test]
fn environment_overrides_file_and_is_typed() {
    let toml = format!("[log]\nsnapshot_interval = 500\n{THREE_NODES}");
    let config = ok(
        Some(&toml),
        &[
            ("HOLDFAST__NODE__ID", "2"),
            ("HOLDFAST__CLUSTER__PARTITIONS", "4"),
            ("HOLDFAST__ADMIN__BIND_ADDRESS", "127.0.0.1:19070"),
            ("HOLDFAST__LOG__SNAPSHOT_INTERVAL", "1000"),
            ("HOLDFAST__LOG__MAX_BATCH_BYTES", "2048"),
            ("HOLDFAST__LOG__MAX_BATCH_COMMANDS", "7"),
            ("HOLDFAST__LOG__ELECTION_TIMEOUT_MS", "150"),
            ("HOLDFAST__LOG__HEARTBEAT_INTERVAL_MS", "50"),
            ("HOLDFAST__CLUSTER__NAME", " eu-west.prod_1 "),
            ("HOLDFAST__CLUSTER__REPLICATION_FACTOR", "2"),
            ("HOLDFAST__INGRESS__BIND_ADDRESS", "0.0.0.0:18080"),
            ("HOLDFAST__SQL__BIND_ADDRESS", "[::1]:15432"),
        ],
    );
    assert_eq!(config.node.id, 2);
    assert_eq!(config.member().address, addr("127.0.0.2:5123"));
    assert_eq!(config.cluster.partitions, 4);
    assert_eq!(config.cluster.replication_factor, 2);
    assert_eq!(config.admin.bind_address, addr("127.0.0.1:19070"));
    assert_eq!(config.ingress.bind_address, addr("0.0.0.0:18080"));
    assert_eq!(config.sql.bind_address, addr("[::1]:15432"));
    assert_eq!(config.log.snapshot_interval, 1000);
    assert_eq!(config.log.max_batch_bytes, 2048);
    assert_eq!(config.log.max_batch_commands, 7);
    assert_eq!(config.log.election_timeout_ms, 150);
    assert_eq!(config.log.heartbeat_interval_ms, 50);
    assert_eq!(config.cluster.name, "eu-west.prod_1");
}

#[test]
fn environment_alone_overrides_default() {
    let config = ok(None, &[("HOLDFAST__CLUSTER__PARTITIONS", " 32 ")]);
    assert_eq!(config.cluster.partitions, 32);
}

#[test]
fn environment_variable_names_are_case_insensitive_after_the_prefix() {
    let config = ok(None, &[("holdfast__cluster__partitions", "4")]);
    assert_eq!(config.cluster.partitions, 4);
}

#[test]
fn unrelated_environment_variables_are_ignored() {
    let config = ok(
        None,
        &[
            ("PATH", "/bin"),
            ("HOLDFAST", "x"),
            ("HOLDFASTER__NODE__ID", "9"),
        ],
    );
    assert_eq!(config, default_config());
}

#[test]
fn data_dir_alias() {
    let alias = ok(None, &[("HOLDFAST_DATA_DIR", "/var/lib/holdfast")]);
    assert_eq!(alias.node.data_dir, PathBuf::from("/var/lib/holdfast"));

    let both = ok(
        None,
        &[
            ("HOLDFAST_DATA_DIR", "/var/lib/alias"),
            ("HOLDFAST__NODE__DATA_DIR", "/var/lib/structured"),
        ],
    );
    assert_eq!(both.node.data_dir, PathBuf::from("/var/lib/structured"));

    let over_file = ok(
        Some("[node]\ndata_dir = \"/from/file\"\n"),
        &[("HOLDFAST_DATA_DIR", "/from/env")],
    );
    assert_eq!(over_file.node.data_dir, PathBuf::from("/from/env"));
}

#[test]
fn data_dir_alias_errors_name_the_alias() {
    let (err, _) = fail(None, &[("HOLDFAST_DATA_DIR", "")]);
    assert_eq!(err.key(), Some("node.data_dir"));
    assert_eq!(err.origin(), env_origin("HOLDFAST_DATA_DIR").as_ref());
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST_DATA_DIR: key `node.data_dir`: invalid value \"\", expected a non-empty path"
    );
}

// ---------------------------------------------------------------- array replacement

#[test]
fn file_nodes_replace_default_nodes() {
    let config = ok(Some(THREE_NODES), &[]);
    assert_eq!(config.cluster.nodes.len(), 3);
    let ids: Vec<u64> = config.cluster.nodes.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(config.cluster.nodes[0].address, addr("127.0.0.1:5122"));
    assert_eq!(config.cluster.nodes[2].address, addr("127.0.0.3:5124"));
}

#[test]
fn single_file_node_does_not_inherit_default_entry() {
    let toml = "[node]\nid = 7\n[[cluster.nodes]]\nid = 7\naddress = \"10.0.0.7:6000\"\n";
    let config = ok(Some(toml), &[]);
    assert_eq!(
        config.cluster.nodes,
        vec![Member {
            id: 7,
            address: addr("10.0.0.7:6000")
        }]
    );
    assert_eq!(
        config.member(),
        Member {
            id: 7,
            address: addr("10.0.0.7:6000")
        }
    );
}

#[test]
fn file_node_without_address_is_not_completed_from_default() {
    let (err, path) = fail(Some("[node]\nid = 1\n[[cluster.nodes]]\nid = 1\n"), &[]);
    assert!(matches!(err, Error::MissingKey { .. }), "{err}");
    assert_eq!(err.key(), Some("cluster.nodes[0].address"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: missing key `cluster.nodes[0].address`",
            path.display()
        )
    );
}

#[test]
fn file_node_without_id_is_missing_key() {
    let (err, _) = fail(
        Some("[[cluster.nodes]]\naddress = \"127.0.0.1:5122\"\n"),
        &[],
    );
    assert!(matches!(err, Error::MissingKey { .. }), "{err}");
    assert_eq!(err.key(), Some("cluster.nodes[0].id"));
}

#[test]
fn nodes_cannot_come_from_the_environment() {
    let (err, _) = fail(
        None,
        &[("HOLDFAST__CLUSTER__NODES__0__ADDRESS", "127.0.0.1:1")],
    );
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_eq!(err.key(), Some("cluster.nodes"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__CLUSTER__NODES__0__ADDRESS").as_ref()
    );
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_key_in_section() {
    let (err, path) = fail(Some("[admin]\nbnd_address = \"127.0.0.1:1\"\n"), &[]);
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
    assert_eq!(err.key(), Some("admin.bnd_address"));
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: unknown key `admin.bnd_address`",
            path.display()
        )
    );
}

#[test]
fn unknown_section() {
    let (err, _) = fail(Some("[metrics]\nport = 1\n"), &[]);
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
    assert_eq!(err.key(), Some("metrics"));
}

#[test]
fn unknown_key_in_every_section() {
    for section in [
        "node",
        "ingress",
        "admin",
        "sql",
        "cluster",
        "log",
        "invocation",
        "tracing",
    ] {
        let (err, _) = fail(Some(&format!("[{section}]\ntypo = 1\n")), &[]);
        assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
        assert_eq!(err.key(), Some(format!("{section}.typo").as_str()));
    }
}

#[test]
fn keys_are_case_sensitive_in_files() {
    let (err, _) = fail(Some("[cluster]\nPartitions = 4\n"), &[]);
    assert_eq!(err.key(), Some("cluster.Partitions"));
}

#[test]
fn unknown_key_inside_cluster_nodes() {
    let toml = "[[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:5122\"\n\
                [[cluster.nodes]]\nid = 2\nadress = \"127.0.0.2:5122\"\n";
    let (err, path) = fail(Some(toml), &[]);
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
    assert_eq!(err.key(), Some("cluster.nodes[1].adress"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

#[test]
fn unknown_key_from_environment_names_the_variable() {
    let (err, _) = fail(Some(""), &[("HOLDFAST__ADMIN__BND_ADDRESS", "127.0.0.1:1")]);
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST__ADMIN__BND_ADDRESS: unknown key `admin.bnd_address`"
    );
    let (err, _) = fail(None, &[("HOLDFAST__METRICS__PORT", "1")]);
    assert_eq!(err.key(), Some("metrics"));
    assert_eq!(err.origin(), env_origin("HOLDFAST__METRICS__PORT").as_ref());
}

// ---------------------------------------------------------------- wrong types

#[test]
fn string_where_integer_expected_in_file() {
    let (err, path) = fail(Some("[cluster]\npartitions = \"eight\"\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `cluster.partitions`: invalid type: found string \"eight\", expected an integer",
            path.display()
        )
    );
}

#[test]
fn numeric_string_in_file_is_still_a_type_error() {
    let (err, _) = fail(Some("[cluster]\npartitions = \"8\"\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
}

#[test]
fn non_number_from_environment_is_a_type_error_naming_the_variable() {
    let (err, _) = fail(Some(""), &[("HOLDFAST__CLUSTER__PARTITIONS", "eight")]);
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST__CLUSTER__PARTITIONS: key `cluster.partitions`: invalid type: found string \"eight\", expected an integer"
    );
}

#[test]
fn other_wrong_types() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[cluster]\npartitions = true\n",
            "cluster.partitions",
            "boolean true",
        ),
        (
            "[cluster]\npartitions = 8.5\n",
            "cluster.partitions",
            "float 8.5",
        ),
        (
            "[log]\nsnapshot_interval = [1]\n",
            "log.snapshot_interval",
            "an array",
        ),
        ("[node]\ndata_dir = 5\n", "node.data_dir", "integer 5"),
        (
            "[admin]\nbind_address = 9070\n",
            "admin.bind_address",
            "integer 9070",
        ),
        ("admin = 5\n", "admin", "integer 5"),
        ("[cluster]\nnodes = 5\n", "cluster.nodes", "integer 5"),
        ("[cluster]\nnodes = [1]\n", "cluster.nodes[0]", "integer 1"),
        (
            "[[cluster.nodes]]\nid = \"one\"\naddress = \"127.0.0.1:1\"\n",
            "cluster.nodes[0].id",
            "string \"one\"",
        ),
        (
            "[[cluster.nodes]]\nid = 1\naddress = 5\n",
            "cluster.nodes[0].address",
            "integer 5",
        ),
    ];
    for (toml, key, found) in cases {
        let (err, _) = fail(Some(toml), &[]);
        match &err {
            Error::InvalidType {
                key: k, found: f, ..
            } => {
                assert_eq!((k.as_str(), f.as_str()), (*key, *found), "{toml}");
            }
            other => panic!("{toml}: expected a type error, got {other}"),
        }
    }
}

#[test]
fn section_set_from_environment_must_be_a_table() {
    let (err, _) = fail(None, &[("HOLDFAST__ADMIN", "127.0.0.1:1")]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("admin"));
    assert_eq!(err.origin(), env_origin("HOLDFAST__ADMIN").as_ref());
}

// ---------------------------------------------------------------- invalid values (ranges)

fn assert_out_of_range(toml: &str, key: &str, value: &str, expected: &str) {
    let (err, path) = fail(Some(toml), &[]);
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `{key}`: invalid value {value}, expected {expected}",
            path.display()
        ),
        "{toml}"
    );
    assert!(matches!(err, Error::InvalidValue { .. }));
    assert_eq!(err.key(), Some(key));
}

#[test]
fn ranges_are_enforced() {
    assert_out_of_range("[node]\nid = 0\n", "node.id", "0", ">= 1");
    assert_out_of_range("[node]\nid = -3\n", "node.id", "-3", ">= 1");
    assert_out_of_range(
        "[cluster]\npartitions = 0\n",
        "cluster.partitions",
        "0",
        "1..=4096",
    );
    assert_out_of_range(
        "[cluster]\npartitions = 4097\n",
        "cluster.partitions",
        "4097",
        "1..=4096",
    );
    assert_out_of_range(
        "[cluster]\nreplication_factor = 0\n",
        "cluster.replication_factor",
        "0",
        ">= 1",
    );
    assert_out_of_range(
        "[log]\nmax_batch_commands = 0\n",
        "log.max_batch_commands",
        "0",
        "1..=65536",
    );
    assert_out_of_range(
        "[log]\nmax_batch_commands = 65537\n",
        "log.max_batch_commands",
        "65537",
        "1..=65536",
    );
    assert_out_of_range(
        "[log]\nmax_batch_bytes = 1023\n",
        "log.max_batch_bytes",
        "1023",
        ">= 1024",
    );
    assert_out_of_range(
        "[log]\nsnapshot_interval = 99\n",
        "log.snapshot_interval",
        "99",
        ">= 100",
    );
    assert_out_of_range(
        "[log]\nelection_timeout_ms = 49\n",
        "log.election_timeout_ms",
        "49",
        "50..=60000",
    );
    assert_out_of_range(
        "[log]\nelection_timeout_ms = 60001\n",
        "log.election_timeout_ms",
        "60001",
        "50..=60000",
    );
    assert_out_of_range(
        "[log]\nheartbeat_interval_ms = 9\n",
        "log.heartbeat_interval_ms",
        "9",
        "10..=60000",
    );
    assert_out_of_range(
        "[log]\nheartbeat_interval_ms = 60001\n",
        "log.heartbeat_interval_ms",
        "60001",
        "10..=60000",
    );
    assert_out_of_range(
        "[[cluster.nodes]]\nid = 0\naddress = \"127.0.0.1:5122\"\n",
        "cluster.nodes[0].id",
        "0",
        ">= 1",
    );
    assert_out_of_range(
        "[node]\ndata_dir = \"\"\n",
        "node.data_dir",
        "\"\"",
        "a non-empty path",
    );
}

#[test]
fn range_boundaries_are_accepted() {
    let toml = "[cluster]\npartitions = 4096\n[log]\nmax_batch_commands = 65536\n\
                max_batch_bytes = 1024\nsnapshot_interval = 100\nelection_timeout_ms = 60000\n\
                heartbeat_interval_ms = 59999\n";
    let config = ok(Some(toml), &[]);
    assert_eq!(config.cluster.partitions, 4096);
    assert_eq!(config.log.max_batch_commands, 65536);
    assert_eq!(config.log.max_batch_bytes, 1024);
    assert_eq!(config.log.snapshot_interval, 100);
    assert_eq!(config.log.election_timeout_ms, 60000);
    assert_eq!(config.log.heartbeat_interval_ms, 59999);
    let low = ok(
        Some(
            "[cluster]\npartitions = 1\n[log]\nmax_batch_commands = 1\nelection_timeout_ms = 50\n\
             heartbeat_interval_ms = 10\n",
        ),
        &[],
    );
    assert_eq!(low.log.election_timeout_ms, 50);
    assert_eq!(low.log.heartbeat_interval_ms, 10);
}

#[test]
fn invalid_value_from_environment_names_the_variable_not_the_file() {
    let (err, _) = fail(
        Some("[cluster]\npartitions = 16\n"),
        &[("HOLDFAST__CLUSTER__PARTITIONS", "0")],
    );
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST__CLUSTER__PARTITIONS: key `cluster.partitions`: invalid value 0, expected 1..=4096"
    );
    let (err, _) = fail(None, &[("HOLDFAST__NODE__ID", "99999999999999999999999")]);
    assert_eq!(err.key(), Some("node.id"));
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
}

#[test]
fn invalid_file_is_rejected_even_if_environment_overrides_the_key() {
    // Each layer is validated on its own, so a broken file never hides behind an override.
    let (err, path) = fail(
        Some("[cluster]\npartitions = 0\n"),
        &[("HOLDFAST__CLUSTER__PARTITIONS", "4")],
    );
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

// ---------------------------------------------------------------- socket addresses

#[test]
fn invalid_socket_address_from_environment() {
    let (err, _) = fail(Some(""), &[("HOLDFAST__ADMIN__BIND_ADDRESS", "nope")]);
    assert!(matches!(err, Error::InvalidAddress { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST__ADMIN__BIND_ADDRESS: key `admin.bind_address`: invalid socket address \"nope\""
    );
}

#[test]
fn invalid_socket_address_in_file() {
    for (toml, key) in [
        (
            "[ingress]\nbind_address = \"localhost:8080\"\n",
            "ingress.bind_address",
        ),
        ("[sql]\nbind_address = \"127.0.0.1\"\n", "sql.bind_address"),
        (
            "[[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:99999\"\n",
            "cluster.nodes[0].address",
        ),
    ] {
        let (err, path) = fail(Some(toml), &[]);
        assert!(matches!(err, Error::InvalidAddress { .. }), "{err}");
        assert_eq!(err.key(), Some(key));
        assert_eq!(err.origin(), file_origin(&path).as_ref());
    }
}

#[test]
fn member_address_must_be_dialable() {
    for address in ["0.0.0.0:5122", "[::]:5122", "127.0.0.1:0"] {
        let toml = format!("[[cluster.nodes]]\nid = 1\naddress = \"{address}\"\n");
        let (err, _) = fail(Some(&toml), &[]);
        assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
        assert_eq!(err.key(), Some("cluster.nodes[0].address"));
    }
}

// ---------------------------------------------------------------- cross-key rules

#[test]
fn nodes_must_not_be_empty() {
    let (err, _) = fail(Some("[cluster]\nnodes = []\n"), &[]);
    assert_eq!(err.key(), Some("cluster.nodes"));
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
}

#[test]
fn node_ids_must_be_unique() {
    let toml = "[[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:5122\"\n\
                [[cluster.nodes]]\nid = 1\naddress = \"127.0.0.2:5122\"\n";
    let (err, path) = fail(Some(toml), &[]);
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `cluster.nodes[1].id`: invalid value 1, expected an id not already used by cluster.nodes[0]",
            path.display()
        )
    );
}

#[test]
fn node_addresses_must_be_unique() {
    let toml = "[[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:5122\"\n\
                [[cluster.nodes]]\nid = 2\naddress = \"127.0.0.1:5122\"\n";
    let (err, _) = fail(Some(toml), &[]);
    assert_eq!(err.key(), Some("cluster.nodes[1].address"));
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
}

#[test]
fn node_id_must_be_a_member_blames_the_environment() {
    let (err, _) = fail(Some(THREE_NODES), &[("HOLDFAST__NODE__ID", "5")]);
    assert_eq!(
        err.to_string(),
        "environment variable HOLDFAST__NODE__ID: key `node.id`: invalid value 5, expected one of the ids in cluster.nodes [1, 2, 3], or set `node.address` to join a running cluster under a new id"
    );
}

#[test]
fn node_id_must_be_a_member_blames_the_file_nodes_over_the_default_id() {
    // The file replaced the members but kept the default node.id: the file is what to fix.
    let (err, path) = fail(
        Some("[[cluster.nodes]]\nid = 7\naddress = \"10.0.0.7:6000\"\n"),
        &[],
    );
    assert_eq!(err.key(), Some("cluster.nodes"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(err.to_string().contains("node.id"), "{err}");
}

#[test]
fn node_id_must_be_a_member_same_layer_blames_node_id() {
    let toml = format!("[node]\nid = 4\n{THREE_NODES}");
    let (err, _) = fail(Some(&toml), &[]);
    assert_eq!(err.key(), Some("node.id"));
}

#[test]
fn replication_factor_cannot_exceed_members() {
    let (err, path) = fail(Some("[cluster]\nreplication_factor = 2\n"), &[]);
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `cluster.replication_factor`: invalid value 2, expected 1..=1 (at most the number of cluster.nodes)",
            path.display()
        )
    );
    let (err, _) = fail(
        Some(THREE_NODES),
        &[("HOLDFAST__CLUSTER__REPLICATION_FACTOR", "4")],
    );
    assert_eq!(err.key(), Some("cluster.replication_factor"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__CLUSTER__REPLICATION_FACTOR").as_ref()
    );
}

#[test]
fn listener_ports_must_differ_on_the_same_ip() {
    let (err, path) = fail(Some("[sql]\nbind_address = \"127.0.0.1:9070\"\n"), &[]);
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `sql.bind_address`: invalid value 127.0.0.1:9070, expected a port not already taken by `admin.bind_address` (127.0.0.1:9070)",
            path.display()
        )
    );
}

#[test]
fn unspecified_ip_collides_with_any_ip_on_the_same_port() {
    let (err, _) = fail(Some("[admin]\nbind_address = \"0.0.0.0:8080\"\n"), &[]);
    assert_eq!(err.key(), Some("admin.bind_address"));
    let (err, _) = fail(Some("[ingress]\nbind_address = \"[::]:9071\"\n"), &[]);
    // Both sql (default) and ingress (file) are involved; the file's key is blamed.
    assert_eq!(err.key(), Some("ingress.bind_address"));
}

#[test]
fn same_port_on_different_ips_is_fine() {
    let config = ok(Some("[admin]\nbind_address = \"127.0.0.2:8080\"\n"), &[]);
    assert_eq!(
        config.admin.bind_address.port(),
        config.ingress.bind_address.port()
    );
}

#[test]
fn ephemeral_ports_never_collide() {
    let config = ok(
        None,
        &[
            ("HOLDFAST__INGRESS__BIND_ADDRESS", "127.0.0.1:0"),
            ("HOLDFAST__ADMIN__BIND_ADDRESS", "127.0.0.1:0"),
            ("HOLDFAST__SQL__BIND_ADDRESS", "127.0.0.1:0"),
        ],
    );
    assert_eq!(config.sql.bind_address.port(), 0);
}

#[test]
fn listener_must_not_take_this_nodes_raft_port() {
    let (err, _) = fail(Some("[ingress]\nbind_address = \"127.0.0.1:5122\"\n"), &[]);
    assert_eq!(err.key(), Some("ingress.bind_address"));
    // Another member's address on another IP is not this process's concern.
    let config = ok(
        Some(THREE_NODES),
        &[("HOLDFAST__ADMIN__BIND_ADDRESS", "127.0.0.1:5123")],
    );
    assert_eq!(config.admin.bind_address, addr("127.0.0.1:5123"));
}

#[test]
fn port_conflict_blames_the_environment_even_for_the_earlier_key() {
    // ingress is checked before admin, but only the environment changed it.
    let (err, _) = fail(
        None,
        &[("HOLDFAST__INGRESS__BIND_ADDRESS", "127.0.0.1:9070")],
    );
    assert_eq!(err.key(), Some("ingress.bind_address"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__INGRESS__BIND_ADDRESS").as_ref()
    );
}

#[test]
fn own_member_address_conflict_from_file_nodes() {
    let toml = "[[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:9071\"\n";
    let (err, path) = fail(Some(toml), &[]);
    assert_eq!(err.key(), Some("cluster.nodes[0].address"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

// ---------------------------------------------------------------- file & environment errors

#[test]
fn missing_file_names_the_file() {
    let path = Path::new("deploy/does-not-exist.toml");
    let err = match Config::load_from(Some(path), &HashMap::new()) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::Read { .. }), "{err}");
    assert_eq!(err.key(), None);
    assert!(
        err.to_string()
            .starts_with("config file deploy/does-not-exist.toml: cannot read: "),
        "{err}"
    );
}

#[test]
fn load_reads_the_file_before_anything_else() {
    let err = match Config::load(Some(Path::new("/nonexistent/holdfast.toml"))) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(err, Error::Read { .. } | Error::NotUnicode { .. }),
        "{err}"
    );
}

#[test]
fn toml_syntax_error_names_the_file() {
    let (err, path) = fail(Some("[cluster\npartitions = 8\n"), &[]);
    assert!(matches!(err, Error::Parse { .. }), "{err}");
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(
        err.to_string()
            .starts_with(&format!("config file {}: ", path.display())),
        "{err}"
    );
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn conflicting_environment_variables_are_ambiguous() {
    let (err, _) = fail(
        None,
        &[("HOLDFAST__NODE__ID", "1"), ("holdfast__node__id", "2")],
    );
    assert!(matches!(err, Error::Ambiguous { .. }), "{err}");
    assert_eq!(err.key(), Some("node.id"));
    let (err, _) = fail(
        None,
        &[
            ("HOLDFAST__ADMIN", "x"),
            ("HOLDFAST__ADMIN__BIND_ADDRESS", "127.0.0.1:1"),
        ],
    );
    assert_eq!(
        err.to_string(),
        "environment variables HOLDFAST__ADMIN and HOLDFAST__ADMIN__BIND_ADDRESS: both set key `admin`"
    );
}

// ---------------------------------------------------------------- API details

#[test]
fn member_of_a_hand_built_config_without_its_entry_is_a_placeholder() {
    let mut config = default_config();
    config.node.id = 42;
    assert_eq!(config.member().id, 0);
}

#[test]
fn serde_round_trip_and_unknown_fields() -> TestResult {
    let config = default_config();
    let json = serde_json::to_string(&config)?;
    let back: Config = serde_json::from_str(&json)?;
    assert_eq!(back, config);
    let typo = json.replace("\"bind_address\"", "\"bnd_address\"");
    assert!(serde_json::from_str::<Config>(&typo).is_err());
    Ok(())
}

#[test]
fn error_messages_examples() {
    // Prints real messages; run with --nocapture to see them.
    let examples = [
        fail(Some(""), &[("HOLDFAST__ADMIN__BIND_ADDRESS", "nope")]).0,
        fail(Some("[cluster]\npartitions = \"eight\"\n"), &[]).0,
        fail(Some(THREE_NODES), &[("HOLDFAST__NODE__ID", "5")]).0,
        fail(
            Some("[[cluster.nodes]]\nid = 7\naddress = \"10.0.0.7:6000\"\n"),
            &[],
        )
        .0,
        fail(Some("[cluster\npartitions = 8\n"), &[]).0,
    ];
    for err in examples {
        println!("{err}");
    }
    let deploy = deploy_dir().join("single-node.toml");
    let with_bad_env = Config::load_from(
        Some(&deploy),
        &env(&[("HOLDFAST__CLUSTER__PARTITIONS", "0")]),
    );
    if let Err(err) = with_bad_env {
        println!("{err}");
    }
}

// ---------------------------------------------------------------- deploy files

fn deploy_dir() -> PathBuf {
    manifest_dir().join("../../deploy")
}

#[test]
fn every_deploy_file_validates() -> TestResult {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(deploy_dir())? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let config = Config::load_from(Some(&path), &HashMap::new())
            .map_err(|err| format!("{}: {err}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(config.log.election_timeout_ms, 500, "{name}");
        assert_eq!(config.log.heartbeat_interval_ms, 250, "{name}");
        assert_eq!(config.cluster.name, "holdfast", "{name}");
        if name == "cluster.toml" {
            assert_eq!(config.cluster.nodes.len(), 3);
            assert_eq!(config.cluster.replication_factor, 3);
            assert_eq!(config.cluster.partitions, 16);
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["cluster.toml".to_owned(), "single-node.toml".to_owned()]
    );
    Ok(())
}

#[test]
fn single_node_deploy_file_equals_default() -> TestResult {
    let config = Config::load_from(
        Some(&deploy_dir().join("single-node.toml")),
        &HashMap::new(),
    )?;
    assert_eq!(config, ok(None, &[]));
    Ok(())
}

#[test]
fn cluster_deploy_file_with_documented_overrides() -> TestResult {
    let path = deploy_dir().join("cluster.toml");
    let mut binds = Vec::new();
    for id in 1..=3u64 {
        let ip = format!("127.0.0.{id}");
        let mut vars = vec![
            ("HOLDFAST__NODE__ID".to_owned(), id.to_string()),
            (
                "HOLDFAST_DATA_DIR".to_owned(),
                format!("./holdfast-data/node-{id}"),
            ),
        ];
        if id > 1 {
            vars.push((
                "HOLDFAST__INGRESS__BIND_ADDRESS".to_owned(),
                format!("{ip}:8080"),
            ));
            vars.push((
                "HOLDFAST__ADMIN__BIND_ADDRESS".to_owned(),
                format!("{ip}:9070"),
            ));
            vars.push((
                "HOLDFAST__SQL__BIND_ADDRESS".to_owned(),
                format!("{ip}:9071"),
            ));
        }
        let config = Config::load_from(Some(&path), &vars.into_iter().collect())?;
        assert_eq!(config.node.id, id);
        assert_eq!(
            config.node.data_dir,
            PathBuf::from(format!("./holdfast-data/node-{id}"))
        );
        assert_eq!(config.member().address.ip().to_string(), ip);
        for address in [
            config.ingress.bind_address,
            config.admin.bind_address,
            config.sql.bind_address,
        ] {
            binds.push(address);
        }
        binds.push(config.member().address);
    }
    // Co-located on one host, the three nodes bind twelve distinct endpoints.
    let count = binds.len();
    binds.sort();
    binds.dedup();
    assert_eq!(binds.len(), count);
    Ok(())
}

/// This crate's directory, read when the test runs (cargo sets it) so that a test binary reused
/// from a build in another checkout still finds the files of the checkout it runs in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

// ---------------------------------------------------------------- [invocation]

#[test]
fn invocation_keys_layer_like_the_others() {
    let config = ok(
        Some(
            "[invocation]
retry_max_attempts = 3
retry_factor = 1.5
inactivity_timeout_ms = 200
",
        ),
        &[
            ("HOLDFAST__INVOCATION__ABORT_TIMEOUT_MS", "900"),
            ("HOLDFAST__INVOCATION__RETRY_FACTOR", "3"),
        ],
    );
    assert_eq!(
        config.invocation,
        Invocation {
            inactivity_timeout_ms: 200,
            abort_timeout_ms: 900,
            retry_initial_interval_ms: 50,
            retry_factor: 3.0,
            retry_max_interval_ms: 60_000,
            retry_max_attempts: 3,
            max_message_bytes: 16_711_680,
            max_concurrent_attempts: 256,
            endpoint_tls_ca_file: None,
        }
    );
    // An integer factor is a number too.
    let config = ok(
        Some(
            "[invocation]
retry_factor = 2
",
        ),
        &[],
    );
    assert_eq!(config.invocation.retry_factor, 2.0);
}

#[test]
fn invocation_ranges_are_enforced() {
    for key in [
        "inactivity_timeout_ms",
        "abort_timeout_ms",
        "retry_initial_interval_ms",
        "retry_max_interval_ms",
        "retry_max_attempts",
    ] {
        assert_out_of_range(
            &format!("[invocation]\n{key} = 0\n"),
            &format!("invocation.{key}"),
            "0",
            if key == "retry_max_attempts" {
                "1..=4294967295"
            } else {
                "1..=9007199254740992"
            },
        );
    }
    assert_out_of_range(
        "[invocation]\nmax_message_bytes = 1023\n",
        "invocation.max_message_bytes",
        "1023",
        "1024..=16711680",
    );
    assert_out_of_range(
        "[invocation]\nmax_concurrent_attempts = 0\n",
        "invocation.max_concurrent_attempts",
        "0",
        "1..=65536",
    );
    assert_out_of_range(
        "[invocation]\nretry_factor = 0.5\n",
        "invocation.retry_factor",
        "0.5",
        "a finite number >= 1.0",
    );
    assert_out_of_range(
        "[invocation]\nretry_factor = nan\n",
        "invocation.retry_factor",
        "NaN",
        "a finite number >= 1.0",
    );
}

#[test]
fn invocation_wrong_types_name_key_and_origin() {
    let (err, path) = fail(Some("[invocation]\nretry_factor = \"fast\"\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("invocation.retry_factor"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    let (err, _) = fail(
        None,
        &[("HOLDFAST__INVOCATION__RETRY_MAX_ATTEMPTS", "many")],
    );
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__INVOCATION__RETRY_MAX_ATTEMPTS").as_ref()
    );
}

#[test]
fn initial_retry_interval_may_not_exceed_the_maximum() {
    let (err, path) = fail(
        Some("[invocation]\nretry_initial_interval_ms = 70000\n"),
        &[],
    );
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert_eq!(err.key(), Some("invocation.retry_initial_interval_ms"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    // The environment lowered the maximum below the file's initial interval: it takes the blame.
    let (err, _) = fail(
        Some("[invocation]\nretry_initial_interval_ms = 500\n"),
        &[("HOLDFAST__INVOCATION__RETRY_MAX_INTERVAL_MS", "100")],
    );
    assert_eq!(err.key(), Some("invocation.retry_max_interval_ms"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__INVOCATION__RETRY_MAX_INTERVAL_MS").as_ref()
    );
}

#[test]
fn sql_limits_are_read_and_checked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[sql]\nstatement_timeout_ms = 500\nmax_rows = 10\n")?;
    let config = Config::load_from(Some(&path), &HashMap::new())?;
    assert_eq!(config.sql.statement_timeout_ms, 500);
    assert_eq!(config.sql.max_rows, 10);
    std::fs::write(&path, "[sql]\nmax_rows = 0\n")?;
    let err = Config::load_from(Some(&path), &HashMap::new())
        .err()
        .ok_or("accepted 0")?;
    assert!(err.to_string().contains("sql.max_rows"), "{err}");
    std::fs::write(&path, "[sql]\nrows = 5\n")?;
    let err = Config::load_from(Some(&path), &HashMap::new())
        .err()
        .ok_or("accepted rows")?;
    assert!(err.to_string().contains("sql.rows"), "{err}");
    Ok(())
}

#[test]
fn sql_resource_limits_are_read_and_checked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[sql]\nmemory_limit_bytes = 0\nmax_result_bytes = 4096\nmax_connections = 3\n\
         startup_timeout_ms = 250\nidle_timeout_ms = 0\nmax_message_bytes = 2048\n",
    )?;
    let config = Config::load_from(Some(&path), &HashMap::new())?;
    assert_eq!(config.sql.memory_limit_bytes, 0);
    assert_eq!(config.sql.max_result_bytes, 4096);
    assert_eq!(config.sql.max_connections, 3);
    assert_eq!(config.sql.startup_timeout_ms, 250);
    assert_eq!(config.sql.idle_timeout_ms, 0);
    assert_eq!(config.sql.max_message_bytes, 2048);
    // The environment overrides the file, key by key.
    let env = HashMap::from([(
        "HOLDFAST__SQL__MEMORY_LIMIT_BYTES".to_owned(),
        "1048576".to_owned(),
    )]);
    let config = Config::load_from(Some(&path), &env)?;
    assert_eq!(config.sql.memory_limit_bytes, 1 << 20);
    assert_eq!(config.sql.max_connections, 3);
    for (bad, key) in [
        ("max_connections = 0", "sql.max_connections"),
        ("max_connections = 70000", "sql.max_connections"),
        ("startup_timeout_ms = 0", "sql.startup_timeout_ms"),
        ("max_message_bytes = 100", "sql.max_message_bytes"),
        ("memory_limit_bytes = -1", "sql.memory_limit_bytes"),
        ("idle_timeout_ms = \"soon\"", "sql.idle_timeout_ms"),
    ] {
        std::fs::write(&path, format!("[sql]\n{bad}\n"))?;
        let err = Config::load_from(Some(&path), &HashMap::new())
            .err()
            .ok_or(format!("accepted {bad}"))?;
        assert!(err.to_string().contains(key), "{bad}: {err}");
    }
    Ok(())
}

// ---------------------------------------------------------------- [storage]

#[test]
fn storage_cache_sizes_are_read_and_checked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[storage]\nlog_cache_bytes = 1048576\n")?;
    let config = Config::load_from(Some(&path), &HashMap::new())?;
    assert_eq!(config.storage.log_cache_bytes, 1 << 20);
    assert_eq!(
        config.storage.state_cache_bytes,
        2 << 20,
        "the default stays"
    );
    let env = HashMap::from([(
        "HOLDFAST__STORAGE__STATE_CACHE_BYTES".to_owned(),
        "524288".to_owned(),
    )]);
    let config = Config::load_from(Some(&path), &env)?;
    assert_eq!(config.storage.state_cache_bytes, 512 << 10);
    assert_eq!(config.storage.log_cache_bytes, 1 << 20);
    for (bad, key) in [
        ("log_cache_bytes = 4096", "storage.log_cache_bytes"),
        ("state_cache_bytes = -1", "storage.state_cache_bytes"),
        ("state_cache_bytes = \"6 MiB\"", "storage.state_cache_bytes"),
        ("cache_bytes = 1048576", "storage.cache_bytes"),
    ] {
        std::fs::write(&path, format!("[storage]\n{bad}\n"))?;
        let err = Config::load_from(Some(&path), &HashMap::new())
            .err()
            .ok_or(format!("accepted {bad}"))?;
        assert!(err.to_string().contains(key), "{bad}: {err}");
        assert!(err.to_string().contains("node.toml"), "{bad}: {err}");
    }
    Ok(())
}

// ---------------------------------------------------------------- [tracing]

#[test]
fn tracing_is_off_by_default() {
    let config = ok(None, &[]);
    assert_eq!(config.tracing, default_config().tracing);
    assert!(!config.tracing.enabled());
    // A file may declare the section without an endpoint, or with an empty one.
    for toml in [
        "[tracing]\nbatch_size = 8\n",
        "[tracing]\nendpoint = \"\"\n",
    ] {
        let config = ok(Some(toml), &[]);
        assert!(!config.tracing.enabled(), "{toml}");
    }
}

#[test]
fn tracing_keys_layer_like_the_others() {
    let config = ok(
        Some(
            "[tracing]
endpoint = \"http://jaeger:4318\"
service_name = \"holdfast-eu\"
queue_capacity = 1000
flush_interval_ms = 50
trace_url = \"http://jaeger:16686/trace/{trace_id}\"
",
        ),
        &[
            ("HOLDFAST__TRACING__BATCH_SIZE", "100"),
            ("HOLDFAST__TRACING__EXPORT_TIMEOUT_MS", "250"),
        ],
    );
    assert_eq!(
        config.tracing,
        Tracing {
            endpoint: Some("http://jaeger:4318".to_owned()),
            service_name: "holdfast-eu".to_owned(),
            queue_capacity: 1000,
            batch_size: 100,
            flush_interval_ms: 50,
            export_timeout_ms: 250,
            trace_url: Some("http://jaeger:16686/trace/{trace_id}".to_owned()),
        }
    );
    assert!(config.tracing.enabled());
}

#[test]
fn tracing_endpoint_from_the_environment_turns_tracing_on_and_off() {
    let on = ok(
        None,
        &[(
            "HOLDFAST__TRACING__ENDPOINT",
            " http://127.0.0.1:4318/v1/traces ",
        )],
    );
    assert_eq!(
        on.tracing.endpoint.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    // An empty variable overrides a file's endpoint: tracing off without editing the file.
    let off = ok(
        Some("[tracing]\nendpoint = \"https://otel.example:4318\"\n"),
        &[("HOLDFAST__TRACING__ENDPOINT", "")],
    );
    assert_eq!(off.tracing.endpoint, None);
}

#[test]
fn tracing_endpoint_accepts_http_and_https_urls() {
    for endpoint in [
        "http://127.0.0.1:4318",
        "http://jaeger:4318/",
        "HTTPS://otel.example",
        "http://[::1]:4318/v1/traces",
        "http://[::1]",
        "https://collector.example/prefix/v1/traces",
    ] {
        let config = ok(
            Some(&format!("[tracing]\nendpoint = \"{endpoint}\"\n")),
            &[],
        );
        assert_eq!(config.tracing.endpoint.as_deref(), Some(endpoint));
    }
}

#[test]
fn bad_tracing_endpoint_names_key_and_file() {
    let (err, path) = fail(Some("[tracing]\nendpoint = \"jaeger:4318\"\n"), &[]);
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert_eq!(err.key(), Some("tracing.endpoint"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `tracing.endpoint`: invalid value \"jaeger:4318\", expected an \
             http:// or https:// URL with a host, like \"http://127.0.0.1:4318\", or \"\" for none",
            path.display()
        )
    );
    for endpoint in [
        "grpc://jaeger:4317",
        "http://",
        "http:///v1/traces",
        "http://jaeger:port",
        "http://jaeger:0",
        "http://jaeger:99999",
        "http://user@jaeger:4318",
        "http://jae ger:4318",
        "http://[::1:4318",
        "http://[::1]x",
    ] {
        let (err, _) = fail(
            Some(&format!("[tracing]\nendpoint = \"{endpoint}\"\n")),
            &[],
        );
        assert_eq!(err.key(), Some("tracing.endpoint"), "{endpoint}");
        assert!(
            matches!(err, Error::InvalidValue { .. }),
            "{endpoint}: {err}"
        );
    }
    let (err, path) = fail(Some("[tracing]\nendpoint = 4318\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("tracing.endpoint"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

#[test]
fn bad_tracing_endpoint_from_the_environment_names_the_variable() {
    let (err, _) = fail(None, &[("HOLDFAST__TRACING__ENDPOINT", "localhost:4318")]);
    assert_eq!(err.key(), Some("tracing.endpoint"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__TRACING__ENDPOINT").as_ref()
    );
    assert!(
        err.to_string().starts_with(
            "environment variable HOLDFAST__TRACING__ENDPOINT: key `tracing.endpoint`"
        ),
        "{err}"
    );
}

#[test]
fn tracing_ranges_are_enforced() {
    for (toml, key, value, expected) in [
        (
            "queue_capacity = 0",
            "tracing.queue_capacity",
            "0",
            "1..=16777216",
        ),
        (
            "queue_capacity = 16777217",
            "tracing.queue_capacity",
            "16777217",
            "1..=16777216",
        ),
        ("batch_size = 0", "tracing.batch_size", "0", "1..=16777216"),
        (
            "flush_interval_ms = 0",
            "tracing.flush_interval_ms",
            "0",
            "1..=9007199254740992",
        ),
        (
            "export_timeout_ms = 0",
            "tracing.export_timeout_ms",
            "0",
            "1..=9007199254740992",
        ),
        (
            "service_name = \"\"",
            "tracing.service_name",
            "\"\"",
            "a non-empty string",
        ),
    ] {
        assert_out_of_range(&format!("[tracing]\n{toml}\n"), key, value, expected);
    }
    let config = ok(
        Some("[tracing]\nqueue_capacity = 16777216\nbatch_size = 16777216\n"),
        &[],
    );
    assert_eq!(config.tracing.batch_size, 16_777_216);
}

#[test]
fn a_trace_url_must_say_where_the_trace_id_goes() {
    assert_out_of_range(
        "[tracing]\ntrace_url = \"http://jaeger:16686/search\"\n",
        "tracing.trace_url",
        "\"http://jaeger:16686/search\"",
        "a URL holding {trace_id}, like \"http://127.0.0.1:16686/trace/{trace_id}\", or \"\" \
         for none",
    );
    assert_out_of_range(
        "[tracing]\ntrace_url = \"jaeger/{trace_id}\"\n",
        "tracing.trace_url",
        "\"jaeger/{trace_id}\"",
        "an http:// or https:// URL with a host, like \"http://127.0.0.1:4318\", or \"\" for none",
    );
    let none = ok(Some("[tracing]\ntrace_url = \"\"\n"), &[]);
    assert_eq!(none.tracing.trace_url, None);
}

#[test]
fn tracing_batch_may_not_exceed_the_queue() {
    let (err, path) = fail(Some("[tracing]\nbatch_size = 100000\n"), &[]);
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `tracing.batch_size`: invalid value 100000, expected <= 65536 \
             (`tracing.queue_capacity` from embedded default configuration)",
            path.display()
        )
    );
    // The environment shrank the queue below the file's batch size: it takes the blame.
    let (err, _) = fail(
        Some("[tracing]\nbatch_size = 64\n"),
        &[("HOLDFAST__TRACING__QUEUE_CAPACITY", "10")],
    );
    assert_eq!(err.key(), Some("tracing.queue_capacity"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__TRACING__QUEUE_CAPACITY").as_ref()
    );
}

#[test]
fn tracing_wrong_types_name_key_and_origin() {
    let (err, path) = fail(Some("[tracing]\nbatch_size = \"many\"\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("tracing.batch_size"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    let (err, _) = fail(None, &[("HOLDFAST__TRACING__FLUSH_INTERVAL_MS", "soon")]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__TRACING__FLUSH_INTERVAL_MS").as_ref()
    );
}

// ---------------------------------------------------------------- cluster.name

#[test]
fn cluster_name_layers_like_the_others() {
    assert_eq!(ok(None, &[]).cluster.name, "holdfast");
    let config = ok(Some("[cluster]\nname = \"Prod.EU-1_a\"\n"), &[]);
    assert_eq!(config.cluster.name, "Prod.EU-1_a");
    // Siblings keep their defaults.
    assert_eq!(config.cluster.partitions, 8);
    let config = ok(
        Some("[cluster]\nname = \"from-file\"\n"),
        &[("HOLDFAST__CLUSTER__NAME", "from-env")],
    );
    assert_eq!(config.cluster.name, "from-env");
    let longest = "x".repeat(64);
    let config = ok(Some(&format!("[cluster]\nname = \"{longest}\"\n")), &[]);
    assert_eq!(config.cluster.name, longest);
}

#[test]
fn bad_cluster_names_name_key_and_file() {
    let expected = "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'";
    let too_long = "x".repeat(65);
    for name in [
        "",
        "prod eu",
        "prod/eu",
        "prød",
        "a:b",
        " lead",
        too_long.as_str(),
    ] {
        assert_out_of_range(
            &format!("[cluster]\nname = {name:?}\n"),
            "cluster.name",
            &format!("{name:?}"),
            expected,
        );
    }
    let (err, path) = fail(Some("[cluster]\nname = 7\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("cluster.name"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

#[test]
fn bad_cluster_name_from_the_environment_names_the_variable() {
    for value in ["", "  ", "a b"] {
        let (err, _) = fail(None, &[("HOLDFAST__CLUSTER__NAME", value)]);
        assert!(
            matches!(err, Error::InvalidValue { .. }),
            "{value:?}: {err}"
        );
        assert_eq!(err.key(), Some("cluster.name"));
        assert_eq!(err.origin(), env_origin("HOLDFAST__CLUSTER__NAME").as_ref());
    }
}

// ---------------------------------------------------------------- log.heartbeat_interval_ms

#[test]
fn heartbeat_layers_like_the_others() {
    let config = ok(Some("[log]\nheartbeat_interval_ms = 100\n"), &[]);
    assert_eq!(config.log.heartbeat_interval_ms, 100);
    assert_eq!(config.log.election_timeout_ms, 500);
    let config = ok(None, &[("HOLDFAST__LOG__HEARTBEAT_INTERVAL_MS", "400")]);
    assert_eq!(config.log.heartbeat_interval_ms, 400);
    // An election timeout of 300 still leaves room for the default heartbeat of 250.
    let config = ok(Some("[log]\nelection_timeout_ms = 300\n"), &[]);
    assert_eq!(
        (
            config.log.election_timeout_ms,
            config.log.heartbeat_interval_ms
        ),
        (300, 250)
    );
}

#[test]
fn heartbeat_must_be_below_the_election_timeout() {
    let (err, path) = fail(Some("[log]\nheartbeat_interval_ms = 1000\n"), &[]);
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert_eq!(err.key(), Some("log.heartbeat_interval_ms"));
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `log.heartbeat_interval_ms`: invalid value 1000, expected < 500 \
             (`log.election_timeout_ms` from embedded default configuration; heartbeats must \
             come more often than elections)",
            path.display()
        )
    );
    // Both in one file: the heartbeat is blamed.
    let (err, path) = fail(
        Some("[log]\nelection_timeout_ms = 200\nheartbeat_interval_ms = 200\n"),
        &[],
    );
    assert_eq!(err.key(), Some("log.heartbeat_interval_ms"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
}

#[test]
fn election_timeout_lowered_below_the_heartbeat_is_blamed_and_names_the_heartbeat() {
    // The file lowered the election timeout under the default heartbeat (250).
    let (err, path) = fail(Some("[log]\nelection_timeout_ms = 200\n"), &[]);
    assert_eq!(err.key(), Some("log.election_timeout_ms"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `log.election_timeout_ms`: invalid value 200, expected > 250 \
             (`log.heartbeat_interval_ms` from embedded default configuration; heartbeats must \
             come more often than elections)",
            path.display()
        )
    );
    // The environment did it: the variable is named.
    let (err, _) = fail(
        Some("[log]\nheartbeat_interval_ms = 100\n"),
        &[("HOLDFAST__LOG__ELECTION_TIMEOUT_MS", "100")],
    );
    assert_eq!(err.key(), Some("log.election_timeout_ms"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__LOG__ELECTION_TIMEOUT_MS").as_ref()
    );
    assert!(
        err.to_string().contains("log.heartbeat_interval_ms"),
        "{err}"
    );
}

// ---------------------------------------------------------------- cluster identity

fn three_nodes() -> Config {
    ok(Some(THREE_NODES), &[])
}

#[test]
fn identity_lists_the_cluster_section_with_nodes_sorted_by_id() {
    let identity = three_nodes().cluster.identity();
    assert_eq!(
        identity,
        ClusterIdentity {
            name: "holdfast".to_owned(),
            partitions: 8,
            replication_factor: 3,
            nodes: vec![
                (1, "127.0.0.1:5122".to_owned()),
                (2, "127.0.0.2:5123".to_owned()),
                (3, "127.0.0.3:5124".to_owned()),
            ],
        }
    );
    let mut shuffled = three_nodes();
    shuffled.cluster.nodes.reverse();
    assert_eq!(shuffled.cluster.identity(), identity);
}

#[test]
fn fingerprint_is_stable_hex_and_ignores_node_order_in_the_file() {
    let reversed = r#"
[cluster]
replication_factor = 3
[[cluster.nodes]]
id = 3
address = "127.0.0.3:5124"
[[cluster.nodes]]
id = 1
address = "127.0.0.1:5122"
[[cluster.nodes]]
id = 2
address = "127.0.0.2:5123"
"#;
    let a = three_nodes().cluster.identity();
    let b = ok(Some(reversed), &[]).cluster.identity();
    let fingerprint = a.fingerprint();
    assert_eq!(fingerprint.len(), 64);
    assert!(
        fingerprint
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{fingerprint}"
    );
    assert_eq!(b.fingerprint(), fingerprint);
    assert_eq!(a.clone().fingerprint(), fingerprint);
    assert_eq!(a.difference(&b), None);
    // Every node computes it from its own config; node.id is not part of the identity.
    let node_two = ok(Some(THREE_NODES), &[("HOLDFAST__NODE__ID", "2")]);
    assert_eq!(node_two.cluster.identity().fingerprint(), fingerprint);
    // A hand-built identity in another order is still the same identity.
    let mut unsorted = a.clone();
    unsorted.nodes.swap(0, 2);
    assert_eq!(unsorted.fingerprint(), fingerprint);
    assert_eq!(unsorted.difference(&a), None);
}

#[test]
fn fingerprint_and_difference_see_every_field() {
    let base = three_nodes().cluster.identity();
    let mut changes: Vec<(&str, ClusterIdentity)> = Vec::new();
    let mut changed = base.clone();
    changed.name = "other".to_owned();
    changes.push(("cluster.name", changed));
    let mut changed = base.clone();
    changed.partitions = 16;
    changes.push(("cluster.partitions", changed));
    let mut changed = base.clone();
    changed.replication_factor = 2;
    changes.push(("cluster.replication_factor", changed));
    let mut changed = base.clone();
    changed.nodes[1].1 = "127.0.0.2:6000".to_owned();
    changes.push(("cluster.nodes", changed));
    let mut changed = base.clone();
    changed.nodes[2].0 = 4;
    changes.push(("cluster.nodes", changed));
    let mut changed = base.clone();
    changed.nodes.pop();
    changes.push(("cluster.nodes", changed));
    let mut fingerprints = vec![base.fingerprint()];
    for (key, changed) in &changes {
        assert_eq!(base.difference(changed), Some(*key), "{changed:?}");
        assert_eq!(changed.difference(&base), Some(*key), "{changed:?}");
        fingerprints.push(changed.fingerprint());
    }
    let count = fingerprints.len();
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), count, "fingerprints collide");
    // The first differing key is reported.
    let mut many = base.clone();
    many.replication_factor = 1;
    many.nodes.clear();
    assert_eq!(base.difference(&many), Some("cluster.replication_factor"));
}

#[test]
fn fingerprint_fields_do_not_run_into_each_other() {
    // Moving characters between the name and an address must change the encoding.
    let a = ClusterIdentity {
        name: "ab".to_owned(),
        partitions: 1,
        replication_factor: 1,
        nodes: vec![(1, "c".to_owned())],
    };
    let mut b = a.clone();
    b.name = "a".to_owned();
    b.nodes[0].1 = "bc".to_owned();
    assert_ne!(a.fingerprint(), b.fingerprint());
}

#[test]
fn identity_round_trips_through_json() -> TestResult {
    let identity = three_nodes().cluster.identity();
    let json = serde_json::to_string(&identity)?;
    let back: ClusterIdentity = serde_json::from_str(&json)?;
    assert_eq!(back, identity);
    assert_eq!(back.fingerprint(), identity.fingerprint());
    Ok(())
}

#[test]
fn a_node_outside_the_configured_nodes_joins_with_its_own_address() {
    let config = ok(
        None,
        &[
            ("HOLDFAST__NODE__ID", "4"),
            ("HOLDFAST__NODE__ADDRESS", "127.0.0.4:5125"),
        ],
    );
    assert!(config.joining());
    assert_eq!(
        config.member(),
        Member {
            id: 4,
            address: addr("127.0.0.4:5125")
        }
    );
    // A configured node keeps its entry's address; a joiner may not take a member's address.
    let err = err_of(&[
        ("HOLDFAST__NODE__ID", "1"),
        ("HOLDFAST__NODE__ADDRESS", "127.0.0.4:5125"),
    ]);
    assert!(err.contains("node.address"), "{err}");
    let err = err_of(&[
        ("HOLDFAST__NODE__ID", "4"),
        ("HOLDFAST__NODE__ADDRESS", "127.0.0.1:5122"),
    ]);
    assert!(err.contains("node.address"), "{err}");
    let err = err_of(&[("HOLDFAST__NODE__ID", "4")]);
    assert!(err.contains("node.address"), "{err}");
}

fn err_of(vars: &[(&str, &str)]) -> String {
    fail(None, vars).0.to_string()
}

// ---------------------------------------------------------------------------------------------
// Access: tokens, token files, CORS origins, the deployment allowlist.

#[test]
fn auth_tokens_from_the_file_and_the_environment() {
    let config = ok(
        Some(
            "[admin]\nauth_tokens = [\"old-token\", \"new-token\"]\n[ingress]\nauth_tokens = [\"in\"]\n",
        ),
        &[],
    );
    assert_eq!(
        config.admin.auth_tokens,
        vec![Token::new("old-token"), Token::new("new-token")]
    );
    assert_eq!(config.ingress.auth_tokens, vec![Token::new("in")]);
    let config = ok(None, &[("HOLDFAST__INGRESS__AUTH_TOKENS", "a, b")]);
    assert_eq!(
        config.ingress.auth_tokens,
        vec![Token::new("a"), Token::new("b")]
    );
    assert!(config.admin.auth_tokens.is_empty());
    // A token never shows in debug output.
    assert!(!format!("{config:?}").contains("\"a\""));
}

#[test]
fn bad_auth_tokens_are_refused_by_key() {
    let (err, path) = fail(Some("[admin]\nauth_tokens = [\"has space\"]\n"), &[]);
    assert_eq!(err.key(), Some("admin.auth_tokens[0]"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(!err.to_string().contains("has space"), "{err}");
    let (err, _) = fail(Some("[ingress]\nauth_tokens = \"single\"\n"), &[]);
    assert_eq!(err.key(), Some("ingress.auth_tokens"));
    let (err, _) = fail(None, &[("HOLDFAST__ADMIN__AUTH_TOKENS", "a,,b")]);
    assert_eq!(err.key(), Some("admin.auth_tokens"));
    assert_eq!(
        err.origin(),
        env_origin("HOLDFAST__ADMIN__AUTH_TOKENS").as_ref()
    );
}

#[test]
fn auth_token_files_add_their_lines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("admin.tokens");
    std::fs::write(&tokens, "# rotated 2026-12\nfirst\n\n  second  \n")?;
    let toml = format!(
        "[admin]\nauth_tokens = [\"inline\"]\nauth_token_file = {:?}\n",
        tokens.display().to_string()
    );
    let config = ok(Some(&toml), &[]);
    assert_eq!(config.admin.auth_tokens, vec![Token::new("inline")]);
    assert_eq!(
        config.admin.file_tokens,
        vec![Token::new("first"), Token::new("second")]
    );
    assert_eq!(config.admin.auth_token_file, Some(tokens.clone()));
    let var = tokens.display().to_string();
    let config = ok(
        None,
        &[("HOLDFAST__INGRESS__AUTH_TOKEN_FILE", var.as_str())],
    );
    assert!(config.ingress.auth_tokens.is_empty());
    assert_eq!(
        config.ingress.file_tokens,
        vec![Token::new("first"), Token::new("second")]
    );
    Ok(())
}

#[test]
fn missing_or_empty_token_files_name_the_key_and_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let absent = dir.path().join("absent.tokens");
    let toml = format!(
        "[ingress]\nauth_token_file = {:?}\n",
        absent.display().to_string()
    );
    let (err, path) = fail(Some(&toml), &[]);
    assert_eq!(err.key(), Some("ingress.auth_token_file"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(err.to_string().contains("absent.tokens"), "{err}");
    let empty = dir.path().join("empty.tokens");
    std::fs::write(&empty, "# nothing yet\n\n")?;
    let var = empty.display().to_string();
    let (err, _) = fail(None, &[("HOLDFAST__ADMIN__AUTH_TOKEN_FILE", var.as_str())]);
    assert_eq!(err.key(), Some("admin.auth_token_file"));
    assert!(err.to_string().contains("holds none"), "{err}");
    assert!(err.to_string().contains("empty.tokens"), "{err}");
    Ok(())
}

#[test]
fn cors_allowed_origins_are_origins() {
    let config = ok(
        Some(
            "[ingress]\ncors_allowed_origins = [\"https://app.example.com\", \"http://localhost:3000\"]\n",
        ),
        &[],
    );
    assert_eq!(
        config.ingress.cors_allowed_origins,
        vec!["https://app.example.com", "http://localhost:3000"]
    );
    let config = ok(None, &[("HOLDFAST__INGRESS__CORS_ALLOWED_ORIGINS", "*")]);
    assert_eq!(config.ingress.cors_allowed_origins, vec!["*"]);
    let (err, _) = fail(
        Some("[ingress]\ncors_allowed_origins = [\"https://app.example.com/path\"]\n"),
        &[],
    );
    assert_eq!(err.key(), Some("ingress.cors_allowed_origins[0]"));
    // CORS is an ingress setting only.
    let (err, _) = fail(Some("[admin]\ncors_allowed_origins = [\"*\"]\n"), &[]);
    assert_eq!(err.key(), Some("admin.cors_allowed_origins"));
}

#[test]
fn deployment_allowlist_holds_networks_and_hosts() {
    let config = ok(
        Some(
            "[admin]\ndeployment_allowlist = [\"10.0.0.0/8\", \"127.0.0.1\", \"fd00::/8\", \"Services.Internal\"]\n",
        ),
        &[],
    );
    let list = &config.admin.deployment_allowlist;
    assert_eq!(list.len(), 4);
    assert_eq!(list[3], HostPattern::Host("services.internal".to_owned()));
    let allowed = |host: &str| list.iter().any(|p| p.matches(host));
    assert!(allowed("10.200.3.4"));
    assert!(allowed("127.0.0.1"));
    assert!(!allowed("127.0.0.2"));
    assert!(allowed("[fd12::1]"));
    assert!(allowed("[::ffff:10.1.1.1]"));
    assert!(allowed("services.internal"));
    assert!(allowed("SERVICES.internal"));
    assert!(!allowed("evil.services.internal"));
    assert!(!allowed("169.254.169.254"));
    assert!(!allowed("11.0.0.1"));
    let config = ok(
        None,
        &[(
            "HOLDFAST__ADMIN__DEPLOYMENT_ALLOWLIST",
            "192.168.0.0/16, svc",
        )],
    );
    assert_eq!(config.admin.deployment_allowlist.len(), 2);
    for bad in ["10.0.0.0/33", "not a host", "1.2.3.4/x"] {
        let toml = format!("[admin]\ndeployment_allowlist = [\"ok\", {bad:?}]\n");
        let (err, path) = fail(Some(&toml), &[]);
        assert_eq!(err.key(), Some("admin.deployment_allowlist[1]"), "{bad}");
        assert_eq!(err.origin(), file_origin(&path).as_ref());
    }
}

#[test]
fn access_keys_survive_a_round_trip() -> TestResult {
    let config = ok(
        Some(
            "[admin]\nauth_tokens = [\"t\"]\ndeployment_allowlist = [\"10.0.0.0/8\", \"svc\"]\n[ingress]\ncors_allowed_origins = [\"*\"]\n",
        ),
        &[],
    );
    let json = serde_json::to_string(&config)?;
    let back: Config = serde_json::from_str(&json)?;
    assert_eq!(back, config);
    Ok(())
}

// ---------------------------------------------------------------- node.partition_threads

#[test]
fn partition_threads_default_to_one_per_core_and_are_layered() {
    assert_eq!(ok(None, &[]).node.partition_threads, 0);
    let from_file = ok(Some("[node]\npartition_threads = 2\n"), &[]);
    assert_eq!(from_file.node.partition_threads, 2);
    let from_env = ok(
        Some("[node]\npartition_threads = 2\n"),
        &[("HOLDFAST__NODE__PARTITION_THREADS", "3")],
    );
    assert_eq!(from_env.node.partition_threads, 3);
    assert_out_of_range(
        "[node]\npartition_threads = 257\n",
        "node.partition_threads",
        "257",
        "0..=256",
    );
    let (err, _) = fail(Some("[node]\npartition_threads = \"two\"\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("node.partition_threads"));
}

// ---------------------------------------------------------------- node.signing_key_file

#[test]
fn signing_key_file_is_optional_and_layered() {
    assert_eq!(ok(None, &[]).node.signing_key_file, None);
    let from_file = ok(
        Some("[node]\nsigning_key_file = \"/etc/holdfast/signing-key.pem\"\n"),
        &[],
    );
    assert_eq!(
        from_file.node.signing_key_file,
        Some(PathBuf::from("/etc/holdfast/signing-key.pem"))
    );
    let from_env = ok(
        Some("[node]\nsigning_key_file = \"/from/file\"\n"),
        &[("HOLDFAST__NODE__SIGNING_KEY_FILE", "/from/env")],
    );
    assert_eq!(
        from_env.node.signing_key_file,
        Some(PathBuf::from("/from/env"))
    );
}

#[test]
fn signing_key_file_must_be_a_non_empty_path() {
    let (err, path) = fail(Some("[node]\nsigning_key_file = \"\"\n"), &[]);
    assert_eq!(err.key(), Some("node.signing_key_file"));
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: key `node.signing_key_file`: invalid value \"\", expected a non-empty path",
            path.display()
        )
    );
    let (err, _) = fail(Some("[node]\nsigning_key_file = 5\n"), &[]);
    assert!(matches!(err, Error::InvalidType { .. }), "{err}");
    assert_eq!(err.key(), Some("node.signing_key_file"));
}

#[test]
fn sql_password_is_off_by_default_and_set_inline_or_from_the_environment() {
    let config = ok(None, &[]);
    assert_eq!(config.sql.password, None);
    assert_eq!(config.sql.password_file, None);
    let config = ok(Some("[sql]\npassword = \"s3cret words\"\n"), &[]);
    assert_eq!(config.sql.password, Some(SqlPassword::new("s3cret words")));
    let config = ok(None, &[("HOLDFAST__SQL__PASSWORD", "from-env")]);
    assert_eq!(config.sql.password, Some(SqlPassword::new("from-env")));
    let (err, path) = fail(Some("[sql]\npassword = \"\"\n"), &[]);
    assert_eq!(err.key(), Some("sql.password"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    // A password written without quotes is refused without being echoed.
    let (err, _) = fail(Some("[sql]\npassword = 98765\n"), &[]);
    assert_eq!(err.key(), Some("sql.password"));
    assert!(!err.to_string().contains("98765"), "{err}");
}

#[test]
fn sql_password_file_gives_its_first_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("psql.password");
    std::fs::write(&file, "first line is it\r\nsecond is ignored\n")?;
    let toml = format!("[sql]\npassword_file = {:?}\n", file.display().to_string());
    let config = ok(Some(&toml), &[]);
    assert_eq!(
        config.sql.password,
        Some(SqlPassword::new("first line is it"))
    );
    assert_eq!(config.sql.password_file, Some(file.clone()));
    let var = file.display().to_string();
    let config = ok(None, &[("HOLDFAST__SQL__PASSWORD_FILE", var.as_str())]);
    assert_eq!(
        config.sql.password,
        Some(SqlPassword::new("first line is it"))
    );
    Ok(())
}

#[test]
fn bad_sql_password_files_name_the_key_and_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let absent = dir.path().join("absent.password");
    let toml = format!(
        "[sql]\npassword_file = {:?}\n",
        absent.display().to_string()
    );
    let (err, path) = fail(Some(&toml), &[]);
    assert_eq!(err.key(), Some("sql.password_file"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(err.to_string().contains("absent.password"), "{err}");
    let empty = dir.path().join("empty.password");
    std::fs::write(&empty, "\nsecond\n")?;
    let var = empty.display().to_string();
    let (err, _) = fail(None, &[("HOLDFAST__SQL__PASSWORD_FILE", var.as_str())]);
    assert_eq!(err.key(), Some("sql.password_file"));
    assert!(err.to_string().contains("empty.password"), "{err}");
    // Both keys at once is ambiguous: refused, naming the file key.
    let both = format!(
        "[sql]\npassword = \"inline\"\npassword_file = {:?}\n",
        empty.display().to_string()
    );
    let (err, _) = fail(Some(&both), &[]);
    assert_eq!(err.key(), Some("sql.password_file"));
    assert!(err.to_string().contains("not both"), "{err}");
    Ok(())
}

#[test]
fn sql_password_never_shows_in_debug_output() {
    let config = ok(Some("[sql]\npassword = \"hunter2-secret\"\n"), &[]);
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(shown.contains("SqlPassword(<redacted>)"), "{shown}");
}

// ---------------------------------------------------------------- TLS files

#[test]
fn tls_keys_give_each_listener_its_certificate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pem = |name: &str| -> std::io::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\n")?;
        Ok(path.display().to_string())
    };
    let (cert, key, ca) = (pem("cert.pem")?, pem("key.pem")?, pem("ca.pem")?);
    let toml = format!(
        "[ingress]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n\
         [sql]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n\
         [cluster]\ntls_ca_file = {ca:?}\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n\
         [invocation]\nendpoint_tls_ca_file = {ca:?}\n"
    );
    let config = ok(
        Some(&toml),
        &[
            ("HOLDFAST__ADMIN__TLS_CERT_FILE", cert.as_str()),
            ("HOLDFAST__ADMIN__TLS_KEY_FILE", key.as_str()),
        ],
    );
    let files = crate::TlsFiles {
        cert_file: PathBuf::from(&cert),
        key_file: PathBuf::from(&key),
    };
    assert_eq!(config.ingress.tls, Some(files.clone()));
    assert_eq!(config.admin.tls, Some(files.clone()));
    assert_eq!(config.sql.tls, Some(files.clone()));
    assert_eq!(
        config.cluster.tls,
        Some(crate::ClusterTls {
            ca_file: PathBuf::from(&ca),
            identity: files,
        })
    );
    assert_eq!(
        config.invocation.endpoint_tls_ca_file,
        Some(PathBuf::from(&ca))
    );
    assert_eq!(default_config().ingress.tls, None);
    Ok(())
}

#[test]
fn tls_keys_come_in_pairs_and_name_readable_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "x")?;
    let cert = cert.display().to_string();
    let (err, path) = fail(Some(&format!("[admin]\ntls_cert_file = {cert:?}\n")), &[]);
    assert_eq!(err.key(), Some("admin.tls_cert_file"));
    assert_eq!(err.origin(), file_origin(&path).as_ref());
    assert!(err.to_string().contains("`admin.tls_key_file`"), "{err}");

    let toml = format!("[cluster]\ntls_cert_file = {cert:?}\ntls_key_file = {cert:?}\n");
    let (err, _) = fail(Some(&toml), &[]);
    assert!(err.to_string().contains("`cluster.tls_ca_file`"), "{err}");

    let absent = dir.path().join("absent-key.pem").display().to_string();
    let toml = format!("[sql]\ntls_cert_file = {cert:?}\ntls_key_file = {absent:?}\n");
    let (err, _) = fail(Some(&toml), &[]);
    assert_eq!(err.key(), Some("sql.tls_key_file"));
    assert!(err.to_string().contains("absent-key.pem"), "{err}");

    let (err, _) = fail(Some("[ingress]\ntls_ca_file = \"/x\"\n"), &[]);
    assert_eq!(err.key(), Some("ingress.tls_ca_file"));
    Ok(())
}

// ---------------------------------------------------------------- limits

#[test]
fn limits_are_read_from_the_file() {
    let config = ok(
        Some(
            "[[limits]]\nname = \"api\"\nservice = \"Payments\"\nmax_concurrency = 5\n\
             [[limits]]\nname = \"eu\"\nservice = \"Cart\"\nhandler = \"add\"\n\
             key_prefix = \"eu-\"\nrate = \"50/s\"\nburst = 10\n",
        ),
        &[],
    );
    assert_eq!(config.limits.len(), 2);
    assert_eq!(config.limits[0].name, "api");
    assert_eq!(config.limits[0].max_concurrency, Some(5));
    assert_eq!(config.limits[0].rate, None);
    let eu = &config.limits[1];
    assert_eq!(eu.handler.as_deref(), Some("add"));
    assert_eq!(eu.key_prefix.as_deref(), Some("eu-"));
    assert_eq!(
        eu.rate,
        Some(holdfast_types::Rate {
            count: 50,
            period_ms: 1000,
            burst: 10
        })
    );
    assert!(ok(None, &[]).limits.is_empty());
}

#[test]
fn a_bad_limit_names_its_key_and_file() {
    let cases = [
        (
            "[[limits]]\nname = \"a\"\nservice = \"S\"\nrate = \"fast\"\n",
            "limits[0].rate",
        ),
        (
            "[[limits]]\nname = \"a\"\nmax_concurrency = 5\n",
            "limits[0].service",
        ),
        (
            "[[limits]]\nname = \"a\"\nservice = \"S\"\nmax_concurrency = 0\n",
            "limits[0].max_concurrency",
        ),
        ("[[limits]]\nname = \"a\"\nservice = \"S\"\n", "limits[0]"),
        (
            "[[limits]]\nname = \"a\"\nservice = \"S\"\nmax = 1\n",
            "limits[0].max",
        ),
        (
            "[[limits]]\nname = \"a\"\nservice = \"S\"\nmax_concurrency = 1\n\
             [[limits]]\nname = \"a\"\nservice = \"T\"\nmax_concurrency = 1\n",
            "limits[1].name",
        ),
    ];
    for (toml, key) in cases {
        let (err, path) = fail(Some(toml), &[]);
        assert_eq!(err.key(), Some(key), "{err}");
        assert_eq!(err.origin(), file_origin(&path).as_ref(), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    let (err, _) = fail(None, &[("HOLDFAST__LIMITS", "x")]);
    assert_eq!(err.key(), Some("limits"), "{err}");
}
