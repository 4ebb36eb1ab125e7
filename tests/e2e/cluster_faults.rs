//! Faults a three-node cluster must ride out: real `holdfast` processes on 127.0.0.1 replicating
//! every partition (RF 3), the Node fixture `tests/e2e/fixtures/leadership-services.mjs`, and a
//! load of client threads whose history is checked Jepsen-style at the end (every acknowledged
//! relayed send present exactly once; counters linearizable and without a message applied twice).
//!
//! - `a_rolling_restart_under_load_fails_no_acknowledged_operation`: SIGTERM, restart and
//!   catch-up of each node in turn under 16 clients. Every node exits cleanly, the others keep
//!   acknowledging operations while it is down, a restarted node catches up (every partition's
//!   leader reports it within a few entries) before the next one goes, no operation is refused
//!   or left failed, and the history checks pass.
//! - `a_paused_leader_is_fenced_when_it_resumes`: SIGSTOP of the node leading the most
//!   partitions for 5 s under load. The others elect leaders at higher terms for its partitions
//!   while it is frozen; after SIGCONT it steps down (exactly one node claims each partition,
//!   and its log says it no longer leads at least one partition it led), the requests it held
//!   through the pause are answered, and the history checks pass: nothing it did late took
//!   effect twice or was acknowledged without being applied.
//! - `the_cluster_forms_with_one_node_down_at_first_boot`: nodes 1 and 2 boot a cluster whose
//!   node 3 never ran. The partitions node 3 would initialize are initialized by the others
//!   after their grace period (their logs say so), so every partition gets a leader among nodes
//!   1 and 2; calls and relayed sends through them succeed. Node 3 then starts on an empty data
//!   dir, applies every partition's log up to where the leaders were, reads the same state
//!   through its own ingress and serves new calls with the right counts.

use holdfast_e2e::cluster::{Cluster, ClusterOptions, ClusterView};
use holdfast_e2e::history::{History, OpKind, Outcome, Summary, check_counter, check_set_multiset};
use holdfast_e2e::{ServiceProcess, free_port, http, http_get, poll, register};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/e2e/fixtures/leadership-services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(60);

/// The tests that put a cluster under load run one at a time: each runs three or four kernels and
/// a client load on the machine's cores, and two at once miss the clusters' 250 ms RPC deadlines
/// so often that leadership cannot move where placement wants it.
static UNDER_LOAD: Mutex<()> = Mutex::new(());

/// Waits for the other tests under load to finish; hold the guard for the whole test.
fn one_under_load() -> std::sync::MutexGuard<'static, ()> {
    UNDER_LOAD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
const JSON: (&str, &str) = ("content-type", "application/json");
/// How long a client retries one operation (on every node in turn) before calling it unknown.
const OPERATION_DEADLINE: Duration = Duration::from_secs(30);
/// Counters (`Box/c{i}`, called) and sets (`Box/s{i}`, reached by relayed sends) of the load.
const COUNTERS: i64 = 4;
const SETS: i64 = 8;
/// How many entries behind the leader a restarted replica may be and count as caught up: under
/// load the leader is always a batch or two ahead of what a follower has confirmed.
const CAUGHT_UP_LAG: u64 = 32;
/// The nodes' `HOLDFAST_LOG`: warnings, the partitions' leadership changes ("elected leader",
/// "no longer leading", hand-backs) and first-boot initializations, which the tests read.
const LOG_FILTER: &str = "warn,holdfast_partition=info,holdfast_raft_group=info";

/// A cluster that, when dropped while the test panics, prints the end of every started node's
/// log (the harness's own panics name only what was awaited).
struct Logged(Cluster);

