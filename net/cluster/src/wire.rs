//! What travels between nodes: the hello, the routes and the limits both sides agree on.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The transport's version; a hello from a node speaking another one is refused.
pub(crate) const VERSION: u32 = 1;

/// The path of the hello that opens every connection.
pub(crate) const HELLO_PATH: &str = "/v1/hello";

/// A replicated group: the metadata log or one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupId {
    /// The metadata log (deployments and services).
    Metadata,
    /// Partition `n`.
    Partition(u32),
}

impl GroupId {
    /// The group's segment in a route: `meta` or `p<n>`.
    pub(crate) fn segment(self) -> String {
        match self {
            GroupId::Metadata => "meta".to_owned(),
            GroupId::Partition(n) => format!("p{n}"),
        }
    }

    /// Parses a route segment written by [`GroupId::segment`].
    pub(crate) fn parse(segment: &str) -> Option<Self> {
        if segment == "meta" {
            return Some(GroupId::Metadata);
        }
        segment
            .strip_prefix('p')?
            .parse()
            .ok()
            .map(GroupId::Partition)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupId::Metadata => f.write_str("metadata"),
            GroupId::Partition(n) => write!(f, "partition {n}"),
        }
    }
}

/// Separate connections for traffic that must not wait behind other traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Appends and votes: small and latency-critical (heartbeats ride here).
    Raft,
    /// Requests forwarded to a partition's leader (ingress, shuffle): may wait for a handler.
    Data,
    /// Snapshots: large and patient.
    Bulk,
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lane::Raft => "raft",
            Lane::Data => "data",
            Lane::Bulk => "bulk",
        })
    }
}

/// Who this node is and which cluster it belongs to; checked by every hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `[cluster] name`.
    pub cluster: String,
    /// Digest of the cluster's fixed shape (name, partitions, replication factor, initial nodes).
    pub fingerprint: String,
    /// This node's id.
    pub node: u64,
}

/// Timeouts and bounds of the transport.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a TCP connect plus the HTTP/2 and hello handshakes may take.
    pub connect_timeout: Duration,
    /// How often an idle connection is pinged.
    pub ping_interval: Duration,
    /// A connection whose ping is not answered within this is closed.
    pub ping_timeout: Duration,
    /// The first and the largest pause before reconnecting to an unreachable peer.
    pub backoff: (Duration, Duration),
    /// Largest request or response body accepted.
    pub max_message_bytes: usize,
    /// A streamed snapshot is abandoned (by either side) after this long without progress:
    /// no flow-control window granted, no bytes received, no keepalive from an install.
    pub snapshot_idle_timeout: Duration,
    /// A remote scan is abandoned (by either side) after this long without a frame: its
    /// server sends keepalives while it waits (read barrier, slow disk), so only a stuck peer
    /// or a caller that stopped reading gets here.
    pub scan_idle_timeout: Duration,
    /// Mutual TLS between nodes; `None`: plain TCP.
    pub tls: Option<PeerTls>,
}

/// Mutual TLS of the node transport: both sides present a certificate of the cluster's CA and
/// accept only peers that do; a client checks the server's certificate against the address it
/// dialled.
#[derive(Clone)]
pub struct PeerTls {
    /// What this node's listener presents and requires.
    pub server: std::sync::Arc<holdfast_tls::ServerConfig>,
    /// What this node presents and trusts when it connects.
    pub client: std::sync::Arc<holdfast_tls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(3),
            backoff: (Duration::from_millis(50), Duration::from_secs(1)),
            max_message_bytes: 64 << 20,
            snapshot_idle_timeout: Duration::from_secs(10),
            scan_idle_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

impl Settings {
    /// The pause before reconnect attempt number `failures` (1-based): doubling, capped.
    pub(crate) fn backoff_after(&self, failures: u32) -> Duration {
        let (first, largest) = self.backoff;
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        first.saturating_mul(factor).min(largest)
    }
}

/// The first request on every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    pub(crate) cluster: String,
    pub(crate) fingerprint: String,
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// The sender's data dir incarnation (empty from a release that had none).
    #[serde(default)]
    pub(crate) incarnation: String,
}

impl Hello {
    /// Why `self` may not talk to the node `me`, if it may not.
    pub(crate) fn refusal(&self, me: &Identity) -> Option<String> {
        if self.version != VERSION {
            return Some(format!(
                "node {} speaks transport version {}, this node {VERSION}",
                self.from, self.version
            ));
        }
        if self.cluster != me.cluster {
            return Some(format!(
                "node {} belongs to cluster {:?}, this node to {:?} (key `cluster.name`)",
                self.from, self.cluster, me.cluster
            ));
        }
        if self.fingerprint != me.fingerprint {
            return Some(format!(
                "node {} has cluster fingerprint {}, this node {}: the [cluster] sections differ \
                 (partitions, replication_factor or nodes)",
                self.from, self.fingerprint, me.fingerprint
            ));
        }
        if self.to != me.node {
            return Some(format!(
                "node {} meant to reach node {} but this is node {} (check `cluster.nodes` addresses)",
                self.from, self.to, me.node
            ));
        }
        None
    }
}

/// The route of a raft message to a group.
pub(crate) fn raft_path(group: GroupId, rpc: RaftRpc) -> String {
    format!("/v1/raft/{}/{}", group.segment(), rpc.name())
}

/// The route of a request forwarded to a group's leader.
pub fn forward_path(group: GroupId) -> String {
    format!("/v1/forward/{}", group.segment())
}

/// Parses a route written by [`forward_path`].
pub(crate) fn forward_route(path: &str) -> Option<GroupId> {
    GroupId::parse(path.strip_prefix("/v1/forward/")?)
}

