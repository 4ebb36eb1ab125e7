//! Partitions held by another node: a node with one partition open scans the others through
//! the [`ScanServer`] of a node holding them (in process, the transport left out), and every
//! query answers exactly what a node holding every partition answers.

mod common;

use common::{Cluster, PARTITIONS, rows, scenario};
use futures::StreamExt;
use holdfast_introspection::{
    PartitionStores, QueryEngine, QueryError, QueryLimits, RemoteRows, ScanServer,
};
use holdfast_raft_store::StateMachine;
use holdfast_types::{Command, ObjectKey, PartitionId, routing};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The partition open on the querying node; the others are on the serving node.
const HERE: PartitionId = PartitionId(0);

/// The querying node: [`HERE`] open, the rest scanned by `there` while it is reachable.
struct Split {
    here: Vec<(PartitionId, StateMachine)>,
    there: ScanServer,
    reachable: AtomicBool,
    /// The last request sent to `there`.
    sent: Mutex<Option<Vec<u8>>>,
    /// While set, a remote scan never answers; the flag given is set when it is dropped.
    hang: Mutex<Option<Arc<AtomicBool>>>,
}

/// Sets its flag when dropped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl PartitionStores for Split {
    fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
        self.here.clone()
    }

    fn partition_count(&self) -> u32 {
        PARTITIONS
    }

    fn remote_scan(&self, partition: PartitionId, request: Vec<u8>) -> RemoteRows {
        let refused = |reason: String| -> RemoteRows {
            Box::pin(futures::stream::once(futures::future::ready(Err(reason))))
        };
        *self.sent.lock().expect("lock") = Some(request.clone());
        if let Some(flag) = self.hang.lock().expect("lock").clone() {
            let guard = Dropped(flag);
            return Box::pin(futures::stream::pending().map(move |chunk| {
                let _ = &guard;
                chunk
            }));
        }
        if !self.reachable.load(Ordering::Relaxed) {
            return refused("no replica answered: node 2 is unreachable".into());
        }
        self.there
            .serve(partition, &request)
            .unwrap_or_else(|e| refused(e.to_string()))
    }
}

/// A node that holds only some partitions' stores.
struct Holding(Vec<(PartitionId, StateMachine)>);

impl PartitionStores for Holding {
    fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
        self.0.clone()
    }

    fn partition_count(&self) -> u32 {
        PARTITIONS
    }
}

struct Setup {
    _cluster: Cluster,
    /// A node holding every partition.
    whole: QueryEngine,
    /// A node holding only [`HERE`].
    split: QueryEngine,
    /// How the split node reaches the others.
    stores: Arc<Split>,
}

/// The founding scenario plus state of 16 objects, which cover every partition.
async fn setup() -> Setup {
    let mut cluster = Cluster::new();
    scenario(&mut cluster).await;
    for n in 0..16 {
        cluster
            .run(Command::SetState {
                object: ObjectKey::new("Counter", format!("k{n}")),
                name: "count".into(),
                value: n.to_string().into_bytes(),
            })
            .await;
    }
    let whole = cluster.engine(QueryLimits::default());
    let registry = watch::channel(Arc::new(common::registry())).1;
    let (here, there): (Vec<_>, Vec<_>) = cluster
        .stores
        .stores
        .iter()
        .cloned()
        .partition(|(id, _)| *id == HERE);
    let stores = Arc::new(Split {
        here,
        there: ScanServer::new(Arc::new(Holding(there)), registry.clone()),
        reachable: AtomicBool::new(true),
        sent: Mutex::new(None),
        hang: Mutex::new(None),
    });
    let split = QueryEngine::new(stores.clone(), registry, QueryLimits::default());
    Setup {
        _cluster: cluster,
        whole,
        split,
        stores,
    }
}

/// The rows of `sql` on `engine`, sorted (scans give no order across partitions).
async fn sorted(engine: &QueryEngine, sql: &str) -> Vec<Vec<Option<String>>> {
    let result = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = rows(&result);
    rows.sort();
    rows
}

