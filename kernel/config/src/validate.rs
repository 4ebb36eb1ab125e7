//! Rules that span several keys, checked once the layers are merged.
//!
//! A cross-key violation is blamed on the participating key from the highest-priority layer:
//! that is the value that overrode something consistent into something inconsistent.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::error::{Error, Origin};
use crate::layer::{Partial, Sourced};
use crate::{Admin, Cluster, Config, Ingress, Invocation, Log, Member, Node, Sql, Tracing};

/// Fills every key from the merged layers and applies the cross-key rules.
pub(crate) fn finish(mut merged: Partial) -> Result<Config, Error> {
    let tls = std::mem::take(&mut merged.tls).finish()?;
    let mut invocation = invocation(&mut merged)?;
    invocation.endpoint_tls_ca_file = tls.endpoint_ca_file;
    let tracing = tracing(&mut merged)?;
    let (mut ingress_access, mut admin_access) = access(&mut merged)?;
    ingress_access.tls = tls.ingress;
    admin_access.tls = tls.admin;
    let node_id = required(merged.node_id, "node.id")?;
    let data_dir = required(merged.data_dir, "node.data_dir")?;
    let ingress = required(merged.ingress, "ingress.bind_address")?;
    let admin = required(merged.admin, "admin.bind_address")?;
    let sql = required(merged.sql, "sql.bind_address")?;
    let statement_timeout_ms = required(merged.statement_timeout_ms, "sql.statement_timeout_ms")?;
    let max_rows = required(merged.max_rows, "sql.max_rows")?;
    let sql_limits = std::mem::take(&mut merged.sql_limits).finish()?;
    let storage = std::mem::take(&mut merged.storage).finish()?;
    let sql_password_file = merged.sql_password_file.take();
    let sql_password =
        crate::sql_password::resolve(merged.sql_password.take(), sql_password_file.as_ref())?;
    let cluster_name = required(merged.cluster_name, "cluster.name")?;
    let partitions = required(merged.partitions, "cluster.partitions")?;
    let replication_factor = required(merged.replication_factor, "cluster.replication_factor")?;
    let nodes = required(merged.nodes, "cluster.nodes")?;
    let max_batch_commands = required(merged.max_batch_commands, "log.max_batch_commands")?;
    let max_batch_bytes = required(merged.max_batch_bytes, "log.max_batch_bytes")?;
    let snapshot_interval = required(merged.snapshot_interval, "log.snapshot_interval")?;
    let election_timeout_ms = required(merged.election_timeout_ms, "log.election_timeout_ms")?;
    let heartbeat_interval_ms =
        required(merged.heartbeat_interval_ms, "log.heartbeat_interval_ms")?;

    check_members(&nodes)?;
    let node_address = merged.node_address.take();
    let own = check_own_member(&node_id, &nodes, node_address.as_ref())?;
    check_replication(&replication_factor, &nodes)?;
    check_ports(&ingress, &admin, &sql, &own, &nodes)?;
    check_heartbeat(&heartbeat_interval_ms, &election_timeout_ms)?;

    Ok(Config {
        node: Node {
            id: node_id.value,
            data_dir: data_dir.value,
            address: node_address.map(|a| a.value),
            signing_key_file: merged.signing_key_file.take().map(|f| f.value),
            partition_threads: required(merged.partition_threads.take(), "node.partition_threads")?
                .value,
        },
        ingress: Ingress {
            bind_address: ingress.value,
            ..ingress_access
        },
        admin: Admin {
            bind_address: admin.value,
            ..admin_access
        },
        sql: Sql {
            bind_address: sql.value,
            statement_timeout_ms: statement_timeout_ms.value,
            max_rows: max_rows.value,
            memory_limit_bytes: sql_limits.memory_limit_bytes,
            max_result_bytes: sql_limits.max_result_bytes,
            max_connections: sql_limits.max_connections,
            startup_timeout_ms: sql_limits.startup_timeout_ms,
            idle_timeout_ms: sql_limits.idle_timeout_ms,
            max_message_bytes: sql_limits.max_message_bytes,
            password: sql_password,
            password_file: sql_password_file.map(|f| f.value),
            tls: tls.sql,
        },
        cluster: Cluster {
            name: cluster_name.value,
            partitions: partitions.value,
            replication_factor: replication_factor.value,
            nodes: nodes.value,
            tls: tls.cluster,
        },
        log: Log {
            max_batch_commands: max_batch_commands.value,
            max_batch_bytes: max_batch_bytes.value,
            snapshot_interval: snapshot_interval.value,
            election_timeout_ms: election_timeout_ms.value,
            heartbeat_interval_ms: heartbeat_interval_ms.value,
        },
        storage,
        invocation,
        tracing,
        limits: merged.limits.map(|l| l.value).unwrap_or_default(),
    })
}