impl std::ops::Deref for Logged {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in self.0.nodes().iter().filter(|n| n.has_started()) {
            let lines = node.log().lines();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- node {} log (last {} lines):", node.id(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// The default three-node cluster with leaders elected, the fixture registered through node 2
/// (not the metadata log's leader) and 16 clients calling every node for 2 s already.
fn under_load() -> (Logged, ServiceProcess, Load) {
    let cluster = Logged(Cluster::start(ClusterOptions {
        log_filter: LOG_FILTER.into(),
        ..ClusterOptions::default()
    }));
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = fixture(&cluster, 2);
    let load = Load::start(ingresses(&cluster, &[1, 2, 3]), 16);
    std::thread::sleep(Duration::from_secs(2));
    (cluster, endpoint, load)
}

/// Starts the fixture, registers it through node `via` and waits until every started node
/// knows its services.
fn fixture(cluster: &Cluster, via: u64) -> ServiceProcess {
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(cluster.node(via).admin(), &endpoint.uri);
    for node in cluster.nodes().iter().filter(|n| n.has_started()) {
        poll("the deployment on every started node", PATIENCE, || {
            let services = http_get(node.admin(), "/services").ok()?;
            services.body.contains("\"Box\"").then_some(())
        });
    }
    endpoint
}

/// The `(node id, ingress)` pairs of `ids`.
fn ingresses(cluster: &Cluster, ids: &[u64]) -> Vec<(u64, SocketAddr)> {
    ids.iter()
        .map(|id| (*id, cluster.node(*id).ingress()))
        .collect()
}

/// One load operation: what the history records and the HTTP request that performs it.
struct Request {
    kind: OpKind,
    path: String,
    body: String,
    /// The status that acknowledges it.
    accepted: u16,
}

impl Request {
    /// Operation `n`: even ones increment a counter with a call, odd ones add `n` to a set with
    /// a one-way send through the relay (whose partition is usually not the set's).
    fn numbered(n: i64) -> Request {
        if n % 2 == 0 {
            let key = format!("c{}", (n / 2) % COUNTERS);
            Request {
                path: format!("/Box/{key}/add"),
                body: n.to_string(),
                accepted: 200,
                kind: OpKind::Increment { key },
            }
        } else {
            Request {
                path: "/Relay/forward/send".to_owned(),
                body: json!({ "box": format!("s{}", (n / 2) % SETS), "message": n }).to_string(),
                accepted: 202,
                kind: OpKind::Add(n),
            }
        }
    }
}

/// One HTTP attempt of a load operation, as the client saw it.
#[derive(Clone, Debug)]
struct Attempt {
    node: u64,
    sent: Instant,
    answered: Instant,
    /// The status, or `None` when the connection failed or broke.
    status: Option<u16>,
    /// The start of the body (or the error) when it was not acknowledged.
    detail: String,
}

/// How a load operation ended.
enum Ending {
    Acknowledged(Option<i64>),
    /// A status that is neither an acknowledgement nor worth retrying (a 4xx); `definite` when
    /// no earlier attempt could have been applied.
    Refused {
        reason: String,
        definite: bool,
    },
    /// Every attempt until the deadline failed or answered 5xx.
    Unknown,
}

/// Sends `request` with idempotency key `key` to the nodes in turn from `first` until it is
/// acknowledged, refused or the deadline passes; records every attempt.
fn perform(
    ingresses: &[(u64, SocketAddr)],
    first: usize,
    key: &str,
    request: &Request,
    attempts: &Mutex<Vec<Attempt>>,
) -> Ending {
    let deadline = Instant::now() + OPERATION_DEADLINE;
    let headers = [JSON, ("idempotency-key", key)];
    for turn in first.. {
        if Instant::now() >= deadline {
            break;
        }
        let (node, ingress) = ingresses[turn % ingresses.len()];
        let sent = Instant::now();
        let answer = http(ingress, "POST", &request.path, &headers, &request.body);
        let (status, detail) = match &answer {
            Ok(r) if r.status == request.accepted => (Some(r.status), String::new()),
            Ok(r) => (Some(r.status), r.body.chars().take(160).collect()),
            Err(e) => (None, e.to_string()),
        };
        attempts.lock().expect("attempts").push(Attempt {
            node,
            sent,
            answered: Instant::now(),
            status,
            detail,
        });
        match answer {
            Ok(r) if r.status == request.accepted => {
                return Ending::Acknowledged(r.body.trim().parse().ok());
            }
            // 408 and 429 say the request was not taken up: worth another try. A node resumed
            // from a freeze of 5 s answers 408 to the connections it had accepted but not yet
            // read from: the HTTP server checks their request-head deadline before reading.
            Ok(r) if (400..500).contains(&r.status) && !matches!(r.status, 408 | 429) => {
                return Ending::Refused {
                    reason: format!(
                        "{} {key} via node {node}: {} {}",
                        request.path, r.status, r.body
                    ),
                    definite: turn == first,
                };
            }
            // 5xx, 408, 429, a malformed answer or a broken connection: try the next node.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Ending::Unknown
}

/// Client threads running numbered operations one after another (each retried on every node
/// with its idempotency key) until stopped.
struct Load {
    history: History,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    refusals: Arc<Mutex<Vec<String>>>,
    running: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(ingresses: Vec<(u64, SocketAddr)>, clients: usize) -> Load {
        let history = History::new();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let next = Arc::new(AtomicI64::new(0));
        let clients = (0..clients)
            .map(|process| {
                let history = history.clone();
                let (attempts, refusals) = (attempts.clone(), refusals.clone());
                let (running, next, ingresses) = (running.clone(), next.clone(), ingresses.clone());
                std::thread::spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let request = Request::numbered(n);
                        let op = history.invoke(process, request.kind.clone());
                        let first = process + n as usize;
                        match perform(&ingresses, first, &format!("op-{n}"), &request, &attempts) {
                            Ending::Acknowledged(value) => op.ok(value),
                            Ending::Refused { reason, definite } => {
                                refusals.lock().expect("refusals").push(reason);
                                if definite { op.fail() } else { op.info() }
                            }
                            Ending::Unknown => op.info(),
                        }
                    }
                })
            })
            .collect();
        Load {
            history,
            attempts,
            refusals,
            running,
            clients,
        }
    }