/// The key of a `Counter` object among those of [`setup`] in partition `partition`.
fn key_in(partition: PartitionId) -> String {
    (0..16)
        .map(|n| format!("k{n}"))
        .find(|key| {
            routing::partition_of(&ObjectKey::new("Counter", key.clone()), PARTITIONS) == partition
        })
        .expect("a key in every partition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_reads_the_same_with_most_partitions_on_another_node() {
    let setup = setup().await;
    // An invocation's caller is looked up in the caller's partition, which only the node
    // holding that partition can read: the two columns a partial node cannot fill.
    for sql in [
        "SELECT * EXCLUDE (invoked_by_service_name, invoked_by_target) FROM sys_invocation",
        "SELECT * EXCLUDE (invoked_by_service_name, invoked_by_target) FROM sys_invocation_status",
        "SELECT * FROM sys_journal",
        "SELECT * FROM state",
        "SELECT * FROM sys_inbox",
        "SELECT * FROM sys_keyed_service_status",
        "SELECT * FROM sys_idempotency",
        "SELECT * FROM sys_promise",
        "SELECT count(*) FROM sys_invocation",
        "SELECT count(*), sum(value_length) FROM state",
        "SELECT partition_key, count(*) FROM state GROUP BY partition_key",
    ] {
        let whole = sorted(&setup.whole, sql).await;
        assert!(!whole.is_empty(), "{sql}");
        assert_eq!(sorted(&setup.split, sql).await, whole, "{sql}");
    }
    // Most rows came from the other node.
    assert!(setup.stores.there.rows_scanned() > setup.split.rows_scanned());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_limits_travel_with_the_scan() {
    let setup = setup().await;
    let elsewhere = PartitionId(PARTITIONS - 1);
    let key = key_in(elsewhere);
    let sql = format!(
        "SELECT service_key, key, value_utf8 FROM state \
         WHERE service_name = 'Counter' AND service_key = '{key}'"
    );
    let before = setup.stores.there.rows_scanned();
    let found = sorted(&setup.split, &sql).await;
    assert_eq!(found, sorted(&setup.whole, &sql).await);
    assert_eq!(found.len(), 1, "{found:?}");
    // The object's lookup ran on the other node: it read the object's row, not the partition.
    assert_eq!(setup.stores.there.rows_scanned() - before, 1);
    let plan = sorted(&setup.split, &format!("EXPLAIN {sql}")).await;
    let plan: String = plan.into_iter().flatten().flatten().collect();
    assert!(
        plan.contains(&format!(
            "partitions=[{}], lookup=object, remote=[{}]",
            elsewhere.0, elsewhere.0
        )),
        "{plan}"
    );
    // A limit stops the remote scans early.
    let limited = sorted(&setup.split, "SELECT key FROM state LIMIT 3").await;
    assert_eq!(limited.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_no_replica_serves_fails_the_query_naming_it() {
    let setup = setup().await;
    setup.stores.reachable.store(false, Ordering::Relaxed);
    let failed = setup
        .split
        .query("SELECT count(*) FROM state")
        .await
        .expect_err("rows are missing");
    let message = failed.to_string();
    assert!(matches!(failed, QueryError::Unavailable(_)), "{failed:?}");
    assert!(
        (1..PARTITIONS).any(|p| message.contains(&format!("partition {p} is unavailable"))),
        "{message}"
    );
    assert!(message.contains("node 2 is unreachable"), "{message}");
    // What the node holds itself still answers.
    let key = key_in(HERE);
    let sql =
        format!("SELECT key FROM state WHERE service_name = 'Counter' AND service_key = '{key}'");
    assert_eq!(sorted(&setup.split, &sql).await.len(), 1);
    // A node asked for a partition it does not hold refuses, naming it; so it does a request
    // it cannot read.
    let request = setup
        .stores
        .sent
        .lock()
        .expect("lock")
        .clone()
        .expect("a request");
    let there = &setup.stores.there;
    let refused = there.serve(HERE, &request).map(drop).expect_err("not held");
    assert!(
        refused
            .to_string()
            .contains(&format!("no open replica of partition {}", HERE.0)),
        "{refused}"
    );
    let garbage = there
        .serve(HERE, b"\x01garbage")
        .map(drop)
        .expect_err("garbage");
    assert!(garbage.to_string().contains("undecodable"), "{garbage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_gives_up_drops_the_remote_scan_it_waits_for() {
    let setup = setup().await;
    let dropped = Arc::new(AtomicBool::new(false));
    *setup.stores.hang.lock().expect("lock") = Some(dropped.clone());
    let (_tx, registry) = watch::channel(Arc::new(common::registry()));
    let impatient = QueryEngine::new(
        setup.stores.clone(),
        registry,
        QueryLimits {
            // Long enough for planning to reach the remote scan on a loaded machine (debug
            // build, two cores shared with other tests): the scan must start before the timeout.
            statement_timeout: Duration::from_secs(2),
            ..QueryLimits::default()
        },
    );
    let failed = impatient.query("SELECT count(*) FROM state").await;
    assert!(matches!(failed, Err(QueryError::Timeout(_))), "{failed:?}");
    assert!(
        setup.stores.sent.lock().expect("lock").is_some(),
        "the query timed out before it started the remote scan"
    );
    // The silent scan is dropped (on a real node: its stream reset, the peer's scan stopped).
    for _ in 0..100 {
        if dropped.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the remote scan outlived its query");
}
