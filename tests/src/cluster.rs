//! A cluster of real `holdfast serve` processes on loopback, optionally with every node-to-node
//! link routed through its own [`FaultProxy`], so tests can crash, pause and partition nodes.

use crate::faults::{Fault, FaultProxy};
use crate::{Kernel, ProcessLog, http_get, signal};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable that makes a node dial its peers at other addresses (the proxies).
pub const DIAL_OVERRIDES_ENV: &str = "HOLDFAST_TEST_DIAL_OVERRIDES";

/// How a [`Cluster`] is configured; `Default` gives 3 nodes, 8 partitions, RF 3, no proxies.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes; their ids are `1..=nodes`.
    pub nodes: usize,
    /// Number of partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication_factor: usize,
    /// `[log] election_timeout_ms`.
    pub election_timeout_ms: u64,
    /// `[log] heartbeat_interval_ms`.
    pub heartbeat_interval_ms: u64,
    /// TOML appended to every node's config right after the `[log]` table, so bare keys extend
    /// `[log]` and anything else needs its own table header.
    pub extra_toml: String,
    /// Route node i → node j traffic through [`Cluster::proxy`]`(i, j)`.
    pub proxied: bool,
    /// `HOLDFAST_LOG` for every node.
    pub log_filter: String,
    /// Ids of nodes that [`Cluster::start`] configures (every member lists them) but does not
    /// launch, as if they were down when the cluster first booted; launch them later with
    /// [`NodeHandle::start`]. Empty by default.
    pub deferred: Vec<u64>,
    /// Extra nodes (ids after `nodes`) that are not in `cluster.nodes`: each is configured to
    /// join the running cluster (`node.address`), is not launched by [`Cluster::start`], and
    /// takes part once started ([`NodeHandle::start`]) and added (`POST /cluster/nodes`).
    pub spares: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            partitions: 8,
            replication_factor: 3,
            election_timeout_ms: 500,
            heartbeat_interval_ms: 250,
            extra_toml: String::new(),
            proxied: false,
            log_filter: "warn".to_string(),
            deferred: Vec::new(),
            spares: 0,
        }
    }
}

/// The loopback addresses of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddrs {
    /// The node id.
    pub id: u64,
    /// Ingress (invocations).
    pub ingress: SocketAddr,
    /// Admin API.
    pub admin: SocketAddr,
    /// PostgreSQL wire.
    pub sql: SocketAddr,
    /// Node-to-node (raft) traffic, as listed in `[[cluster.nodes]]`.
    pub raft: SocketAddr,
}

/// One node of a [`Cluster`]: a restartable process usable from several threads at once (a
/// nemesis thread can kill it while clients talk to it).
pub struct NodeHandle {
    addrs: NodeAddrs,
    config: PathBuf,
    /// `HOLDFAST_LOG` and the extra environment its incarnations run with.
    launch: (String, Vec<(String, String)>),
    /// `None` until its first incarnation is launched (a deferred node that was not started).
    kernel: Mutex<Option<Kernel>>,
    /// Set when the first incarnation is launched; every later one writes to it too.
    log: OnceLock<ProcessLog>,
    paused: AtomicBool,
}

impl NodeHandle {
    /// The node id.
    pub fn id(&self) -> u64 {
        self.addrs.id
    }

    /// All of its addresses.
    pub fn addrs(&self) -> NodeAddrs {
        self.addrs
    }

    /// Its ingress address.
    pub fn ingress(&self) -> SocketAddr {
        self.addrs.ingress
    }

    /// Its admin API address.
    pub fn admin(&self) -> SocketAddr {
        self.addrs.admin
    }

    /// Its PostgreSQL-wire address.
    pub fn sql(&self) -> SocketAddr {
        self.addrs.sql
    }

    /// Its config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The running incarnation's process id.
    pub fn pid(&self) -> u32 {
        self.kernel().pid()
    }