/// The `[tracing]` section; an empty or absent endpoint turns tracing off, and a batch may not
/// be larger than the queue it is taken from.
fn tracing(merged: &mut Partial) -> Result<Tracing, Error> {
    let endpoint = merged
        .tracing_endpoint
        .take()
        .map(|endpoint| endpoint.value)
        .filter(|endpoint| !endpoint.is_empty());
    let queue = required(
        merged.tracing_queue_capacity.take(),
        "tracing.queue_capacity",
    )?;
    let batch = required(merged.tracing_batch_size.take(), "tracing.batch_size")?;
    if batch.value > queue.value {
        // Blame the key from the stronger layer: it broke a consistent pair.
        let (origin, key, value, expected) = if outranks(&queue.origin, &batch.origin) {
            (
                &queue.origin,
                "tracing.queue_capacity",
                queue.value,
                format!(
                    ">= {} (`tracing.batch_size` from {})",
                    batch.value, batch.origin
                ),
            )
        } else {
            (
                &batch.origin,
                "tracing.batch_size",
                batch.value,
                format!(
                    "<= {} (`tracing.queue_capacity` from {})",
                    queue.value, queue.origin
                ),
            )
        };
        return Err(invalid(origin, key.to_owned(), value.to_string(), expected));
    }
    Ok(Tracing {
        endpoint,
        service_name: required(merged.tracing_service_name.take(), "tracing.service_name")?.value,
        queue_capacity: queue.value,
        batch_size: batch.value,
        flush_interval_ms: required(
            merged.tracing_flush_interval_ms.take(),
            "tracing.flush_interval_ms",
        )?
        .value,
        export_timeout_ms: required(
            merged.tracing_export_timeout_ms.take(),
            "tracing.export_timeout_ms",
        )?
        .value,
        trace_url: merged
            .tracing_trace_url
            .take()
            .map(|url| url.value)
            .filter(|url| !url.is_empty()),
    })
}

/// The `[invocation]` section; the initial retry interval may not exceed the maximum one.
fn invocation(merged: &mut Partial) -> Result<Invocation, Error> {
    let initial = required(
        merged.retry_initial_interval_ms.take(),
        "invocation.retry_initial_interval_ms",
    )?;
    let max = required(
        merged.retry_max_interval_ms.take(),
        "invocation.retry_max_interval_ms",
    )?;
    if initial.value > max.value {
        // Blame the key from the stronger layer: it broke a consistent pair.
        let (origin, key, value, expected) = if outranks(&max.origin, &initial.origin) {
            (
                &max.origin,
                "invocation.retry_max_interval_ms",
                max.value,
                format!(
                    ">= {} (`invocation.retry_initial_interval_ms` from {})",
                    initial.value, initial.origin
                ),
            )
        } else {
            (
                &initial.origin,
                "invocation.retry_initial_interval_ms",
                initial.value,
                format!(
                    "<= {} (`invocation.retry_max_interval_ms` from {})",
                    max.value, max.origin
                ),
            )
        };
        return Err(invalid(origin, key.to_owned(), value.to_string(), expected));
    }
    Ok(Invocation {
        inactivity_timeout_ms: required(
            merged.inactivity_timeout_ms.take(),
            "invocation.inactivity_timeout_ms",
        )?
        .value,
        abort_timeout_ms: required(
            merged.abort_timeout_ms.take(),
            "invocation.abort_timeout_ms",
        )?
        .value,
        retry_initial_interval_ms: initial.value,
        retry_factor: required(merged.retry_factor.take(), "invocation.retry_factor")?.value,
        retry_max_interval_ms: max.value,
        retry_max_attempts: required(
            merged.retry_max_attempts.take(),
            "invocation.retry_max_attempts",
        )?
        .value,
        max_message_bytes: required(
            merged.max_message_bytes.take(),
            "invocation.max_message_bytes",
        )?
        .value,
        max_concurrent_attempts: required(
            merged.max_concurrent_attempts.take(),
            "invocation.max_concurrent_attempts",
        )?
        .value,
        endpoint_tls_ca_file: None,
    })
}

