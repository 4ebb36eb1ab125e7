//! A three-node cluster end to end: three real `holdfast` processes on 127.0.0.1 replicating
//! every partition, a real Node endpoint (`tests/e2e/fixtures/leadership-services.mjs`), real
//! HTTP to every node.
//!
//! - The nodes form the cluster by themselves, leadership is spread, a deployment registered on
//!   a node that does not lead the metadata log is visible on every node, and every node serves
//!   every partition (forwarding to its leader).
//! - kill -9 of the node leading the most partitions under load from 16 clients (calls to
//!   counters, one-way sends crossing partitions, each retried with its idempotency key on
//!   another node): leaders move, and a Jepsen-style check of the history finds every
//!   acknowledged operation applied exactly once, counters linearizable.

use holdfast_e2e::cluster::{Cluster, ClusterOptions};
use holdfast_e2e::history::{History, OpKind, Outcome, check_counter, check_set_multiset};
use holdfast_e2e::{ServiceProcess, free_port, http, http_get, poll, register};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/e2e/fixtures/leadership-services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(120);
const JSON: (&str, &str) = ("content-type", "application/json");
/// How long one client keeps retrying one operation before calling its outcome unknown.
const OPERATION_DEADLINE: Duration = Duration::from_secs(30);

/// A started cluster with the fixture registered through node 2 (not the metadata leader).
fn cluster() -> (Cluster, ServiceProcess) {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = register_everywhere(&cluster, 2);
    (cluster, endpoint)
}

/// Starts the fixture, registers it through node `via` and waits until every node knows it.
fn register_everywhere(cluster: &Cluster, via: u64) -> ServiceProcess {
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(cluster.node(via).admin(), &endpoint.uri);
    for node in cluster.nodes() {
        poll("the deployment on every node", PATIENCE, || {
            let services = http_get(node.admin(), "/services").ok()?;
            services.body.contains("\"Slow\"").then_some(())
        });
    }
    endpoint
}