    /// Whether its first incarnation was launched: always, except for a node of
    /// [`ClusterOptions::deferred`] before [`NodeHandle::start`].
    pub fn has_started(&self) -> bool {
        self.kernel.lock().expect("kernel lock").is_some()
    }

    /// Whether the process runs and is not paused, i.e. can take part in the cluster.
    pub fn is_live(&self) -> bool {
        let mut kernel = self.kernel.lock().expect("kernel lock");
        let Some(kernel) = kernel.as_mut() else {
            return false;
        };
        kernel.is_running() && kernel.exited().is_none() && !self.paused.load(Ordering::SeqCst)
    }

    /// Launches the first incarnation of a node of [`ClusterOptions::deferred`] (one that has
    /// never run, so its data dir is empty) and waits until its admin API answers.
    pub fn start(&self) {
        self.launch();
        self.wait_answering(Duration::from_secs(30));
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&self) {
        self.kernel().kill9();
        self.paused.store(false, Ordering::SeqCst);
    }

    /// SIGTERM and wait for the exit; the node can be restarted afterwards.
    pub fn terminate(&self) -> ExitStatus {
        let status = self.kernel().stop();
        self.paused.store(false, Ordering::SeqCst);
        status
    }

    /// Starts a new incarnation (after [`NodeHandle::kill9`] or [`NodeHandle::terminate`]) and
    /// waits until its admin API answers.
    pub fn restart(&self) {
        self.kernel().spawn();
        self.wait_answering(Duration::from_secs(30));
    }

