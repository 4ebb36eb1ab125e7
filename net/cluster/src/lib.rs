//! The cluster transport: how the nodes of a cluster reach each other.
//!
//! One HTTP/2 listener per node (its `[[cluster.nodes]].address`), and from each node one
//! connection per peer and [`Lane`], shared by every raft group, so that a snapshot on the bulk
//! lane never delays the heartbeats and votes on the raft lane. Every connection starts with a
//! hello that carries the cluster's name and fingerprint and the node it means to reach; a
//! mismatch is refused and logged on both sides, as is a node id that comes back with another
//! data dir ([`Incarnations`]). Bodies use the versioned log codec
//! ([`holdfast_types::codec`]).
//!
//! ```text
//!   raft group ── GroupNetwork ── Transport (client) ══ h2 ══► Listener ── Groups ── Raft
//!                                   one connection per (peer, lane), reconnect with backoff
//! ```

mod client;
mod incarnations;
mod raft;
mod scan;
mod server;
mod wire;

pub use client::{CallError, Transport};
pub use incarnations::{IncarnationError, Incarnations};
pub use raft::{GroupNetwork, GroupPeer, RaftService};
pub use scan::{ScanChunks, ScanError, ScanReply, ScanService};
pub use server::{ForwardService, Groups, Listener, Published, ServeError};
pub use wire::{GroupId, Identity, Lane, PeerTls, RaftRpc, Settings, forward_path};

/// Test-only: `HOLDFAST_TEST_DIAL_OVERRIDES="2=127.0.0.1:4000,3=127.0.0.1:4001"` makes this node
/// dial those peers at those addresses (the test harness's fault-injecting proxies).
pub const DIAL_OVERRIDES_ENV: &str = "HOLDFAST_TEST_DIAL_OVERRIDES";

/// Reads [`DIAL_OVERRIDES_ENV`]: peer id → address to dial instead of the configured one.
pub fn dial_overrides_from_env() -> Vec<(u64, std::net::SocketAddr)> {
    let Ok(text) = std::env::var(DIAL_OVERRIDES_ENV) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|pair| {
            let (id, address) = pair.trim().split_once('=')?;
            Some((id.trim().parse().ok()?, address.trim().parse().ok()?))
        })
        .collect()
}