    /// Stops the clients after their current operation and returns what they recorded.
    fn stop(mut self) -> Finished {
        self.running.store(false, Ordering::Relaxed);
        for client in std::mem::take(&mut self.clients) {
            client.join().expect("a client thread panicked");
        }
        let attempts = self.attempts.lock().expect("attempts").clone();
        let refusals = self.refusals.lock().expect("refusals").clone();
        Finished {
            history: self.history.clone(),
            attempts,
            refusals,
        }
    }
}

impl Drop for Load {
    /// A test that panics mid-load leaves its clients to end with their current operation
    /// instead of calling whatever takes the cluster's ports next.
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// What a stopped [`Load`] recorded.
struct Finished {
    history: History,
    attempts: Vec<Attempt>,
    refusals: Vec<String>,
}

/// The outcome counts of a checked history.
#[derive(Debug)]
struct Verdict {
    ok: usize,
    fail: usize,
    info: usize,
    sends: Summary,
}

impl Finished {
    /// Operations acknowledged between `from` and `to` (by completion time).
    fn acknowledged_between(&self, from: Instant, to: Instant) -> usize {
        self.history
            .ops()
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
            .filter(|op| op.completed.is_some_and(|done| done >= from && done <= to))
            .count()
    }

    /// Reads every box of the load through `reader` (waiting for the acknowledged relayed
    /// sends to land) and checks the history against it, panicking with the violations. Also
    /// asserts that no operation was refused or failed, and that at least `min_sends` relayed
    /// sends were acknowledged (the load was real).
    fn check(&self, reader: SocketAddr, min_sends: usize) -> Verdict {
        let ops = self.history.ops();
        let acknowledged_adds = ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Add(_)) && matches!(op.outcome, Outcome::Ok(_)))
            .count();
        // Sends may still be on their way through the outboxes: wait until as many elements as
        // acknowledged sends are present, or the patience is out (the check then names what is
        // missing).
        let deadline = Instant::now() + PATIENCE;
        let elements = loop {
            let all: Vec<i64> = (0..SETS)
                .flat_map(|s| list(reader, &format!("s{s}")))
                .collect();
            if all.len() >= acknowledged_adds || Instant::now() >= deadline {
                break all;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let sends = check_set_multiset(&self.history, &elements)
            .unwrap_or_else(|violations| panic!("set check failed:\n{}", violations.join("\n")));
        for c in 0..COUNTERS {
            let key = format!("c{c}");
            let messages = list(reader, &key);
            let distinct: BTreeSet<i64> = messages.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                messages.len(),
                "counter {key} applied a message twice: {messages:?}"
            );
            let summary = check_counter(&self.history, &key, messages.len() as i64).unwrap_or_else(
                |violations| panic!("counter {key} check failed:\n{}", violations.join("\n")),
            );
            println!("counter {key} = {}: {summary:?}", messages.len());
        }
        println!("relayed sends: {sends:?}");
        let count =
            |outcome: fn(&Outcome) -> bool| ops.iter().filter(|op| outcome(&op.outcome)).count();
        let verdict = Verdict {
            ok: count(|o| matches!(o, Outcome::Ok(_))),
            fail: count(|o| *o == Outcome::Fail),
            info: count(|o| *o == Outcome::Info),
            sends,
        };
        println!(
            "{} operations in {} attempts: {} ok, {} fail, {} info",
            ops.len(),
            self.attempts.len(),
            verdict.ok,
            verdict.fail,
            verdict.info
        );
        assert!(
            self.refusals.is_empty(),
            "operations were refused:\n{}",
            self.refusals.join("\n")
        );
        assert_eq!(verdict.fail, 0, "operations failed");
        assert!(
            verdict.sends.ok >= min_sends,
            "too little load: {} relayed sends acknowledged",
            verdict.sends.ok
        );
        verdict
    }
}

/// The messages in `Box/{name}`, read through `ingress` (retried while the cluster answers
/// 5xx or not at all).
fn list(ingress: SocketAddr, name: &str) -> Vec<i64> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match http(ingress, "POST", &format!("/Box/{name}/list"), &[JSON], "") {
            Ok(r) if r.status == 200 => {
                return serde_json::from_str(&r.body).expect("a list of numbers");
            }
            Ok(r) if r.status >= 500 => format!("{} {}", r.status, r.body),
            Ok(r) => panic!("list {name}: {} {}", r.status, r.body),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "no read of box {name} through {ingress} within {PATIENCE:?}; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Node `id`'s own replica of `partition` in `view`: its applied index.
fn own_applied(view: &ClusterView, id: u64, partition: u32) -> Option<u64> {
    let seen = view.partitions.iter().find(|p| p.partition == partition)?;
    seen.replicas.iter().find(|r| r.node == id)?.applied_index
}

/// Waits until node `id` is a full member again: its `/health` is "ok" (every partition and
/// the metadata log have a leader), and every partition's leader reports its replica within
/// [`CAUGHT_UP_LAG`] entries.
fn wait_caught_up(cluster: &Cluster, id: u64) {
    poll(&format!("node {id} to catch up"), PATIENCE, || {
        let health = http_get(cluster.node(id).admin(), "/health").ok()?;
        if health.status != 200 || health.json()["status"] != "ok" {
            return None;
        }
        let leaders = cluster.leaders();
        if leaders.len() != cluster.options().partitions as usize {
            return None;
        }
        let leading: BTreeSet<u64> = leaders.values().copied().collect();
        let views = leading
            .into_iter()
            .map(|leader| Some((leader, cluster.view(leader).ok()?)))
            .collect::<Option<BTreeMap<u64, ClusterView>>>()?;
        for (partition, leader) in leaders {
            let seen = views[&leader]
                .partitions
                .iter()
                .find(|p| p.partition == partition)?;
            let lag = seen.replicas.iter().find(|r| r.node == id)?.lag?;
            if seen.leader != Some(leader) || lag > CAUGHT_UP_LAG {
                return None;
            }
        }
        Some(())
    });
}

/// Per partition, the nodes that claim to lead it in their own `/cluster` view (every live
/// node that answers).
fn self_claims(cluster: &Cluster) -> BTreeMap<u32, BTreeSet<u64>> {
    let mut claims: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for node in cluster.nodes().iter().filter(|n| n.is_live()) {
        let Ok(view) = cluster.view(node.id()) else {
            continue;
        };
        for partition in view.partitions {
            if partition.leader == Some(node.id()) {
                claims
                    .entry(partition.partition)
                    .or_default()
                    .insert(node.id());
            }
        }
    }
    claims
}

/// The node leading the most partitions once every partition has a leader, and those
/// partitions.
fn busiest_leader(cluster: &Cluster) -> (u64, Vec<u32>) {
    let leaders = cluster.wait_for_leaders(PATIENCE);
    cluster
        .nodes()
        .iter()
        .map(|node| {
            let led = leaders.iter().filter(|(_, l)| **l == node.id());
            (node.id(), led.map(|(p, _)| *p).collect::<Vec<u32>>())
        })
        .max_by_key(|(_, led)| led.len())
        .expect("a cluster has nodes")
}

#[test]
fn a_rolling_restart_under_load_fails_no_acknowledged_operation() {
    let _turn = one_under_load();
    let (cluster, _endpoint, load) = under_load();
    let mut outages = Vec::new();
    for id in 1..=3 {
        let node = cluster.node(id);
        let down = Instant::now();
        let status = node.terminate();
        assert!(
            status.success(),
            "node {id} exited with {status} on SIGTERM"
        );
        let stopped = down.elapsed();
        // Down long enough for the clients to find it gone and the others to take over.
        std::thread::sleep(Duration::from_secs(1));
        node.restart();
        let restarted = down.elapsed();
        wait_caught_up(&cluster, id);
        let up = Instant::now();
        println!(
            "node {id}: stopped in {} ms, answering again after {} ms, caught up after {} ms",
            stopped.as_millis(),
            restarted.as_millis(),
            (up - down).as_millis()
        );
        outages.push((id, down, up));
    }
    std::thread::sleep(Duration::from_secs(2));
    let finished = load.stop();

    // The others kept acknowledging operations through each node's outage.
    for (id, down, up) in &outages {
        let served = finished.acknowledged_between(*down, *up);
        println!("operations acknowledged while node {id} was down or catching up: {served}");
        assert!(served > 0, "nothing acknowledged while node {id} restarted");
    }
    // No operation refused or failed (asserted by the check); the unknown ones are counted.
    let verdict = finished.check(cluster.node(1).ingress(), 50);
    println!("rolling restart: {} operations ended info", verdict.info);
}

/// The time of day of a log line's leading RFC 3339 timestamp, in seconds.
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[test]
fn leadership_returns_under_load_at_the_first_election() {
    let _turn = one_under_load();
    let (cluster, _endpoint, load) = under_load();
    // Partition p prefers node p mod 3 + 1: node 1 prefers these.
    let preferring_1: Vec<u32> = (0..cluster.options().partitions)
        .filter(|p| p % 3 == 0)
        .collect();
    cluster.node(1).kill9();
    poll("node 1's partitions to move", PATIENCE, || {
        let leaders = cluster.leaders();
        preferring_1
            .iter()
            .all(|p| leaders.get(p).is_some_and(|l| *l != 1))
            .then_some(())
    });
    cluster.node(1).restart();
    // Once the interim leaders have led a while and node 1 caught up, each hands its partition
    // back under load. Proposals wait until node 1 holds the whole log, so its first election
    // wins: no second hand-back, and no leader-less second or more while the old leader, whose
    // vote a candidate behind its last entry does not get, stands again.
    poll("node 1 to lead its partitions again", PATIENCE, || {
        let leaders = cluster.leaders();
        preferring_1
            .iter()
            .all(|p| leaders.get(p) == Some(&1))
            .then_some(())
    });
    for partition in &preferring_1 {
        let line =
            format!("handing leadership back to the preferred replica partition={partition} to=1");
        let handbacks: usize = [2, 3]
            .iter()
            .map(|id| {
                cluster
                    .node(*id)
                    .log()
                    .lines()
                    .iter()
                    .filter(|l| l.contains(&line))
                    .count()
            })
            .sum();
        assert_eq!(
            handbacks, 1,
            "partition {partition} was handed back to node 1 {handbacks} times"
        );
        let handed = [2, 3]
            .iter()
            .flat_map(|id| cluster.node(*id).log().lines())
            .find(|l| l.contains(&line));
        let elected = format!("elected leader; catching up partition={partition} ");
        let won = cluster
            .node(1)
            .log()
            .lines()
            .into_iter()
            .rfind(|l| l.contains(&elected));
        if let (Some(at), Some(won)) = (
            handed.as_deref().and_then(seconds_of_day),
            won.as_deref().and_then(seconds_of_day),
        ) {
            println!(
                "partition {partition}: node 1 elected {:.0} ms after the hand-back began",
                (won - at) * 1000.0
            );
        }
    }
    let finished = load.stop();
    finished.check(cluster.node(2).ingress(), 20);
}

#[test]
fn a_paused_leader_is_fenced_when_it_resumes() {
    let _turn = one_under_load();
    let (cluster, _endpoint, load) = under_load();

    let (victim, victim_led) = busiest_leader(&cluster);
    let terms_before: BTreeMap<u32, u64> = cluster
        .view(victim)
        .expect("GET /cluster on the victim")
        .partitions
        .iter()
        .map(|p| (p.partition, p.term))
        .collect();
    let paused = Instant::now();
    cluster.node(victim).stop_signal();

    // While it is frozen, the others elect leaders at higher terms for every partition it led.
    let others: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
    poll(
        "new leaders for the frozen node's partitions",
        PATIENCE,
        || {
            let leaders = cluster.leaders();
            victim_led
                .iter()
                .all(|p| leaders.get(p).is_some_and(|l| *l != victim))
                .then_some(())
        },
    );
    let elected = paused.elapsed();
    let views: Vec<ClusterView> = others
        .iter()
        .map(|id| cluster.view(*id).expect("GET /cluster"))
        .collect();
    for partition in &victim_led {
        let term = views
            .iter()
            .filter_map(|v| v.partitions.iter().find(|p| p.partition == *partition))
            .map(|p| p.term)
            .max()
            .unwrap_or(0);
        assert!(
            term > terms_before[partition],
            "partition {partition} has a new leader at term {term}, not above {}",
            terms_before[partition]
        );
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(paused.elapsed()));
    // Nothing is logged while frozen: what follows this mark it logged after the resume.
    let mark = cluster.node(victim).log().lines().len();
    cluster.node(victim).cont_signal();
    let resumed = Instant::now();

    // It learns of the higher terms and steps down: each partition is claimed by exactly one
    // node, the one every live node confirms.
    std::thread::sleep(Duration::from_secs(1));
    let fenced = poll(
        "one leader per partition after the resume",
        PATIENCE,
        || {
            let leaders = cluster.wait_for_leaders(PATIENCE);
            let claims = self_claims(&cluster);
            leaders
                .iter()
                .all(|(p, l)| claims.get(p) == Some(&BTreeSet::from([*l])))
                .then_some(leaders)
        },
    );
    let settled = resumed.elapsed();
    // Its log says it stopped leading partitions it led before the pause (it may lead them
    // again later: leadership returns to a partition's preferred replica once it caught up).
    let stepped_down: Vec<u32> = {
        let lines = cluster.node(victim).log().lines();
        victim_led
            .iter()
            .copied()
            .filter(|p| {
                let field = format!("partition={p}");
                lines[mark..].iter().any(|line| {
                    line.contains("no longer leading")
                        && line.split_whitespace().any(|word| word == field)
                })
            })
            .collect()
    };
    let victim_view = cluster
        .view(victim)
        .expect("GET /cluster on the resumed node");
    println!(
        "paused node {victim} (leading {victim_led:?}); new leaders after {} ms; one leader \
         each {} ms after the resume: {fenced:?}; it logged stepping down from {stepped_down:?}; \
         its view now: {:?}",
        elected.as_millis(),
        settled.as_millis(),
        victim_view
            .partitions
            .iter()
            .map(|p| (p.partition, p.leader, p.term))
            .collect::<Vec<_>>()
    );
    assert!(
        !stepped_down.is_empty(),
        "the resumed node logged no step-down from {victim_led:?}; after the resume it logged:\n{}",
        cluster.node(victim).log().lines()[mark..].join("\n")
    );
    // Load goes on after the resume, so the late requests meet the new leaders.
    std::thread::sleep(Duration::from_secs(2));
    let finished = load.stop();

    // Requests sent to the frozen node before the resume were answered only after it: they are
    // the late writes the fencing has to stop from taking effect twice or wrongly.
    let held: Vec<&Attempt> = finished
        .attempts
        .iter()
        .filter(|a| a.node == victim && a.sent < resumed && a.answered >= resumed)
        .collect();
    let late_acks = held
        .iter()
        .filter(|a| matches!(a.status, Some(200 | 202)))
        .count();
    let refused: BTreeSet<(Option<u16>, &str)> = held
        .iter()
        .filter(|a| !matches!(a.status, Some(200 | 202)))
        .map(|a| (a.status, a.detail.as_str()))
        .collect();
    println!(
        "{} requests held through the pause; {late_acks} acknowledged by the resumed node; \
         the others answered: {refused:?}",
        held.len()
    );
    assert!(!held.is_empty(), "no request was held by the pause");
    finished.check(cluster.node(others[0]).ingress(), 50);
}

#[test]
fn the_cluster_forms_with_one_node_down_at_first_boot() {
    let booted = Instant::now();
    let cluster = Logged(Cluster::start(ClusterOptions {
        deferred: vec![3],
        log_filter: LOG_FILTER.into(),
        ..ClusterOptions::default()
    }));
    let partitions = cluster.options().partitions;
    // Node 3 is the preferred replica of every third partition (partition p prefers node
    // p mod 3 + 1); nodes 1 and 2 initialize those after their grace period.
    let leaders = cluster.wait_for_leaders(PATIENCE);
    println!(
        "every partition had a leader {} ms after boot: {leaders:?}",
        booted.elapsed().as_millis()
    );
    assert_eq!(leaders.len(), partitions as usize);
    assert!(leaders.values().all(|l| *l == 1 || *l == 2), "{leaders:?}");
    let orphans: Vec<u32> = (0..partitions).filter(|p| p % 3 == 2).collect();
    for partition in &orphans {
        let line = format!("initializing the group group=partition {partition}");
        let by: Vec<u64> = [1, 2]
            .into_iter()
            .filter(|id| {
                let log = cluster.node(*id).log().lines();
                log.iter().any(|l| l.trim_end().ends_with(&line))
            })
            .collect();
        assert!(
            !by.is_empty(),
            "neither node 1 nor node 2 logged initializing partition {partition}"
        );
        println!("partition {partition} (preferring node 3) initialized by node(s) {by:?}");
    }
    let health = http_get(cluster.node(2).admin(), "/health").expect("health");
    assert_eq!(health.json()["status"], "ok", "{}", health.body);

    let _endpoint = fixture(&cluster, 2);
    let load = Load::start(ingresses(&cluster, &[1, 2]), 4);
    std::thread::sleep(Duration::from_secs(3));
    let finished = load.stop();
    let verdict = finished.check(cluster.node(1).ingress(), 5);
    assert_eq!(
        verdict.info, 0,
        "every operation through nodes 1 and 2 succeeds"
    );
    // What node 3 must reach: every box's contents, and every partition's applied index.
    let contents: BTreeMap<String, Vec<i64>> = (0..COUNTERS)
        .map(|c| format!("c{c}"))
        .chain((0..SETS).map(|s| format!("s{s}")))
        .map(|name| {
            let messages = list(cluster.node(1).ingress(), &name);
            (name, messages)
        })
        .collect();
    let mut applied = BTreeMap::new();
    for (partition, leader) in cluster.wait_for_leaders(PATIENCE) {
        let view = cluster.view(leader).expect("GET /cluster");
        let index = own_applied(&view, leader, partition).expect("the leader's applied index");
        applied.insert(partition, index);
    }

    let started = Instant::now();
    cluster.node(3).start();
    let caught_up = poll("node 3 to apply what the leaders had", PATIENCE, || {
        let view = cluster.view(3).ok()?;
        let behind = applied.iter().any(|(partition, index)| {
            let seen = view.partitions.iter().find(|p| p.partition == *partition);
            seen.is_none_or(|p| p.leader.is_none())
                || own_applied(&view, 3, *partition).is_none_or(|own| own < *index)
        });
        (!behind).then_some(view)
    });
    println!(
        "node 3 caught up {} ms after its start: {:?}",
        started.elapsed().as_millis(),
        caught_up
            .partitions
            .iter()
            .map(|p| (
                p.partition,
                p.leader,
                own_applied(&caught_up, 3, p.partition)
            ))
            .collect::<Vec<_>>()
    );
    let all = cluster.wait_for_leaders(PATIENCE);
    assert_eq!(all.len(), partitions as usize);
    assert!(
        caught_up.nodes.iter().all(|m| m.alive),
        "node 3 is not connected to every member: {caught_up:?}"
    );
    poll("the deployment on node 3", PATIENCE, || {
        http_get(cluster.node(3).admin(), "/services")
            .ok()?
            .body
            .contains("\"Box\"")
            .then_some(())
    });

    // Through its own ingress node 3 reads the same state and serves new calls.
    let node3 = cluster.node(3).ingress();
    for (name, messages) in &contents {
        assert_eq!(&list(node3, name), messages, "box {name} through node 3");
    }
    // Operations numbered past the load's: an increment of c0 and a relayed send to s0, retried
    // through node 3 only (leadership of the partitions it prefers may be moving back to it).
    let through_node3 = |n: i64| {
        let attempts = Mutex::default();
        match perform(
            &[(3, node3)],
            0,
            &format!("late-{n}"),
            &Request::numbered(n),
            &attempts,
        ) {
            Ending::Acknowledged(answer) => answer,
            _ => panic!("operation {n} through node 3: {:?}", attempts.into_inner()),
        }
    };
    let late = 1_000_000;
    assert_eq!(
        through_node3(late),
        Some(contents["c0"].len() as i64 + 1),
        "the count of c0 through node 3"
    );
    through_node3(late + 1);
    let mut expected = contents["s0"].clone();
    expected.push(late + 1);
    for id in [1, 3] {
        poll(
            &format!("the send through node 3, read via node {id}"),
            PATIENCE,
            || (list(cluster.node(id).ingress(), "s0") == expected).then_some(()),
        );
    }
    println!("leaders at the end: {:?}", cluster.leaders());
}

/// The replicas a partition should have among `nodes` (sorted ids), as the kernel places them:
/// `rf` consecutive nodes starting at `partition mod N`.
fn placed(partition: u32, nodes: &[u64], rf: usize) -> BTreeSet<u64> {
    (0..rf)
        .map(|k| nodes[(partition as usize + k) % nodes.len()])
        .collect()
}

/// Waits until, for every partition, its leader's view lists exactly the `wanted` replicas,
/// each within [`CAUGHT_UP_LAG`] entries of the leader.
fn wait_placed(cluster: &Cluster, what: &str, wanted: impl Fn(u32) -> BTreeSet<u64>) {
    poll(what, PATIENCE, || {
        let leaders = cluster.leaders();
        if leaders.len() != cluster.options().partitions as usize {
            return None;
        }
        for (partition, leader) in leaders {
            let view = cluster.view(leader).ok()?;
            let seen = view.partitions.iter().find(|p| p.partition == partition)?;
            let replicas: BTreeSet<u64> = seen.replicas.iter().map(|r| r.node).collect();
            let caught_up = seen
                .replicas
                .iter()
                .all(|r| r.lag.is_some_and(|lag| lag <= CAUGHT_UP_LAG));
            if seen.leader != Some(leader) || replicas != wanted(partition) || !caught_up {
                return None;
            }
        }
        Some(())
    });
}

#[test]
fn a_fourth_node_joins_and_a_node_leaves_under_load_losing_nothing() {
    let _turn = one_under_load();
    let cluster = Logged(Cluster::start(ClusterOptions {
        log_filter: LOG_FILTER.into(),
        spares: 1,
        ..ClusterOptions::default()
    }));
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = fixture(&cluster, 2);
    let load = Load::start(ingresses(&cluster, &[1, 2]), 16);
    std::thread::sleep(Duration::from_secs(2));

    // Node 4 runs on the cluster's configuration plus its own address, then an operator adds it.
    let joiner = cluster.node(4);
    joiner.start();
    let raft = joiner.addrs().raft.to_string();
    let admin = cluster.node(1).admin();
    let add = |id: u64, address: &str| {
        let body = json!({ "id": id, "address": address }).to_string();
        http(admin, "POST", "/cluster/nodes", &[JSON], &body).expect("POST /cluster/nodes")
    };
    let added = add(4, &raft);
    assert_eq!(added.status, 201, "{}", added.body);
    let again = add(4, &raft);
    assert_eq!(
        again.status, 200,
        "adding a member again changes nothing: {}",
        again.body
    );
    let moved = add(3, &raft);
    assert_eq!(moved.status, 409, "{}", moved.body);
    assert_eq!(moved.json()["code"], "address_in_place", "{}", moved.body);
    let garbage = http(admin, "POST", "/cluster/nodes", &[JSON], "{\"id\": 5}").expect("POST");
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert_eq!(garbage.json()["code"], "invalid_node");

    // Three of the eight partitions' replicas in four move to node 4: learner, catch-up, voter.
    let started = Instant::now();
    wait_placed(&cluster, "replicas placed on node 4", |p| {
        placed(p, &[1, 2, 3, 4], 3)
    });
    println!("replicas placed on the new node in {:?}", started.elapsed());
    // Leaders spread onto it too: it is the preferred replica of two partitions.
    poll("node 4 to lead a partition", PATIENCE, || {
        cluster
            .leaders()
            .values()
            .any(|leader| *leader == 4)
            .then_some(())
    });

    // Node 3 leaves: its replicas move to the other three, then its copies are deleted.
    let started = Instant::now();
    let removed = http(admin, "DELETE", "/cluster/nodes/3", &[], "").expect("DELETE");
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json()["drained"], true, "{}", removed.body);
    wait_placed(&cluster, "replicas moved off node 3", |p| {
        placed(p, &[1, 2, 4], 3)
    });
    println!("node 3 drained in {:?}", started.elapsed());
    let copies = cluster.dir().join("node-3").join("partitions");
    poll("node 3 to delete its copies", PATIENCE, || {
        let left = std::fs::read_dir(&copies).ok()?.count();
        (left == 0).then_some(())
    });
    let back = add(3, &cluster.node(3).addrs().raft.to_string());
    assert_eq!(back.status, 409, "{}", back.body);
    assert_eq!(back.json()["code"], "node_removed", "{}", back.body);
    let view = cluster.view(1).expect("view");
    let members: Vec<u64> = view.nodes.iter().map(|n| n.id).collect();
    assert_eq!(members, [1, 2, 4]);

    let finished = load.stop();
    // Read through the new node: it serves every partition.
    finished.check(cluster.node(4).ingress(), 50);
    drop(endpoint);
}

/// Waits until each node of `ids` has logged a line containing `text`, and prints it.
fn wait_logged(cluster: &Cluster, ids: &[u64], text: &str) {
    for id in ids {
        let line = poll(&format!("node {id} to log {text:?}"), PATIENCE, || {
            let log = cluster.node(*id).log().text();
            log.lines().find(|l| l.contains(text)).map(str::to_owned)
        });
        println!("node {id}: {line}");
    }
}

#[test]
fn a_node_back_under_its_old_id_with_a_wiped_data_dir_is_refused_by_its_peers() {
    let cluster = Logged(Cluster::start(ClusterOptions {
        log_filter: LOG_FILTER.into(),
        ..ClusterOptions::default()
    }));
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = fixture(&cluster, 1);
    let node = cluster.node(3);
    node.kill9();
    std::fs::remove_dir_all(cluster.dir().join("node-3")).expect("wipe node 3's data dir");
    node.restart();
    // Both sides say why, and name the cure.
    wait_logged(&cluster, &[1, 3], "its data dir was wiped or replaced");
    // The wiped node takes no part: the others lead everything and keep serving.
    std::thread::sleep(Duration::from_secs(3));
    let leaders = cluster.wait_for_leaders(PATIENCE);
    assert!(
        leaders.values().all(|leader| *leader != 3),
        "the wiped node leads: {leaders:?}"
    );
    let view = cluster.view(3).expect("node 3's view");
    for partition in &view.partitions {
        let own = partition.replicas.iter().find(|r| r.node == 3);
        assert!(
            own.is_none_or(|r| r.applied_index.unwrap_or(0) == 0),
            "the wiped node received partition {}'s log: {partition:?}",
            partition.partition
        );
    }
    let answer = http(
        cluster.node(1).ingress(),
        "POST",
        "/Box/after-wipe/add",
        &[JSON],
        "1",
    )
    .expect("call through node 1");
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(endpoint);
}

#[test]
fn a_node_with_another_cluster_configuration_is_refused_on_both_sides() {
    let cluster = Logged(Cluster::start(ClusterOptions {
        log_filter: LOG_FILTER.into(),
        deferred: vec![3],
        ..ClusterOptions::default()
    }));
    // Node 3 is started on a fresh data dir with another partition count: its fingerprint
    // differs, so neither side lets the other's hello through.
    let node = cluster.node(3);
    let config = std::fs::read_to_string(node.config()).expect("node 3's config");
    assert!(config.contains("partitions = 8"), "{config}");
    std::fs::write(
        node.config(),
        config.replace("partitions = 8", "partitions = 4"),
    )
    .expect("rewrite node 3's config");
    node.start();
    wait_logged(&cluster, &[1, 3], "has cluster fingerprint");
    // Nodes 1 and 2 form the cluster without it.
    let leaders = cluster.wait_for_leaders(PATIENCE);
    assert!(leaders.values().all(|leader| *leader != 3), "{leaders:?}");
}