/// The access keys of `[ingress]` and `[admin]`, token files read; `bind_address` is a
/// placeholder the caller replaces.
fn access(merged: &mut Partial) -> Result<(Ingress, Admin), Error> {
    let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
    let ingress_file = merged.ingress_auth_token_file.take();
    let admin_file = merged.admin_auth_token_file.take();
    let ingress = Ingress {
        bind_address: unbound,
        auth_tokens: merged
            .ingress_auth_tokens
            .take()
            .map(|t| t.value)
            .unwrap_or_default(),
        file_tokens: crate::access::file_tokens(ingress_file.as_ref(), "ingress.auth_token_file")?,
        auth_token_file: ingress_file.map(|f| f.value),
        cors_allowed_origins: merged
            .ingress_cors_allowed_origins
            .take()
            .map(|o| o.value)
            .unwrap_or_default(),
        tls: None,
    };
    let admin = Admin {
        bind_address: unbound,
        auth_tokens: merged
            .admin_auth_tokens
            .take()
            .map(|t| t.value)
            .unwrap_or_default(),
        file_tokens: crate::access::file_tokens(admin_file.as_ref(), "admin.auth_token_file")?,
        auth_token_file: admin_file.map(|f| f.value),
        deployment_allowlist: merged
            .admin_deployment_allowlist
            .take()
            .map(|a| a.value)
            .unwrap_or_default(),
        tls: None,
    };
    Ok((ingress, admin))
}

/// The merged value of `key`; a key no layer set is a [`Error::MissingKey`], which only happens
/// if the embedded default itself is broken (it sets every key).
pub(crate) fn required<T>(value: Option<Sourced<T>>, key: &str) -> Result<Sourced<T>, Error> {
    value.ok_or_else(|| Error::MissingKey {
        origin: Origin::Default,
        key: key.to_owned(),
    })
}

/// True when `upper` should take the blame over `lower` (strictly higher precedence).
fn outranks(upper: &Origin, lower: &Origin) -> bool {
    upper.rank() > lower.rank()
}

fn invalid(origin: &Origin, key: String, value: String, expected: String) -> Error {
    Error::InvalidValue {
        origin: origin.clone(),
        key,
        value,
        expected,
    }
}

/// At least one member, unique ids and unique raft addresses.
fn check_members(nodes: &Sourced<Vec<Member>>) -> Result<(), Error> {
    if nodes.value.is_empty() {
        return Err(invalid(
            &nodes.origin,
            "cluster.nodes".to_owned(),
            "[]".to_owned(),
            "at least one [[cluster.nodes]] entry".to_owned(),
        ));
    }
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
    for (index, member) in nodes.value.iter().enumerate() {
        if let Some(first) = ids.insert(member.id, index) {
            return Err(invalid(
                &nodes.origin,
                format!("cluster.nodes[{index}].id"),
                member.id.to_string(),
                format!("an id not already used by cluster.nodes[{first}]"),
            ));
        }
        if let Some(first) = addresses.insert(member.address, index) {
            return Err(invalid(
                &nodes.origin,
                format!("cluster.nodes[{index}].address"),
                member.address.to_string(),
                format!("an address not already used by cluster.nodes[{first}]"),
            ));
        }
    }
    Ok(())
}

/// `node.id` must name one of the members, or a new id with `node.address` (a node joining a
/// running cluster); returns the own address as an [`Own`].
fn check_own_member(
    node_id: &Sourced<u64>,
    nodes: &Sourced<Vec<Member>>,
    address: Option<&Sourced<SocketAddr>>,
) -> Result<Own, Error> {
    let position = nodes.value.iter().position(|m| m.id == node_id.value);
    match (position, address) {
        (Some(index), None) => return Ok(Own::Member(index)),
        (Some(index), Some(address)) => {
            return Err(invalid(
                &address.origin,
                "node.address".to_owned(),
                address.value.to_string(),
                format!(
                    "no value: node {} is cluster.nodes[{index}], whose address is used \
                     (`node.address` is only for a node joining under a new id)",
                    node_id.value
                ),
            ));
        }
        (None, Some(address)) => {
            if let Some(index) = nodes.value.iter().position(|m| m.address == address.value) {
                return Err(invalid(
                    &address.origin,
                    "node.address".to_owned(),
                    address.value.to_string(),
                    format!("an address not already used by cluster.nodes[{index}]"),
                ));
            }
            return Ok(Own::Joining(address.clone()));
        }
        (None, None) => {}
    }
    let ids: Vec<String> = nodes.value.iter().map(|m| m.id.to_string()).collect();
    if outranks(&nodes.origin, &node_id.origin) {
        Err(invalid(
            &nodes.origin,
            "cluster.nodes".to_owned(),
            format!("with ids [{}]", ids.join(", ")),
            format!(
                "an entry for this node's id {} (`node.id` from {})",
                node_id.value, node_id.origin
            ),
        ))
    } else {
        Err(invalid(
            &node_id.origin,
            "node.id".to_owned(),
            node_id.value.to_string(),
            format!(
                "one of the ids in cluster.nodes [{}], or set `node.address` to join a running \
                 cluster under a new id",
                ids.join(", ")
            ),
        ))
    }
}