    /// SIGSTOP: the process freezes with its sockets open, as a long GC pause would.
    pub fn stop_signal(&self) {
        signal(self.pid(), "STOP");
        self.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONT after [`NodeHandle::stop_signal`].
    pub fn cont_signal(&self) {
        signal(self.pid(), "CONT");
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Everything every incarnation wrote to stderr (the kernel's log).
    pub fn log(&self) -> &ProcessLog {
        self.log
            .get()
            .unwrap_or_else(|| panic!("node {} has never been started", self.id()))
    }

    /// Launches the first incarnation without waiting for it.
    fn launch(&self) {
        let mut kernel = self.kernel.lock().expect("kernel lock");
        assert!(kernel.is_none(), "node {} was started already", self.id());
        let (log_filter, env) = &self.launch;
        let launched = Kernel::launch(&self.config, self.admin(), log_filter, env);
        // The only launch, under the lock: the log cannot have been set before.
        let _ = self.log.set(launched.log.clone());
        *kernel = Some(launched);
    }

    /// The kernel of a node that has been started.
    fn kernel(&self) -> StartedKernel<'_> {
        let guard = self.kernel.lock().expect("kernel lock");
        assert!(guard.is_some(), "node {} has never been started", self.id());
        StartedKernel(guard)
    }

    /// Polls `/health` until it answers 200 (leaders or not), panicking with the node's log if
    /// the process exits or `timeout` passes.
    fn wait_answering(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.kernel().exited() {
                panic!(
                    "node {} exited with {status}\nits log:\n{}",
                    self.id(),
                    self.log().text()
                );
            }
            let last = match http_get(self.admin(), "/health") {
                Ok(response) if response.status == 200 => return,
                Ok(response) => format!("{} {}", response.status, response.body),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "node {} did not answer /health within {timeout:?} (last: {last})\nits log:\n{}",
                self.id(),
                self.log().text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The locked kernel of a node that has been started.
struct StartedKernel<'a>(MutexGuard<'a, Option<Kernel>>);

impl std::ops::Deref for StartedKernel<'_> {
    type Target = Kernel;
    fn deref(&self) -> &Kernel {
        self.0.as_ref().expect("checked when locked")
    }
}

impl std::ops::DerefMut for StartedKernel<'_> {
    fn deref_mut(&mut self) -> &mut Kernel {
        self.0.as_mut().expect("checked when locked")
    }
}

/// N `holdfast serve` processes forming one cluster, stopped (SIGKILL) when dropped.
pub struct Cluster {
    // Declared first so the processes die before their proxies and data dirs go.
    nodes: Vec<NodeHandle>,
    proxies: BTreeMap<(u64, u64), FaultProxy>,
    options: ClusterOptions,
    dir: tempfile::TempDir,
}

/// `127.0.0.1:port`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl Cluster {
    /// Writes every node's config into one temporary directory, starts the proxies (if
    /// `proxied`) and all processes but the `deferred` ones together, and waits until their
    /// admin APIs answer.
    pub fn start(options: ClusterOptions) -> Cluster {
        assert!(options.nodes >= 1, "a cluster needs at least one node");
        for id in &options.deferred {
            assert!(
                (1..=options.nodes as u64).contains(id),
                "deferred node {id} is not in a {}-node cluster",
                options.nodes
            );
        }
        let dir = tempfile::tempdir().expect("cluster tempdir");
        let addrs: Vec<NodeAddrs> = (1u64..=(options.nodes + options.spares) as u64)
            .map(|id| {
                let [ingress, admin, sql, raft] = crate::free_ports::<4>().map(loopback);
                NodeAddrs {
                    id,
                    ingress,
                    admin,
                    sql,
                    raft,
                }
            })
            .collect();
        let mut proxies = BTreeMap::new();
        if options.proxied {
            for from in &addrs {
                for to in addrs.iter().filter(|to| to.id != from.id) {
                    proxies.insert((from.id, to.id), FaultProxy::start(to.raft));
                }
            }
        }

        let members = &addrs[..options.nodes];
        let nodes: Vec<NodeHandle> = addrs
            .iter()
            .map(|node| {
                let data_dir = dir.path().join(format!("node-{}", node.id));
                let config = dir.path().join(format!("node-{}.toml", node.id));
                let mut text = node_config(&options, node, members, &data_dir);
                if node.id > options.nodes as u64 {
                    // `[node] address` must sit in the [node] table, which comes first.
                    text = text.replacen(
                        "[node]\n",
                        &format!("[node]\naddress = \"{}\"\n", node.raft),
                        1,
                    );
                }
                std::fs::write(&config, text).expect("write node config");
                let routes: Vec<(u64, SocketAddr)> = proxies
                    .iter()
                    .filter(|((from, _), _)| *from == node.id)
                    .map(|((_, to), proxy)| (*to, proxy.addr()))
                    .collect();
                let env = if routes.is_empty() {
                    Vec::new()
                } else {
                    vec![(DIAL_OVERRIDES_ENV.to_string(), dial_overrides(&routes))]
                };
                NodeHandle {
                    addrs: *node,
                    config,
                    launch: (options.log_filter.clone(), env),
                    kernel: Mutex::new(None),
                    log: OnceLock::new(),
                    paused: AtomicBool::new(false),
                }
            })
            .collect();
        let launched: Vec<&NodeHandle> = nodes
            .iter()
            .filter(|node| {
                !options.deferred.contains(&node.id()) && node.id() <= options.nodes as u64
            })
            .collect();
        for node in &launched {
            node.launch();
        }
        for node in &launched {
            node.wait_answering(Duration::from_secs(30));
        }
        Cluster {
            nodes,
            proxies,
            options,
            dir,
        }
    }

    /// The options it was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The directory holding every node's config and data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `id` (1-based).
    pub fn node(&self, id: u64) -> &NodeHandle {
        usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.nodes.get(i))
            .unwrap_or_else(|| panic!("no node {id} in a {}-node cluster", self.nodes.len()))
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// The proxy carrying node `from`'s connections to node `to` (only with `proxied`).
    pub fn proxy(&self, from: u64, to: u64) -> &FaultProxy {
        assert!(
            self.options.proxied,
            "start the cluster with `proxied: true`"
        );
        self.proxies
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no proxy from node {from} to node {to}"))
    }

    /// Cuts node `id` off from every other node (both directions become black holes).
    pub fn isolate(&self, id: u64) {
        self.partition(&[id]);
    }

    /// Splits the cluster in two: `side` and the rest can no longer reach each other.
    pub fn partition(&self, side: &[u64]) {
        for (&(from, to), proxy) in self.proxied_links() {
            if side.contains(&from) != side.contains(&to) {
                proxy.set(Fault::Drop);
            }
        }
    }

    /// Every link forwards normally again.
    pub fn heal(&self) {
        for (_, proxy) in self.proxied_links() {
            proxy.set(Fault::Pass);
        }
    }

    /// Node `id`'s view of the cluster, from its admin `GET /cluster`.
    pub fn view(&self, id: u64) -> Result<ClusterView, String> {
        let response = http_get(self.node(id).admin(), "/cluster")
            .map_err(|e| format!("GET /cluster on node {id}: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "GET /cluster on node {id}: {} {}",
                response.status, response.body
            ));
        }
        let json: serde_json::Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("node {id}: /cluster is not JSON ({e}): {}", response.body))?;
        ClusterView::parse(&json).map_err(|e| format!("node {id}: {e}"))
    }

    /// The leader of each partition, as reported by the live nodes (the claim with the highest
    /// term wins); partitions nobody reports a leader for are absent.
    pub fn leaders(&self) -> BTreeMap<u32, u64> {
        let views = self.live_views();
        best_claims(views.values())
            .into_iter()
            .map(|(partition, (leader, _))| (partition, leader))
            .collect()
    }

    /// Polls until every partition has a live leader that itself confirms the leadership at the
    /// highest term any live node reports; returns the leaders.
    pub fn wait_for_leaders(&self, timeout: Duration) -> BTreeMap<u32, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let views = self.live_views();
            let claims = best_claims(views.values());
            let confirmed = |partition: u32| {
                let (leader, term) = claims.get(&partition)?;
                let own = views.get(leader)?;
                let seen = own.partitions.iter().find(|p| p.partition == partition)?;
                (seen.leader == Some(*leader) && seen.term == *term).then_some(*leader)
            };
            let leaders: Option<BTreeMap<u32, u64>> = (0..self.options.partitions)
                .map(|partition| confirmed(partition).map(|leader| (partition, leader)))
                .collect();
            if let Some(leaders) = leaders {
                return leaders;
            }
            assert!(
                Instant::now() < deadline,
                "not every partition had a live, confirmed leader within {timeout:?}; \
                 claims (partition -> (leader, term)): {claims:?}; live nodes: {:?}",
                views.keys().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn proxied_links(&self) -> impl Iterator<Item = (&(u64, u64), &FaultProxy)> {
        assert!(
            self.options.proxied,
            "start the cluster with `proxied: true`"
        );
        self.proxies.iter()
    }

    /// The views of every live node that answers.
    fn live_views(&self) -> BTreeMap<u64, ClusterView> {
        self.nodes
            .iter()
            .filter(|node| node.is_live())
            .filter_map(|node| Some((node.id(), self.view(node.id()).ok()?)))
            .collect()
    }
}

