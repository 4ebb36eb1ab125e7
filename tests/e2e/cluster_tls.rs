//! Mutual TLS on the node transport (`[cluster] tls_ca_file`, `tls_cert_file`, `tls_key_file`):
//! three real `holdfast` processes on 127.0.0.1 with certificates issued by the real binary
//! (`holdfast tls issue`), the example services (`examples/services.mjs`) on a real Node
//! endpoint, real HTTP to every node.
//!
//! - `a_cluster_with_mutual_tls_forms_and_serves`: three nodes with certificates of one CA form
//!   the cluster (every partition gets a confirmed leader, every node is connected to both
//!   peers, every partition's leader sees all three replicas applying its log), serve calls
//!   through nodes 1, 3 and 2 (counts running on across nodes, a call crossing partitions), and
//!   no node refuses a peer; a plaintext connection to a node's transport is refused.
//! - `a_node_without_a_certificate_of_the_cluster_ca_is_refused`: node 3 has a certificate of
//!   another CA and an otherwise identical config (it trusts the cluster's CA too). Nodes 1
//!   and 2 form a quorum and serve calls; node 1 or 2 rejects node 3's client certificate and
//!   node 3 logs the handshakes the others abort; for several seconds node 3 stays cut off: no
//!   node reports a connection to or from it, it sees no leader and no leader sees its
//!   replicas apply an entry, it never learns the deployment, and its ingress serves no call.
//!
//! The harness writes every node's config; the `[cluster] tls_*` keys differ per node and must
//! sit in the `[cluster]` table (which `ClusterOptions::extra_toml`, appended after `[log]`,
//! cannot reopen), so the cluster is created with every node deferred, the keys are added to
//! each node's config file, and then the nodes are started.

use holdfast_e2e::cluster::{Cluster, ClusterOptions, ClusterView};
use holdfast_e2e::{ServiceProcess, free_port, holdfast_bin, http, http_get, poll, register};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EXAMPLES: &str = "examples/services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("content-type", "application/json");
/// What a node logs (WARN) when a peer's TLS handshake fails on its listener.
const REFUSED: &str = "refused a peer connection: TLS handshake failed";
/// What a node logs when a peer it accepted a connection from rejected its certificate.
const ABORTED: &str =
    "a peer aborted the TLS handshake: it does not accept this node's certificate";
/// How long the refused node is watched for any sign of taking part.
const CUT_OFF_FOR: Duration = Duration::from_secs(4);

/// A cluster that, when dropped while the test panics, prints the end of every started node's
/// log (TLS failures are only visible there).
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
            eprintln!("--- node {} log (last 30 lines):", node.id());
            for line in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// `holdfast tls issue`: a certificate `<dir>/<name>.pem` for `host`, signed by the CA of `dir`
