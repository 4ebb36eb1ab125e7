//! A snapshot streamed between two in-process nodes over the real transport: node 1's
//! `GroupPeer::full_snapshot` sends, node 2's listener spools it into its group's snapshot sink
//! and installs it through `Raft::install_full_snapshot`. The group here keeps its snapshots in
//! memory (like the metadata log); the partitions' file-backed snapshots take the same path.

use holdfast_cluster::{
    GroupId, GroupNetwork, Groups, Identity, Listener, RaftService, Settings, Transport,
};
use openraft::error::{ReplicationClosed, StreamingError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, OptionalSend, Raft,
    RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership, Vote,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Cursor;
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

openraft::declare_raft_types!(
    /// A group whose snapshots are in-memory cursors.
    pub Config:
        D = String,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<Config>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// An in-memory raft log.
#[derive(Clone, Default)]
struct Log {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    vote: Option<Vote<u64>>,
    entries: BTreeMap<u64, Entry<Config>>,
    purged: Option<LogId<u64>>,
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RaftLogReader<Config> for Log {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Config>>, StorageError<u64>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<Config> for Log {
    type LogReader = Log;

    async fn get_log_state(&mut self) -> Result<LogState<Config>, StorageError<u64>> {
        let inner = self.lock();
        let last = inner.entries.values().last().map(|entry| entry.log_id);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Log {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Config>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Config>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        for entry in entries {
            inner.entries.insert(entry.log_id.index, entry);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.lock().entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.purged = Some(log_id);
        Ok(())
    }
}

/// A state machine that keeps the last installed snapshot's bytes, and reports when a
/// snapshot starts arriving.
#[derive(Clone, Default)]
struct Machine {
    inner: Arc<Mutex<MachineInner>>,
    receiving: Arc<Notify>,
    /// When set, receiving a snapshot never gets its sink.
    stall: Arc<Mutex<bool>>,
}

#[derive(Default)]
struct MachineInner {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    installs: usize,
}

impl Machine {
    fn lock(&self) -> std::sync::MutexGuard<'_, MachineInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RaftSnapshotBuilder<Config> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Config>, StorageError<u64>> {
        let inner = self.lock();
        let (meta, data) = inner.snapshot.clone().unwrap_or_default();
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<Config> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.lock();
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Config>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.applied = Some(entry.log_id);
            if let EntryPayload::Membership(membership) = entry.payload {
                inner.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Machine {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        self.receiving.notify_one();
        if *self.stall.lock().unwrap_or_else(PoisonError::into_inner) {
            futures::future::pending::<()>().await;
        }
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), snapshot.into_inner()));
        inner.installs += 1;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Config>>, StorageError<u64>> {
        let inner = self.lock();
        Ok(inner.snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

const GROUP: GroupId = GroupId::Partition(0);

fn identity(node: u64) -> Identity {
    Identity {
        cluster: "c".into(),
        fingerprint: "fp".into(),
        node,
    }
}

fn settings(idle: Duration) -> Settings {
    Settings {
        snapshot_idle_timeout: idle,
        ..Settings::default()
    }
}

/// Node 2: a raft group of its own behind a listener. Returns its address, the group's state
/// machine and the raft (kept alive by the caller).
async fn receiver(idle: Duration) -> (SocketAddr, Machine, Raft<Config>) {
    let machine = Machine::default();
    let config = Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 10_000,
            election_timeout_max: 20_000,
            ..Default::default()
        }
        .validate()
        .expect("raft config"),
    );
    let own = Transport::new(
        identity(2),
        BTreeMap::new(),
        settings(idle),
        tokio::runtime::Handle::current(),
    );
    let raft = Raft::new(
        2,
        config,
        GroupNetwork::<Config>::new(GROUP, own),
        Log::default(),
        machine.clone(),
    )
    .await
    .expect("raft");
    let (publish, published) = watch::channel(Some(Arc::new(raft.clone()) as Arc<dyn RaftService>));
    // The group stays published for the rest of the test.
    std::mem::forget(publish);
    let listener = Listener::bind(
        "127.0.0.1:0".parse().expect("address"),
        identity(2),
        settings(idle),
        Groups::new([(GROUP, published)]),
    )
    .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(listener.serve());
    (address, machine, raft)
}

/// Node 1's link to node 2 for `group`.
async fn sender(
    address: SocketAddr,
    group: GroupId,
    idle: Duration,
) -> holdfast_cluster::GroupPeer<Config> {
    let transport = Transport::new(
        identity(1),
        BTreeMap::from([(2, address)]),
        settings(idle),
        tokio::runtime::Handle::current(),
    );
    GroupNetwork::<Config>::new(group, transport)
        .new_client(2, &BasicNode::new(address.to_string()))
        .await
}

/// A snapshot of `size` bytes (a recognizable pattern) at log index `index`.
fn snapshot(size: usize, index: u64) -> Snapshot<Config> {
    let block: Vec<u8> = (0..65_521u32).map(|n| (n % 251) as u8).collect();
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        let take = block.len().min(size - data.len());
        data.extend_from_slice(&block[..take]);
    }
    let membership = Membership::new(
        vec![BTreeSet::from([1, 2])],
        BTreeMap::from([(1, BasicNode::new("n1")), (2, BasicNode::new("n2"))]),
    );
    Snapshot {
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                membership,
            ),
            snapshot_id: format!("T1-N1-{index}-0"),
        },
        snapshot: Box::new(Cursor::new(data)),
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(1))
}

fn never() -> impl std::future::Future<Output = ReplicationClosed> + Send + 'static {
    futures::future::pending()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_mib_snapshot_streams_in_one_request_and_is_installed() {
    let idle = Duration::from_secs(10);
    let (address, machine, raft) = receiver(idle).await;
    let mut peer = sender(address, GROUP, idle).await;
    let size = 24 << 20;
    let sent = snapshot(size, 100);
    let meta = sent.meta.clone();
    let expected = sent.snapshot.get_ref().clone();
    // The whole transfer takes longer than the RPC option's deadline would allow it: only
    // the idle timeout applies.
    let started = Instant::now();
    let answer = peer
        .full_snapshot(Vote::new_committed(1, 1), sent, never(), option())
        .await
        .expect("streamed");
    println!(
        "streamed {} MiB in {} ms",
        size >> 20,
        started.elapsed().as_millis()
    );
    assert_eq!(answer.vote, Vote::new_committed(1, 1));
    {
        let inner = machine.lock();
        let (installed, bytes) = inner.snapshot.as_ref().expect("installed");
        assert_eq!(installed, &meta);
        assert_eq!(bytes.len(), expected.len());
        assert!(bytes == &expected, "the installed bytes differ");
        assert_eq!(inner.installs, 1);
    }
    let applied = raft
        .wait(Some(Duration::from_secs(5)))
        .applied_index(Some(100), "the snapshot applied")
        .await;
    assert!(applied.is_ok(), "{applied:?}");

    // A leader behind the receiver's vote is answered at once with that vote.
    let stale = peer
        .full_snapshot(
            Vote::new_committed(0, 1),
            snapshot(size, 50),
            never(),
            option(),
        )
        .await
        .expect("answered");
    assert_eq!(stale.vote, Vote::new_committed(1, 1));
    assert_eq!(machine.lock().installs, 1);
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_is_abandoned_on_both_sides() {
    let idle = Duration::from_secs(10);
    let (address, machine, raft) = receiver(idle).await;
    let mut peer = sender(address, GROUP, idle).await;
    let receiving = machine.receiving.clone();
    // openraft cancels once the receiver started spooling: the transfer is well under way.
    let cancel = async move {
        receiving.notified().await;
        ReplicationClosed::new("replication stopped")
    };
    let large = snapshot(256 << 20, 100);
    let started = Instant::now();
    let result = peer
        .full_snapshot(Vote::new_committed(1, 1), large, cancel, option())
        .await;
    assert!(
        matches!(result, Err(StreamingError::Closed(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        machine.lock().installs,
        0,
        "a cancelled snapshot was installed"
    );
    // The connection serves the next snapshot.
    peer.full_snapshot(
        Vote::new_committed(1, 1),
        snapshot(1 << 20, 100),
        never(),
        option(),
    )
    .await
    .expect("streamed after a cancel");
    assert_eq!(machine.lock().installs, 1);
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_the_peer_does_not_host_is_refused() {
    let idle = Duration::from_secs(10);
    let (address, machine, raft) = receiver(idle).await;
    let mut peer = sender(address, GroupId::Partition(7), idle).await;
    let result = peer
        .full_snapshot(
            Vote::new_committed(1, 1),
            snapshot(4 << 20, 100),
            never(),
            option(),
        )
        .await;
    match result {
        Err(StreamingError::Network(e)) => assert!(e.to_string().contains("404"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(machine.lock().installs, 0);
    raft.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_times_out_the_sender() {
    // A receiver whose storage never takes the bytes: the window runs out, then the sender's
    // idle timeout ends the transfer (no deadline for the whole transfer ever applies).
    let idle = Duration::from_millis(400);
    let (address, machine, _raft) = receiver(Duration::from_secs(60)).await;
    *machine.stall.lock().unwrap_or_else(PoisonError::into_inner) = true;
    let mut peer = sender(address, GROUP, idle).await;
    let large = snapshot(64 << 20, 100);
    let started = Instant::now();
    let result = peer
        .full_snapshot(Vote::new_committed(1, 1), large, never(), option())
        .await;
    assert!(
        matches!(result, Err(StreamingError::Timeout(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(machine.lock().installs, 0);
}