/// Per partition, the leader claimed at the highest term among `views`, with that term.
fn best_claims<'a>(views: impl Iterator<Item = &'a ClusterView>) -> BTreeMap<u32, (u64, u64)> {
    let mut claims: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for view in views {
        for partition in &view.partitions {
            let Some(leader) = partition.leader else {
                continue;
            };
            let claim = claims
                .entry(partition.partition)
                .or_insert((leader, partition.term));
            if partition.term > claim.1 {
                *claim = (leader, partition.term);
            }
        }
    }
    claims
}

/// A node's answer to `GET /cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The members and whether this node considers them alive.
    pub nodes: Vec<MemberView>,
    /// Every partition's leadership and replication as this node sees it.
    pub partitions: Vec<PartitionView>,
}

/// One member in a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Its configured node-to-node address.
    pub address: String,
    /// Whether the reporting node considers it alive.
    pub alive: bool,
}

/// One partition in a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    /// Partition id.
    pub partition: u32,
    /// Its leader, if it has one.
    pub leader: Option<u64>,
    /// The raft term (0 when the reporting node holds no replica).
    pub term: u64,
    /// The last entry the reporting node purged from its log of the partition, if any.
    pub purged_index: Option<u64>,
    /// Its replicas' progress.
    pub replicas: Vec<ReplicaView>,
}