/// The route of a snapshot streamed whole in one request (see [`crate::raft`]).
pub(crate) fn snapshot_stream_path(group: GroupId) -> String {
    format!("/v1/raft/{}/snapshot-stream", group.segment())
}

/// Parses a route written by [`snapshot_stream_path`].
pub(crate) fn snapshot_stream_route(path: &str) -> Option<GroupId> {
    let group = path
        .strip_prefix("/v1/raft/")?
        .strip_suffix("/snapshot-stream")?;
    GroupId::parse(group)
}

/// The route of a scan of partition `partition`'s rows (see [`crate::scan`]).
pub(crate) fn scan_path(partition: u32) -> String {
    format!("/v1/scan/{}", GroupId::Partition(partition).segment())
}

/// Parses a route written by [`scan_path`]: the partition to scan.
pub(crate) fn scan_route(path: &str) -> Option<u32> {
    match GroupId::parse(path.strip_prefix("/v1/scan/")?)? {
        GroupId::Partition(partition) => Some(partition),
        GroupId::Metadata => None,
    }
}

/// Largest snapshot a node accepts in one stream: beyond any partition this release expects,
/// and a bound on what a confused peer can make it write.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Largest header (vote and snapshot metadata) in front of a streamed snapshot.
pub(crate) const MAX_SNAPSHOT_HEADER: usize = 1 << 20;

/// How much of a snapshot file the sender reads and hands to HTTP/2 at a time (HTTP/2 cuts it
/// into DATA frames of the peer's maximum frame size, as flow control lets it).
pub(crate) const SNAPSHOT_CHUNK: usize = 1 << 20;

/// The body of a snapshot stream's answer: any number of [`KEEPALIVE`] bytes while the
/// receiver installs (so the sender's idle timeout measures progress, not install time), then
/// [`ANSWERED`] and the group's encoded answer, or [`FAILED`] and a reason in UTF-8.
pub(crate) mod stream_answer {
    pub(crate) const KEEPALIVE: u8 = 0;
    pub(crate) const ANSWERED: u8 = 1;
    pub(crate) const FAILED: u8 = 2;
}

/// The raft messages a group answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRpc {
    /// AppendEntries (heartbeats included).
    Append,
    /// RequestVote.
    Vote,
    /// One chunk of a snapshot.
    Snapshot,
}

impl RaftRpc {
    fn name(self) -> &'static str {
        match self {
            RaftRpc::Append => "append",
            RaftRpc::Vote => "vote",
            RaftRpc::Snapshot => "snapshot",
        }
    }

    /// Parses `/v1/raft/<group>/<rpc>`.
    pub(crate) fn route(path: &str) -> Option<(GroupId, RaftRpc)> {
        let rest = path.strip_prefix("/v1/raft/")?;
        let (group, rpc) = rest.split_once('/')?;
        let rpc = match rpc {
            "append" => RaftRpc::Append,
            "vote" => RaftRpc::Vote,
            "snapshot" => RaftRpc::Snapshot,
            _ => return None,
        };
        Some((GroupId::parse(group)?, rpc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            cluster: "c".into(),
            fingerprint: "f".into(),
            node: 2,
        }
    }

    fn hello() -> Hello {
        Hello {
            version: VERSION,
            cluster: "c".into(),
            fingerprint: "f".into(),
            from: 1,
            to: 2,
            incarnation: "i".into(),
        }
    }

    #[test]
    fn routes_round_trip() {
        for group in [
            GroupId::Metadata,
            GroupId::Partition(0),
            GroupId::Partition(4095),
        ] {
            for rpc in [RaftRpc::Append, RaftRpc::Vote, RaftRpc::Snapshot] {
                assert_eq!(RaftRpc::route(&raft_path(group, rpc)), Some((group, rpc)));
            }
        }
        assert_eq!(RaftRpc::route("/v1/raft/q1/append"), None);
        assert_eq!(RaftRpc::route("/v1/raft/p1/elect"), None);
        assert_eq!(RaftRpc::route("/v1/raft/p1"), None);
        for group in [GroupId::Metadata, GroupId::Partition(12)] {
            let path = snapshot_stream_path(group);
            assert_eq!(snapshot_stream_route(&path), Some(group));
            assert_eq!(RaftRpc::route(&path), None);
        }
        assert_eq!(snapshot_stream_route("/v1/raft/p1/snapshot"), None);
        assert_eq!(snapshot_stream_route("/v1/raft/x/snapshot-stream"), None);
    }

    #[test]
    fn scan_routes_round_trip() {
        for partition in [0, 7, 4095] {
            let path = scan_path(partition);
            assert_eq!(scan_route(&path), Some(partition));
            assert_eq!(forward_route(&path), None);
            assert_eq!(RaftRpc::route(&path), None);
        }
        assert_eq!(scan_route("/v1/scan/meta"), None);
        assert_eq!(scan_route("/v1/scan/x1"), None);
        assert_eq!(scan_route(&forward_path(GroupId::Partition(1))), None);
    }

    #[test]
    fn a_hello_is_refused_for_each_mismatch() {
        assert_eq!(hello().refusal(&me()), None);
        type Change = fn(&mut Hello);
        let cases: [(Change, &str); 4] = [
            (|h| h.version = 9, "version"),
            (|h| h.cluster = "other".into(), "cluster.name"),
            (|h| h.fingerprint = "g".into(), "fingerprint"),
            (|h| h.to = 3, "meant to reach node 3"),
        ];
        for (change, expected) in cases {
            let mut h = hello();
            change(&mut h);
            let refusal = h.refusal(&me()).expect("refused");
            assert!(refusal.contains(expected), "{refusal}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = Settings::default();
        let pauses: Vec<u128> = (1..=7).map(|n| s.backoff_after(n).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.backoff_after(u32::MAX), Duration::from_secs(1));
    }
}