/// (created on first use, so each directory is a CA of its own).
fn issue(dir: &Path, name: &str, host: &str) {
    let output = Command::new(holdfast_bin())
        .args(["tls", "issue", "--dir"])
        .arg(dir)
        .args(["--name", name, "--host", host])
        .output()
        .expect("run holdfast tls issue");
    assert!(
        output.status.success(),
        "holdfast tls issue --name {name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Three nodes (the default options) on mutual TLS: every node trusts the cluster's CA (the
/// one in `ca/` under the cluster's directory) and node `i` presents a certificate for the IP
/// of its cluster address, issued by the CA in the directory `issuers[i - 1]` (`"ca"` for the
/// cluster's own; any other name is a CA of its own). Returns once every admin API answers.
fn start_with_tls(issuers: [&str; 3]) -> Logged {
    let cluster = Logged(Cluster::start(ClusterOptions {
        deferred: vec![1, 2, 3],
        ..ClusterOptions::default()
    }));
    let path = |file: PathBuf| file.display().to_string();
    let cluster_ca = cluster.dir().join("ca");
    for (node, issuer) in cluster.nodes().iter().zip(issuers) {
        let dir = cluster.dir().join(issuer);
        let name = format!("node-{}", node.id());
        issue(&dir, &name, &node.addrs().raft.ip().to_string());
        let keys = format!(
            "[cluster]\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            path(cluster_ca.join("ca.pem")),
            path(dir.join(format!("{name}.pem"))),
            path(dir.join(format!("{name}-key.pem"))),
        );
        let text = std::fs::read_to_string(node.config()).expect("read node config");
        assert!(text.contains("[cluster]\n"), "{text}");
        std::fs::write(node.config(), text.replacen("[cluster]\n", &keys, 1))
            .expect("write node config");
    }
    assert!(
        cluster_ca.join("ca.pem").exists(),
        "no node has a certificate of the cluster's CA"
    );
    for node in cluster.nodes() {
        node.start();
    }
    cluster
}

/// Starts the example services, registers them through node `via` and waits until each of
/// `nodes` knows them.
fn examples(cluster: &Cluster, via: u64, nodes: &[u64]) -> ServiceProcess {
    let endpoint = ServiceProcess::start(EXAMPLES, free_port(), &[]);
    register(cluster.node(via).admin(), &endpoint.uri);
    for id in nodes {
        poll(&format!("the deployment on node {id}"), PATIENCE, || {
            let services = http_get(cluster.node(*id).admin(), "/services").ok()?;
            services.body.contains("\"greeter\"").then_some(())
        });
    }
    endpoint
}

/// `POST path` with a JSON body through node `id`'s ingress.
fn call(cluster: &Cluster, id: u64, path: &str, body: &str) -> (u16, String) {
    let response = http(cluster.node(id).ingress(), "POST", path, &[JSON], body)
        .unwrap_or_else(|e| panic!("POST {path} through node {id}: {e}"));
    (response.status, response.body)
}

/// Node `id`'s `GET /cluster`, which must answer.
fn view(cluster: &Cluster, id: u64) -> ClusterView {
    cluster.view(id).unwrap_or_else(|e| panic!("{e}"))
}

/// The ids of the members `view` reports alive (itself, and the peers it is connected to).
fn alive(view: &ClusterView) -> Vec<u64> {
    view.nodes
        .iter()
        .filter(|m| m.alive)
        .map(|m| m.id)
        .collect()
}

#[test]
fn a_cluster_with_mutual_tls_forms_and_serves() {
    let started = Instant::now();
    let cluster = start_with_tls(["ca", "ca", "ca"]);
    let leaders = cluster.wait_for_leaders(PATIENCE);
    println!(
        "leaders over TLS after {:?}: {leaders:?}",
        started.elapsed()
    );
    let _endpoint = examples(&cluster, 2, &[1, 2, 3]);

    // The greeter's count for one key runs on whichever node the call enters through (its
    // partition's leader is reached over the transport from the others).
    for (n, id) in [1u64, 3, 2].into_iter().enumerate() {
        let (status, body) = call(&cluster, id, "/greeter/Ada/greet", "");
        assert_eq!(status, 200, "greet through node {id}: {body}");
        assert_eq!(
            body,
            format!("\"Hello Ada for the {}-th time!\"", n + 1),
            "greet through node {id}"
        );
    }
    // A session reserves its ticket with a call to another virtual object (usually another
    // partition, so another leader); a second user is then refused the same ticket.
    let (status, body) = call(&cluster, 3, "/UserSession/alice/addTicket", "\"seat-12A\"");
    assert_eq!(
        (status, body.as_str()),
        (200, "true"),
        "alice through node 3"
    );
    let (status, body) = call(&cluster, 1, "/UserSession/bob/addTicket", "\"seat-12A\"");
    assert_eq!(
        (status, body.as_str()),
        (200, "false"),
        "bob through node 1"
    );

    // The cluster formed over TLS: every node is connected to both peers, and every
    // partition's leader sees all three replicas applying its log.
    poll("every replica applying every partition", PATIENCE, || {
        let views: Vec<ClusterView> = (1..=3).map(|id| view(&cluster, id)).collect();
        if views.iter().any(|v| alive(v) != [1, 2, 3]) {
            return None;
        }
        let leaders = cluster.leaders();
        let complete = leaders.len() == cluster.options().partitions as usize
            && leaders.iter().all(|(partition, leader)| {
                let seen = &views[*leader as usize - 1].partitions[*partition as usize];
                seen.replicas.len() == 3
                    && seen
                        .replicas
                        .iter()
                        .all(|r| r.applied_index.is_some_and(|i| i > 0))
            });
        complete.then_some(())
    });
    for node in cluster.nodes() {
        assert_eq!(
            node.log().count(REFUSED),
            0,
            "node {} refused a peer of its own CA:\n{}",
            node.id(),
            node.log().text()
        );
    }

    // The transport speaks only TLS: an HTTP/2 preface in clear is refused at the handshake.
    let mut plain = TcpStream::connect(cluster.node(1).addrs().raft).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("send a preface");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    // Nothing but (at most) a TLS alert record (content type 21) before the listener hangs up.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "a plaintext client got something other than a TLS alert: {answer:?}"
    );
    cluster.node(1).log().wait_until(
        "node 1 to refuse the plaintext connection",
        PATIENCE,
        |lines| lines.iter().any(|l| l.contains(REFUSED)),
    );
    println!("test done after {:?}", started.elapsed());
}

#[test]
fn a_node_without_a_certificate_of_the_cluster_ca_is_refused() {
    let started = Instant::now();
    // Node 3's certificate is as well-formed as the others' (same IP, same key usages, an
    // issuer with the same name) but signed by another CA; like every node, it trusts the
    // cluster's CA (its config differs from the others' only in the certificate and key).
    let cluster = start_with_tls(["ca", "ca", "rogue-ca"]);

    // Nodes 1 and 2 are a quorum of every group (RF 3): every partition gets a leader among
    // them (node 3's preferred partitions after the others' bootstrap grace period).
    let leaders = cluster.wait_for_leaders(PATIENCE);
    assert!(
        leaders.values().all(|leader| *leader != 3),
        "node 3 leads a partition: {leaders:?}"
    );
    let _endpoint = examples(&cluster, 1, &[1, 2]);
    for (n, id) in [1u64, 2].into_iter().enumerate() {
        let (status, body) = call(&cluster, id, "/greeter/Ada/greet", "");
        assert_eq!(status, 200, "greet through node {id}: {body}");
        assert_eq!(
            body,
            format!("\"Hello Ada for the {}-th time!\"", n + 1),
            "greet through node {id}"
        );
    }

    // Both directions fail. Node 3 dialling node 1 or 2 accepts their certificate (it trusts
    // the cluster's CA), presents its own, and the listener rejects it: that node logs the
    // refusal with rustls's reason ("invalid peer certificate"), proving the listener checks
    // a client's certificate itself. Node 1 or 2 dialling node 3 rejects node 3's server
    // certificate and aborts, so node 3's listener logs that its certificate was not accepted.
    let (refused_by, line) = poll(
        "node 1 or 2 to reject node 3's certificate",
        PATIENCE,
        || {
            [1u64, 2].into_iter().find_map(|id| {
                let lines = cluster.node(id).log().lines();
                let line = lines
                    .into_iter()
                    .find(|l| l.contains(REFUSED) && l.contains("invalid peer certificate"))?;
                Some((id, line))
            })
        },
    );
    println!("node {refused_by} rejected node 3: {line}");
    cluster.node(3).log().wait_until(
        "nodes 1 and 2 to reject node 3's certificate",
        PATIENCE,
        |lines| lines.iter().any(|l| l.contains(ABORTED)),
    );

    // For several seconds, after the others have served calls: node 3 takes no part. Sampled
    // repeatedly, each of these holds every time:
    // - no connection between node 3 and the others in either direction (`alive` is "this node
    //   has an open connection to that peer that passed TLS and the hello"; 1 and 2 may
    //   be briefly disconnected from each other on a loaded machine, so that is not asserted);
    // - node 3 knows no leader of any partition (it cannot win an election without a vote
    //   from 1 or 2, and no leader's append reaches it);
    // - no leader reports that node 3's replica has applied any entry of its partition;
    // - node 3 does not know the deployment registered through node 1 (the metadata log never
    //   reached it), and a call through its ingress does not succeed.
    let until = Instant::now() + CUT_OFF_FOR;
    let mut samples = 0;
    while Instant::now() < until {
        let views: Vec<ClusterView> = (1..=3).map(|id| view(&cluster, id)).collect();
        for id in [1, 2] {
            let seen = &views[id - 1];
            assert!(!alive(seen).contains(&3), "node {id}'s view: {seen:?}");
        }
        assert_eq!(alive(&views[2]), [3], "node 3's view: {:?}", views[2]);
        for seen in &views[2].partitions {
            assert_eq!(seen.leader, None, "node 3 knows a leader: {seen:?}");
        }
        for (partition, leader) in cluster.leaders() {
            let seen = &views[leader as usize - 1].partitions[partition as usize];
            let replica = seen.replicas.iter().find(|r| r.node == 3);
            assert!(
                replica.is_none_or(|r| r.applied_index.unwrap_or(0) == 0),
                "node {leader} sees node 3 applying partition {partition}: {seen:?}"
            );
        }
        let services = http_get(cluster.node(3).admin(), "/services").expect("node 3 services");
        assert!(
            !services.body.contains("\"greeter\""),
            "node 3 knows the deployment: {}",
            services.body
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, body) = call(&cluster, 3, "/greeter/Ada/greet", "");
    assert_ne!(status, 200, "a call through node 3 succeeded: {body}");
    println!(
        "node 3 cut off in {samples} samples; a call through it answered {status} {body}; \
         test done after {:?}",
        started.elapsed()
    );
}