/// The rows of `query` run through a node's admin API (`POST /query`), which must answer 200.
fn sql_rows(admin: SocketAddr, query: &str) -> Vec<Value> {
    let response = holdfast_e2e::http_json(admin, "POST", "/query", &json!({ "query": query }))
        .expect("query");
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn node_ingress(cluster: &Cluster, id: u64) -> SocketAddr {
    cluster.node(id).ingress()
}

#[test]
fn three_nodes_form_a_cluster_and_every_node_serves_every_partition() {
    let (cluster, _endpoint) = cluster();
    let leaders = cluster.wait_for_leaders(PATIENCE);
    let mut led = BTreeMap::<u64, usize>::new();
    for leader in leaders.values() {
        *led.entry(*leader).or_default() += 1;
    }
    println!("leaders per node: {led:?}");
    assert_eq!(
        led.len(),
        3,
        "every node leads some of the 8 partitions: {led:?}"
    );
    // Every node answers for every box (the boxes' keys spread over all partitions), and the
    // counts run on across nodes.
    for n in 0..8 {
        for (i, id) in [1u64, 2, 3].iter().enumerate() {
            let response = http(
                node_ingress(&cluster, *id),
                "POST",
                &format!("/Box/b{n}/add"),
                &[JSON],
                &json!(format!("m{i}")).to_string(),
            )
            .expect("call");
            assert_eq!(
                response.status, 200,
                "node {id}, box b{n}: {}",
                response.body
            );
            assert_eq!(response.body, (i + 1).to_string(), "node {id}, box b{n}");
        }
    }
    // SQL on every node sees every partition's acknowledged writes at once (a follower reads
    // after its leader's read index).
    for node in cluster.nodes() {
        let rows = sql_rows(
            node.admin(),
            "SELECT service_key_utf8 AS box, value_utf8 FROM state \
             WHERE service = 'Box' ORDER BY box",
        );
        assert_eq!(rows.len(), 8, "node {}: {rows:?}", node.id());
        for row in &rows {
            assert_eq!(
                row["value_utf8"],
                r#"["m0","m1","m2"]"#,
                "node {}: {row}",
                node.id()
            );
        }
    }
    // sys_cluster: from node 1, every partition with its three replicas and one leader, the
    // same leaders /cluster reports.
    let rows = sql_rows(
        cluster.node(1).admin(),
        "SELECT partition_id, leader_node_id, count(*) AS replicas, \
         sum(CASE WHEN is_leader THEN 1 ELSE 0 END) AS leaders \
         FROM sys_cluster GROUP BY partition_id, leader_node_id ORDER BY partition_id",
    );
    assert_eq!(rows.len(), 8, "{rows:?}");
    for row in &rows {
        let partition = row["partition_id"].as_u64().expect("partition") as u32;
        assert_eq!(row["replicas"], 3, "{row}");
        assert_eq!(row["leaders"], 1, "{row}");
        assert_eq!(row["leader_node_id"], leaders[&partition], "{row}");
    }
    // A send crossing partitions, accepted by one node, lands through the others.
    let response = http(
        node_ingress(&cluster, 3),
        "POST",
        "/Relay/forward/send",
        &[JSON],
        &json!({ "box": "crossing", "message": "hello" }).to_string(),
    )
    .expect("send");
    assert_eq!(response.status, 202, "{}", response.body);
    poll("the relayed message", PATIENCE, || {
        let list = http(
            node_ingress(&cluster, 1),
            "POST",
            "/Box/crossing/list",
            &[JSON],
            "",
        )
        .ok()?;
        (list.body == "[\"hello\"]").then_some(())
    });
    let view = cluster.view(2).expect("GET /cluster");
    assert_eq!(view.nodes.len(), 3);
    assert!(view.nodes.iter().all(|m| m.alive), "{view:?}");
    // The same through the command line, from any node.
    let status = std::process::Command::new(holdfast_e2e::holdfast_bin())
        .args([
            "cluster",
            "status",
            "--admin",
            &cluster.node(3).admin().to_string(),
        ])
        .output()
        .expect("holdfast cluster status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains("as seen from node 3"), "{text}");
    let rows = text
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|p| p.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(rows, 3 + 8, "three members and eight partitions:\n{text}");
}

/// What one client operation is.
#[derive(Clone)]
enum Operation {
    /// A call to `Box/{counter}/add` whose answer is the counter's new value.
    Increment { counter: String, message: i64 },
    /// A one-way send through the relay to box `set`, which crosses partitions.
    Add { set: String, element: i64 },
}

impl Operation {
    fn request(&self) -> (String, String, u16) {
        match self {
            Operation::Increment { counter, message } => {
                (format!("/Box/{counter}/add"), message.to_string(), 200)
            }
            Operation::Add { set, element } => (
                "/Relay/forward/send".to_owned(),
                json!({ "box": set, "message": element }).to_string(),
                202,
            ),
        }
    }
}

/// Runs `operation` against the nodes in turn from `first`, with its idempotency key, until it is
/// acknowledged or the deadline passes: ok with the answer, or unknown.
fn perform(
    ingresses: &[SocketAddr],
    first: usize,
    key: &str,
    operation: &Operation,
) -> Option<Value> {
    let (path, body, ok) = operation.request();
    let deadline = Instant::now() + OPERATION_DEADLINE;
    let mut attempt = first;
    while Instant::now() < deadline {
        let ingress = ingresses[attempt % ingresses.len()];
        attempt += 1;
        match http(
            ingress,
            "POST",
            &path,
            &[JSON, ("idempotency-key", key)],
            &body,
        ) {
            Ok(response) if response.status == ok => {
                return Some(serde_json::from_str(&response.body).unwrap_or(Value::Null));
            }
            Ok(response) if response.status >= 500 || response.status == 0 => {}
            Ok(response) => panic!("{path} {key}: {} {}", response.status, response.body),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn kill9_of_the_busiest_leader_under_load_loses_no_acknowledged_operation() {
    const CLIENTS: usize = 16;
    const COUNTERS: usize = 4;
    const SETS: usize = 8;
    let (cluster, _endpoint) = cluster();
    let ingresses: Vec<SocketAddr> = (1..=3).map(|id| node_ingress(&cluster, id)).collect();
    let history = History::new();
    let running = Arc::new(AtomicBool::new(true));
    let next = Arc::new(Mutex::new(0i64));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|process| {
            let (history, running, next, ingresses) = (
                history.clone(),
                running.clone(),
                next.clone(),
                ingresses.clone(),
            );
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    let n = {
                        let mut next = next.lock().expect("counter");
                        *next += 1;
                        *next
                    };
                    let operation = if n % 2 == 0 {
                        Operation::Increment {
                            counter: format!("c{}", (n / 2) % COUNTERS as i64),
                            message: n,
                        }
                    } else {
                        Operation::Add {
                            set: format!("s{}", (n / 2) % SETS as i64),
                            element: n,
                        }
                    };
                    let kind = match &operation {
                        Operation::Increment { counter, .. } => OpKind::Increment {
                            key: counter.clone(),
                        },
                        Operation::Add { element, .. } => OpKind::Add(*element),
                    };
                    let op = history.invoke(process, kind);
                    match perform(
                        &ingresses,
                        process + n as usize,
                        &format!("op-{n}"),
                        &operation,
                    ) {
                        Some(answer) => op.ok(answer.as_i64()),
                        None => op.info(),
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(3));
    let leaders = cluster.wait_for_leaders(PATIENCE);
    let mut led = BTreeMap::<u64, Vec<u32>>::new();
    for (partition, leader) in &leaders {
        led.entry(*leader).or_default().push(*partition);
    }
    let (victim, moved) = led
        .iter()
        .max_by_key(|(_, partitions)| partitions.len())
        .map(|(node, partitions)| (*node, partitions.clone()))
        .expect("a leader");
    let killed = Instant::now();
    cluster.node(victim).kill9();
    // The first success on a partition the victim led, through a surviving node.
    let survivor = ingresses[(victim % 3) as usize];
    let moved_after = poll("a moved partition to serve again", PATIENCE, || {
        let probe = (0..64).map(|n| format!("probe{n}")).find(|key| {
            let id = holdfast_types::InvocationId::new(
                &holdfast_types::Target::new("Box", "add", Some(key.clone())),
                0,
            );
            moved.contains(&id.partition(8).0)
        })?;
        let response = http(survivor, "POST", &format!("/Box/{probe}/add"), &[JSON], "1").ok()?;
        (response.status == 200).then(|| killed.elapsed())
    });
    println!(
        "killed node {victim} (leading partitions {moved:?}); a moved partition served again after {} ms",
        moved_after.as_millis()
    );
    std::thread::sleep(Duration::from_secs(3));
    cluster.node(victim).restart();
    std::thread::sleep(Duration::from_secs(3));
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }

    // Every box read through a node that stayed up, after the relayed sends drained.
    let read = |name: &str| -> Vec<i64> {
        let response =
            http(survivor, "POST", &format!("/Box/{name}/list"), &[JSON], "").expect("list");
        assert_eq!(response.status, 200, "{name}: {}", response.body);
        serde_json::from_str(&response.body).expect("a list of numbers")
    };
    let acknowledged_adds = history
        .ops()
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Add(_)) && matches!(op.outcome, Outcome::Ok(_)))
        .count();
    let elements = poll("every acknowledged send delivered", PATIENCE, || {
        let all: Vec<i64> = (0..SETS).flat_map(|s| read(&format!("s{s}"))).collect();
        (all.len() >= acknowledged_adds).then_some(all)
    });
    let summary = check_set_multiset(&history, &elements)
        .unwrap_or_else(|violations| panic!("set check failed:\n{}", violations.join("\n")));
    println!("sends: {summary:?}");
    for c in 0..COUNTERS {
        let key = format!("c{c}");
        let value = read(&key).len() as i64;
        let summary = check_counter(&history, &key, value).unwrap_or_else(|violations| {
            panic!("counter {key} check failed:\n{}", violations.join("\n"))
        });
        println!("counter {key} = {value}: {summary:?}");
    }
    assert!(
        acknowledged_adds > 50,
        "too little load: {acknowledged_adds} sends"
    );
}

/// The sum of one metric's samples on a node's `/metrics`.
fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let page = http_get(admin, "/metrics").ok()?.body;
    Some(
        page.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The partition of object `service/key` in a cluster of `partitions`.
fn partition_of(service: &str, key: &str, partitions: u32) -> u32 {
    let target = holdfast_types::Target::new(service, "any", Some(key.to_owned()));
    holdfast_types::InvocationId::new(&target, 0)
        .partition(partitions)
        .0
}

#[test]
fn an_isolated_leader_stops_its_attempts_and_acknowledges_nothing_while_the_others_go_on() {
    let cluster = Cluster::start(ClusterOptions {
        proxied: true,
        ..ClusterOptions::default()
    });
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = register_everywhere(&cluster, 1);
    let partition = partition_of("Slow", "held", 8);
    let leader = cluster.wait_for_leaders(PATIENCE)[&partition];
    // A long attempt runs on the leader of its partition.
    let accepted = http(
        cluster.node(leader).ingress(),
        "POST",
        "/Slow/held/hold/send",
        &[JSON],
        "20000",
    )
    .expect("send");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.invocation_id();
    endpoint
        .log
        .wait_until("the first attempt", PATIENCE, |lines| {
            lines.iter().any(|l| *l == format!("hold {id} 1"))
        });
    let admin = cluster.node(leader).admin();
    assert!(metric(admin, "holdfast_partition_running_attempts").unwrap_or(0.0) >= 1.0);

    cluster.isolate(leader);
    let isolated = Instant::now();
    // Within its lease (an election timeout) the cut-off leader stops the attempt it runs.
    poll("the isolated leader to stop its attempts", PATIENCE, || {
        (metric(admin, "holdfast_partition_running_attempts")? == 0.0).then_some(())
    });
    let stopped = isolated.elapsed();
    // The others elect a new leader, which starts the invocation's next attempt.
    let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let successor = poll("a new leader among the others", PATIENCE, || {
        let view = cluster.view(others[0]).ok()?;
        let seen = view.partitions.iter().find(|p| p.partition == partition)?;
        seen.leader.filter(|l| *l != leader)
    });
    endpoint
        .log
        .wait_until("the next attempt, on the new leader", PATIENCE, |lines| {
            lines.iter().any(|l| *l == format!("hold {id} 2"))
        });
    println!(
        "isolated node {leader}: attempts stopped after {} ms; node {successor} leads partition {partition}",
        stopped.as_millis()
    );
    // The isolated node acknowledges nothing: a call through it is answered 503 once its
    // patience with the unreachable leaders runs out.
    let asked = Instant::now();
    let through_isolated = http(
        cluster.node(leader).ingress(),
        "POST",
        "/Box/isolated/add",
        &[JSON, ("idempotency-key", "while-isolated")],
        "1",
    );
    let response = through_isolated.unwrap_or_else(|e| {
        let log = cluster.node(leader).log().lines();
        let log: Vec<&String> = log
            .iter()
            .filter(|l| !l.contains("openraft") && !l.contains("lane=raft"))
            .collect();
        let tail = &log[log.len().saturating_sub(60)..];
        panic!(
            "the isolated node did not answer ({e}):\n{}",
            tail.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    println!(
        "the isolated node answered {} after {} ms",
        response.status,
        asked.elapsed().as_millis()
    );
    assert_eq!(response.status, 503, "while isolated: {}", response.body);
    // The others go on.
    let elsewhere = http(
        cluster.node(others[0]).ingress(),
        "POST",
        "/Box/elsewhere/add",
        &[JSON],
        "1",
    )
    .expect("call");
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);

    cluster.heal();
    // After healing, the refused call retried with its key takes effect exactly once, and the
    // held invocation completes.
    let retried = poll("the retried call", PATIENCE, || {
        let response = http(
            cluster.node(leader).ingress(),
            "POST",
            "/Box/isolated/add",
            &[JSON, ("idempotency-key", "while-isolated")],
            "1",
        )
        .ok()?;
        (response.status == 200).then_some(response.body)
    });
    assert_eq!(retried, "1");
    let output = poll("the held invocation's result", PATIENCE, || {
        let response = http_get(
            cluster.node(leader).ingress(),
            &format!("/restate/invocation/{id}/output"),
        )
        .ok()?;
        (response.status == 200).then_some(response.body)
    });
    assert_eq!(output, "\"held\"");
}

#[test]
fn a_node_down_past_the_purged_log_catches_up_by_snapshot_and_can_lead() {
    // Snapshots every 100 entries, keeping 50: a node down for a few hundred entries finds the
    // log it missed purged on the others and must be sent a snapshot.
    let cluster = Cluster::start(ClusterOptions {
        extra_toml: "snapshot_interval = 100".into(),
        log_filter: "warn,holdfast_raft_store=info".into(),
        ..ClusterOptions::default()
    });
    cluster.wait_for_leaders(PATIENCE);
    let _endpoint = register_everywhere(&cluster, 1);
    let add = |node: u64, counter: &str| -> i64 {
        poll("an add to be acknowledged", PATIENCE, || {
            let response = http(
                cluster.node(node).ingress(),
                "POST",
                &format!("/Box/{counter}/add"),
                &[JSON],
                "1",
            )
            .ok()?;
            (response.status == 200).then(|| response.body.parse().ok())?
        })
    };
    let counters: Vec<String> = (0..8).map(|n| format!("snap{n}")).collect();
    for counter in &counters {
        assert_eq!(add(1, counter), 1);
    }
    // Where node 3 stands when it goes down.
    let left_at: BTreeMap<u32, u64> = cluster
        .view(3)
        .expect("node 3's view")
        .partitions
        .iter()
        .filter_map(|p| {
            let own = p.replicas.iter().find(|r| r.node == 3)?.applied_index?;
            Some((p.partition, own))
        })
        .collect();
    cluster.node(3).kill9();
    // Each add is several log entries (invoke, journal, completion) in its partition.
    for round in 2..=40 {
        for counter in &counters {
            assert_eq!(add(1 + (round % 2) as u64, counter), round);
        }
    }
    // Snapshots are built in the background from flushed state: wait until a leader purged its
    // log past where node 3 stopped, so node 3 cannot catch up from the log alone. A leader
    // postpones a purge while a replication to node 3 has the range in flight and retries it
    // only on further replication progress: keep writing (to other keys) until it has purged.
    let nudges = std::cell::Cell::new(0u32);
    poll("a leader to purge past node 3's position", PATIENCE, || {
        let nudge = nudges.get();
        nudges.set(nudge + 1);
        add(1, &format!("nudge{}", nudge % 16));
        [1u64, 2].iter().find_map(|node| {
            let view = cluster.view(*node).ok()?;
            view.partitions.iter().find_map(|p| {
                let led_here = p.leader == Some(*node);
                let purged = p.purged_index?;
                (led_here && purged > left_at.get(&p.partition).copied().unwrap_or(0)).then_some(())
            })
        })
    });
    let purged_before = Instant::now();
    cluster.node(3).restart();
    // What the leaders had applied when node 3 came back: node 3 must reach it everywhere.
    let target: BTreeMap<u32, u64> = [1u64, 2]
        .iter()
        .flat_map(|node| cluster.view(*node).expect("view").partitions)
        .filter_map(|p| {
            let leader = p.leader?;
            let applied = p
                .replicas
                .iter()
                .find(|r| r.node == leader)?
                .applied_index?;
            Some((p.partition, applied))
        })
        .collect();
    assert_eq!(target.len(), 8, "{target:?}");
    poll("node 3 to catch up on every partition", PATIENCE, || {
        let view = cluster.view(3).ok()?;
        let behind: Vec<(u32, Option<u64>, u64)> = view
            .partitions
            .iter()
            .filter_map(|p| {
                let own = p
                    .replicas
                    .iter()
                    .find(|r| r.node == 3)
                    .and_then(|r| r.applied_index);
                let want = target[&p.partition];
                own.is_none_or(|applied| applied < want)
                    .then_some((p.partition, own, want))
            })
            .collect();
        if !behind.is_empty() {
            eprintln!("behind: {behind:?}");
        }
        behind.is_empty().then_some(())
    });
    println!(
        "node 3 caught up in {} ms",
        purged_before.elapsed().as_millis()
    );
    assert!(
        cluster
            .node(3)
            .log()
            .text()
            .contains("installed a snapshot sent by the leader"),
        "node 3 caught up without a snapshot: the log was not purged"
    );
    // Node 3's state is whole: with node 1 gone, nodes 2 and 3 carry every partition (node 3
    // leading some), and every count goes on from where it was.
    cluster.node(1).kill9();
    for counter in &counters {
        assert_eq!(add(3, counter), 41, "{counter} after node 1 went down");
    }
}

#[test]
fn leaders_return_to_their_preferred_replicas_after_a_node_comes_back() {
    let cluster = Cluster::start(ClusterOptions::default());
    // Placement: partition p prefers node p mod 3 + 1.
    let preferred: BTreeMap<u32, u64> = (0..8).map(|p| (p, u64::from(p % 3) + 1)).collect();
    let balanced = |what: &str| {
        poll(what, PATIENCE, || {
            let leaders = cluster.wait_for_leaders(PATIENCE);
            (leaders == preferred).then_some(())
        })
    };
    balanced("leaders on their preferred replicas");
    cluster.node(1).kill9();
    poll("node 1's partitions to move", PATIENCE, || {
        let leaders = cluster.leaders();
        let moved = (0..8u32)
            .filter(|p| p % 3 == 0)
            .all(|p| leaders.get(&p).is_some_and(|l| *l != 1));
        moved.then_some(())
    });
    let back = Instant::now();
    cluster.node(1).restart();
    balanced("node 1 to lead its preferred partitions again");
    println!(
        "leadership spread again {} ms after node 1 restarted",
        back.elapsed().as_millis()
    );
}

#[test]
fn six_nodes_with_three_replicas_per_partition_serve_everything_from_every_node() {
    let cluster = Cluster::start(ClusterOptions {
        nodes: 6,
        partitions: 6,
        replication_factor: 3,
        ..ClusterOptions::default()
    });
    cluster.wait_for_leaders(PATIENCE);
    // Node 6 is not one of the metadata log's five voters: it follows as a learner, and
    // forwards the registration to the leader.
    let _endpoint = register_everywhere(&cluster, 6);
    // Each node holds three of the six partitions; it forwards the others' requests.
    for node in cluster.nodes() {
        let view = cluster.view(node.id()).expect("view");
        let held = view
            .partitions
            .iter()
            .filter(|p| !p.replicas.is_empty())
            .count();
        assert_eq!(held, 3, "node {}: {view:?}", node.id());
    }
    for n in 0..6 {
        for (i, node) in cluster.nodes().iter().enumerate() {
            let response = http(
                node.ingress(),
                "POST",
                &format!("/Box/wide{n}/add"),
                &[JSON],
                &json!(format!("m{i}")).to_string(),
            )
            .expect("call");
            assert_eq!(
                response.status,
                200,
                "node {}: {}",
                node.id(),
                response.body
            );
            assert_eq!(
                response.body,
                (i + 1).to_string(),
                "node {}, box wide{n}",
                node.id()
            );
        }
    }
}

/// Runs one statement through psql on a node's PostgreSQL-wire port `sql`: whether it
/// succeeded, its rows unaligned (`-At`), and what it printed on stderr (SQLSTATE included).
fn psql(sql: SocketAddr, statement: &str) -> (bool, String, String) {
    let extra = [
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
    ];
    let (ok, out, err) = holdfast_e2e::psql(sql, &[statement], &extra);
    (ok, out.trim().to_owned(), err)
}

#[test]
fn sql_on_any_node_reads_the_partitions_it_holds_no_replica_of() {
    const PARTITIONS: u32 = 8;
    let began = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        replication_factor: 1,
        ..ClusterOptions::default()
    });
    cluster.wait_for_leaders(PATIENCE);
    let _endpoint = register_everywhere(&cluster, 1);
    // One replica per partition: each node holds only some of the eight.
    let held: BTreeMap<u64, Vec<u32>> = cluster
        .nodes()
        .iter()
        .map(|node| {
            let view = cluster.view(node.id()).expect("view");
            let held = view
                .partitions
                .iter()
                .filter(|p| p.replicas.iter().any(|r| r.node == node.id()))
                .map(|p| p.partition)
                .collect::<Vec<_>>();
            (node.id(), held)
        })
        .collect();
    println!("partitions held per node: {held:?}");
    assert!(
        held.values().all(|p| !p.is_empty() && p.len() < 8),
        "{held:?}"
    );
    // Three boxes per partition, each written once through a node in turn.
    let mut boxes: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in 0.. {
        if boxes.len() == PARTITIONS as usize && boxes.values().all(|b| b.len() >= 3) {
            break;
        }
        let key = format!("remote{n}");
        let keys = boxes
            .entry(partition_of("Box", &key, PARTITIONS))
            .or_default();
        if keys.len() < 3 {
            keys.push(key);
        }
    }
    let keys: Vec<(u32, &String)> = boxes
        .iter()
        .flat_map(|(partition, keys)| keys.iter().map(move |key| (*partition, key)))
        .collect();
    for (i, (_, key)) in keys.iter().enumerate() {
        let response = http(
            node_ingress(&cluster, 1 + i as u64 % 3),
            "POST",
            &format!("/Box/{key}/add"),
            &[JSON],
            &json!("m").to_string(),
        )
        .expect("call");
        assert_eq!(response.status, 200, "{key}: {}", response.body);
    }
    let total = keys.len();
    let written = began.elapsed();

    // Every node sees every row, through POST /query and psql.
    let queried = Instant::now();
    for node in cluster.nodes() {
        let id = node.id();
        for (table, filter) in [
            ("sys_invocation", "target_service_name = 'Box'"),
            ("state", "service_name = 'Box'"),
        ] {
            let sql = format!("SELECT count(*) AS n FROM {table} WHERE {filter}");
            let rows = sql_rows(node.admin(), &sql);
            assert_eq!(rows[0]["n"], total, "node {id}: {sql}");
            let (ok, out, err) = psql(node.sql(), &sql);
            assert!(ok, "node {id}, psql: {sql}: {err}");
            assert_eq!(out, total.to_string(), "node {id}, psql: {sql}");
        }
        // A filter on the object is pushed down, to the node holding its partition if not here.
        for (partition, key) in &keys {
            let sql = format!(
                "SELECT service_key, value_utf8 FROM state \
                 WHERE service_name = 'Box' AND service_key = '{key}'"
            );
            let rows = sql_rows(node.admin(), &sql);
            assert_eq!(rows.len(), 1, "node {id}: {sql}: {rows:?}");
            assert_eq!(rows[0]["value_utf8"], r#"["m"]"#, "node {id}: {sql}");
            let elsewhere = !held[&id].contains(partition);
            let plan = sql_rows(node.admin(), &format!("EXPLAIN {sql}"))
                .iter()
                .map(|row| row["plan"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(
                plan.contains(&format!("remote=[{partition}]")),
                elsewhere,
                "node {id}, partition {partition}:\n{plan}"
            );
        }
        // The whole table, every column, through psql: the same rows from every node.
        let (ok, out, err) = psql(
            node.sql(),
            "SELECT service_key, key, value_utf8 FROM state WHERE service_name = 'Box' \
             ORDER BY service_key",
        );
        assert!(ok, "node {id}: {err}");
        assert_eq!(out.lines().count(), total, "node {id}:\n{out}");
        assert!(
            out.lines().all(|line| line.ends_with(r#"|messages|["m"]"#)),
            "node {id}:\n{out}"
        );
    }
    let read = queried.elapsed();

    // Node 3 goes down: the partitions only it held fail every query that needs them, naming
    // one of them, instead of answering fewer rows.
    let gone = &held[&3];
    cluster.node(3).kill9();
    let failed = Instant::now();
    for id in [1u64, 2] {
        let node = cluster.node(id);
        let response = holdfast_e2e::http_json(
            node.admin(),
            "POST",
            "/query",
            &json!({ "query": "SELECT count(*) AS n FROM state WHERE service_name = 'Box'" }),
        )
        .expect("query");
        println!(
            "node {id}, POST /query with node 3 down: {} {}",
            response.status, response.body
        );
        assert_eq!(response.status, 503, "node {id}: {}", response.body);
        let names_one = |text: &str| {
            gone.iter()
                .any(|p| text.contains(&format!("partition {p} is unavailable")))
        };
        assert!(names_one(&response.body), "node {id}: {}", response.body);
        let (ok, out, err) = psql(node.sql(), "SELECT count(*) FROM sys_invocation");
        println!("node {id}, psql with node 3 down: {}", err.trim());
        assert!(!ok, "node {id} answered {out} without node 3's partitions");
        assert!(names_one(&err), "node {id}: {err}");
        // What the live nodes hold still answers.
        let (partition, key) = keys
            .iter()
            .find(|(partition, _)| !gone.contains(partition))
            .expect("a partition on a live node");
        let rows = sql_rows(
            node.admin(),
            &format!(
                "SELECT value_utf8 FROM state WHERE service_name = 'Box' AND service_key = '{key}'"
            ),
        );
        assert_eq!(rows.len(), 1, "node {id}, partition {partition}: {rows:?}");
    }
    println!(
        "{total} boxes over {PARTITIONS} partitions: written in {} ms (cluster start included), \
         read from every node in {} ms, failures reported in {} ms",
        written.as_millis(),
        read.as_millis(),
        failed.elapsed().as_millis()
    );
}