/// Where this node's own node-to-node address comes from.
enum Own {
    /// Its entry in `cluster.nodes`, by index.
    Member(usize),
    /// `node.address`: it joins a running cluster.
    Joining(Sourced<SocketAddr>),
}

/// A partition cannot have more replicas than there are nodes to hold them.
fn check_replication(factor: &Sourced<u32>, nodes: &Sourced<Vec<Member>>) -> Result<(), Error> {
    let count = nodes.value.len();
    if usize::try_from(factor.value).is_ok_and(|f| f <= count) {
        return Ok(());
    }
    if outranks(&nodes.origin, &factor.origin) {
        Err(invalid(
            &nodes.origin,
            "cluster.nodes".to_owned(),
            format!("with {count} member(s)"),
            format!(
                "at least {} members (`cluster.replication_factor` from {})",
                factor.value, factor.origin
            ),
        ))
    } else {
        Err(invalid(
            &factor.origin,
            "cluster.replication_factor".to_owned(),
            factor.value.to_string(),
            format!("1..={count} (at most the number of cluster.nodes)"),
        ))
    }
}

/// A follower that hears no heartbeat within the election timeout starts an election, so the
/// leader must heartbeat more often than that.
fn check_heartbeat(heartbeat: &Sourced<u64>, election: &Sourced<u64>) -> Result<(), Error> {
    if heartbeat.value < election.value {
        return Ok(());
    }
    // Blame the key from the stronger layer: it broke a consistent pair.
    if outranks(&election.origin, &heartbeat.origin) {
        Err(invalid(
            &election.origin,
            "log.election_timeout_ms".to_owned(),
            election.value.to_string(),
            format!(
                "> {} (`log.heartbeat_interval_ms` from {}; heartbeats must come more often \
                 than elections)",
                heartbeat.value, heartbeat.origin
            ),
        ))
    } else {
        Err(invalid(
            &heartbeat.origin,
            "log.heartbeat_interval_ms".to_owned(),
            heartbeat.value.to_string(),
            format!(
                "< {} (`log.election_timeout_ms` from {}; heartbeats must come more often \
                 than elections)",
                election.value, election.origin
            ),
        ))
    }
}

/// Two addresses collide when they share a port and an IP (an unspecified IP covers every IP).
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The three listeners and this node's raft address are bound by one process: no shared port.
fn check_ports(
    ingress: &Sourced<SocketAddr>,
    admin: &Sourced<SocketAddr>,
    sql: &Sourced<SocketAddr>,
    own: &Own,
    nodes: &Sourced<Vec<Member>>,
) -> Result<(), Error> {
    let mut endpoints: Vec<(String, SocketAddr, &Origin)> = vec![
        (
            "ingress.bind_address".to_owned(),
            ingress.value,
            &ingress.origin,
        ),
        ("admin.bind_address".to_owned(), admin.value, &admin.origin),
        ("sql.bind_address".to_owned(), sql.value, &sql.origin),
    ];
    match own {
        Own::Member(own) => {
            if let Some(member) = nodes.value.get(*own) {
                endpoints.push((
                    format!("cluster.nodes[{own}].address"),
                    member.address,
                    &nodes.origin,
                ));
            }
        }
        Own::Joining(address) => {
            endpoints.push(("node.address".to_owned(), address.value, &address.origin));
        }
    }
    for (later, (key_b, addr_b, origin_b)) in endpoints.iter().enumerate() {
        for (key_a, addr_a, origin_a) in endpoints.iter().take(later) {
            if !collide(*addr_a, *addr_b) {
                continue;
            }
            // Blame the later key unless the earlier one comes from a stronger layer.
            let ((key, addr, origin), (other_key, other_addr)) = if outranks(origin_a, origin_b) {
                ((key_a, addr_a, origin_a), (key_b, addr_b))
            } else {
                ((key_b, addr_b, origin_b), (key_a, addr_a))
            };
            return Err(invalid(
                origin,
                key.clone(),
                addr.to_string(),
                format!("a port not already taken by `{other_key}` ({other_addr})"),
            ));
        }
    }
    Ok(())
}