/// One replica in a [`PartitionView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// The node holding it.
    pub node: u64,
    /// The last log index it applied (the reporting node's own, or what the leader knows a
    /// follower holds; `None` when the reporting node cannot know).
    pub applied_index: Option<u64>,
    /// How far it is behind the leader (known only to the leader).
    pub lag: Option<u64>,
}

impl ClusterView {
    /// Parses the `/cluster` document, naming the first field that is missing or mistyped.
    pub fn parse(json: &serde_json::Value) -> Result<ClusterView, String> {
        let nodes = array(json, "nodes")?
            .iter()
            .map(|node| {
                Ok(MemberView {
                    id: unsigned(node, "id")?,
                    address: node["address"]
                        .as_str()
                        .ok_or_else(|| format!("no string address in {node}"))?
                        .to_string(),
                    alive: node["alive"]
                        .as_bool()
                        .ok_or_else(|| format!("no boolean alive in {node}"))?,
                })
            })
            .collect::<Result<_, String>>()?;
        let partitions = array(json, "partitions")?
            .iter()
            .map(|partition| {
                let leader = match &partition["leader"] {
                    serde_json::Value::Null => None,
                    _ => Some(unsigned(partition, "leader")?),
                };
                let replicas = array(partition, "replicas")?
                    .iter()
                    .map(|replica| {
                        Ok(ReplicaView {
                            node: unsigned(replica, "node")?,
                            applied_index: optional(replica, "applied_index")?,
                            lag: optional(replica, "lag")?,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                Ok(PartitionView {
                    partition: u32::try_from(unsigned(partition, "partition")?)
                        .map_err(|_| format!("partition id too large in {partition}"))?,
                    leader,
                    term: optional(partition, "term")?.unwrap_or(0),
                    purged_index: optional(partition, "purged_index")?,
                    replicas,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(ClusterView { nodes, partitions })
    }
}

fn array<'a>(
    json: &'a serde_json::Value,
    field: &str,
) -> Result<&'a Vec<serde_json::Value>, String> {
    json[field]
        .as_array()
        .ok_or_else(|| format!("no array {field:?} in {json}"))
}

/// A field that is an unsigned number or null.
fn optional(json: &serde_json::Value, field: &str) -> Result<Option<u64>, String> {
    match &json[field] {
        serde_json::Value::Null => Ok(None),
        _ => unsigned(json, field).map(Some),
    }
}

fn unsigned(json: &serde_json::Value, field: &str) -> Result<u64, String> {
    json[field]
        .as_u64()
        .ok_or_else(|| format!("no unsigned {field:?} in {json}"))
}

/// The TOML config of `node` in a cluster of `members` (which includes `node`).
pub fn node_config(
    options: &ClusterOptions,
    node: &NodeAddrs,
    members: &[NodeAddrs],
    data_dir: &Path,
) -> String {
    let mut text = format!(
        "[node]\nid = {id}\ndata_dir = {data:?}\n\
         [ingress]\nbind_address = \"{ingress}\"\n\
         [admin]\nbind_address = \"{admin}\"\n\
         [sql]\nbind_address = \"{sql}\"\n\
         [cluster]\nname = \"test\"\npartitions = {partitions}\nreplication_factor = {rf}\n",
        id = node.id,
        data = data_dir.display().to_string(),
        ingress = node.ingress,
        admin = node.admin,
        sql = node.sql,
        partitions = options.partitions,
        rf = options.replication_factor,
    );
    for member in members {
        text.push_str(&format!(
            "[[cluster.nodes]]\nid = {}\naddress = \"{}\"\n",
            member.id, member.raft
        ));
    }
    text.push_str(&format!(
        "[log]\nelection_timeout_ms = {}\nheartbeat_interval_ms = {}\n",
        options.election_timeout_ms, options.heartbeat_interval_ms
    ));
    text.push_str(&options.extra_toml);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The value of [`DIAL_OVERRIDES_ENV`]: `peer=host:port` pairs joined by commas.
pub fn dial_overrides(routes: &[(u64, SocketAddr)]) -> String {
    routes
        .iter()
        .map(|(peer, addr)| format!("{peer}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(id: u64, base: u16) -> NodeAddrs {
        let at = |offset: u16| SocketAddr::from(([127, 0, 0, 1], base + offset));
        NodeAddrs {
            id,
            ingress: at(0),
            admin: at(1),
            sql: at(2),
            raft: at(3),
        }
    }

    #[test]
    fn node_config_lists_every_member_and_the_timing() {
        let members = [addrs(1, 1000), addrs(2, 2000)];
        let options = ClusterOptions {
            election_timeout_ms: 300,
            heartbeat_interval_ms: 60,
            extra_toml: "max_batch_commands = 1".to_string(),
            ..ClusterOptions::default()
        };
        let text = node_config(&options, &members[1], &members, Path::new("/tmp/c/node-2"));
        assert_eq!(
            text,
            "[node]\nid = 2\ndata_dir = \"/tmp/c/node-2\"\n\
             [ingress]\nbind_address = \"127.0.0.1:2000\"\n\
             [admin]\nbind_address = \"127.0.0.1:2001\"\n\
             [sql]\nbind_address = \"127.0.0.1:2002\"\n\
             [cluster]\nname = \"test\"\npartitions = 8\nreplication_factor = 3\n\
             [[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:1003\"\n\
             [[cluster.nodes]]\nid = 2\naddress = \"127.0.0.1:2003\"\n\
             [log]\nelection_timeout_ms = 300\nheartbeat_interval_ms = 60\n\
             max_batch_commands = 1\n"
        );
    }

    #[test]
    fn dial_overrides_pair_peers_with_addresses() {
        let routes = [
            (2, SocketAddr::from(([127, 0, 0, 1], 4100))),
            (3, SocketAddr::from(([127, 0, 0, 1], 4200))),
        ];
        assert_eq!(dial_overrides(&routes), "2=127.0.0.1:4100,3=127.0.0.1:4200");
        assert_eq!(dial_overrides(&[]), "");
    }

    #[test]
    fn cluster_views_parse_and_the_highest_term_wins() {
        let stale = serde_json::json!({
            "nodes": [{"id": 1, "address": "127.0.0.1:1003", "alive": true}],
            "partitions": [
                {"partition": 0, "leader": 1, "term": 3,
                 "replicas": [{"node": 1, "applied_index": 10, "lag": 0}]},
                {"partition": 1, "leader": null, "term": 2, "replicas": []}
            ]
        });
        let fresh = serde_json::json!({
            "nodes": [],
            "partitions": [{"partition": 0, "leader": 2, "term": 4, "replicas": []}]
        });
        let stale = ClusterView::parse(&stale).expect("parse");
        assert_eq!(stale.partitions[0].replicas[0].applied_index, Some(10));
        assert_eq!(stale.partitions[1].leader, None);
        let fresh = ClusterView::parse(&fresh).expect("parse");
        let claims = best_claims([&stale, &fresh].into_iter());
        assert_eq!(claims, BTreeMap::from([(0, (2, 4))]));

        let broken = serde_json::json!({"nodes": [], "partitions": [{"partition": 0}]});
        let error = ClusterView::parse(&broken).expect_err("no term");
        assert!(error.contains("replicas"), "{error}");
    }
}
