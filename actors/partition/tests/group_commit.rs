//! The partition actor over a real openraft group and real redb files in a temporary directory.

use actix::{Actor, Addr};
use holdfast_partition::{GetStatus, PartitionActor, Propose, ProposeError, Settings, Shutdown};
use holdfast_raft_group::Replication;
use holdfast_raft_store::StateMachine;
use holdfast_types::{Command, NodeId, ObjectKey, PartitionId};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn settings(dir: &Path) -> Settings {
    settings_with_log(dir, dir)
}

/// Settings whose node raft-log file is in `log_dir`.
fn settings_with_log(dir: &Path, log_dir: &Path) -> Settings {
    let raft = openraft::Config {
        election_timeout_min: 150,
        election_timeout_max: 300,
        heartbeat_interval: 50,
        ..Default::default()
    }
    .validate()
    .expect("raft config");
    Settings {
        partition: PartitionId(0),
        dir: dir.to_path_buf(),
        log: holdfast_raft_store::SharedLog::open(&log_dir.join("raft-log.redb"))
            .expect("open the raft log"),
        state_cache_bytes: holdfast_raft_store::STATE_CACHE_BYTES,
        replication: Replication::sole(
            NodeId(1),
            holdfast_cluster::GroupId::Partition(0),
            Arc::new(raft),
        ),
        max_batch_commands: 1024,
        max_batch_bytes: 1 << 20,
        max_queued: 1 << 16,
        proposal_deadline: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        max_concurrent_attempts: 64,
        flush_interval: Duration::from_millis(200),
        registry: tokio::sync::watch::channel(Default::default()).1,
        endpoints: holdfast_endpoint::EndpointClient::new(Default::default()),
        timeouts: holdfast_invocation::Timeouts::default(),
        fsm: holdfast_fsm::Config::default(),
        published: Arc::new(tokio::sync::watch::channel(None).0),
        spans: holdfast_otlp::SpanSink::disabled(),
        placement: Arc::new(holdfast_schema::Placement::single(1)),
    }
}

fn set(i: usize) -> Command {
    Command::SetState {
        object: ObjectKey::new("Counter", format!("k{}", i % 7)),
        name: format!("n{i}"),
        value: i.to_le_bytes().to_vec(),
    }
}

async fn until_leader(addr: &Addr<PartitionActor>) {
    for _ in 0..500 {
        let status = addr.send(GetStatus).await.expect("status");
        if status.leader == Some(NodeId(1)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("partition never elected a leader");
}

#[actix_rt::test]
async fn concurrent_proposals_are_group_committed_and_all_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = PartitionActor::new(settings(dir.path())).start();
    until_leader(&addr).await;

    let proposals = (0..500).map(|i| addr.send(Propose(set(i))));
    let indexes: Vec<_> = futures::future::join_all(proposals)
        .await
        .into_iter()
        .map(|r| r.expect("mailbox").expect("acknowledged").index.0)
        .collect();

    let status = addr.send(GetStatus).await.expect("status");
    assert_eq!(status.proposals, 500);
    assert!(
        status.batches < 100,
        "500 concurrent proposals took {} batches",
        status.batches
    );
    assert_eq!(status.batch_size.count, status.batches);
    assert_eq!(status.commit_latency.count, 500);
    // Entries are acknowledged in log order, and no later than they were applied.
    assert!(indexes.windows(2).all(|w| w[0] <= w[1]));
    assert!(status.applied_index.0 >= indexes[indexes.len() - 1]);

    addr.send(Shutdown).await.expect("shutdown");
    let refused = addr.send(Propose(set(0))).await.expect("mailbox");
    assert_eq!(
        refused.err(),
        Some(ProposeError::ShuttingDown(PartitionId(0)))
    );
    drop(addr);

    // Shutdown flushed the applied state: it is all on disk.
    let state = StateMachine::open(&dir.path().join("state.redb")).expect("open state");
    assert_eq!(state.summary().expect("summary").commands_applied, 500);
    assert_eq!(state.entries().expect("entries").len(), 500);
}

#[actix_rt::test]
async fn a_restarted_partition_resumes_its_log_and_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = PartitionActor::new(settings(dir.path())).start();
    until_leader(&first).await;
    let acked = first
        .send(Propose(set(1)))
        .await
        .expect("mailbox")
        .expect("ack")
        .index;
    first.send(Shutdown).await.expect("shutdown");
    drop(first);

    let second = PartitionActor::new(settings(dir.path())).start();
    until_leader(&second).await;
    let next = second
        .send(Propose(set(2)))
        .await
        .expect("mailbox")
        .expect("ack")
        .index;
    assert!(
        next > acked,
        "the log continues after {acked:?}, got {next:?}"
    );
    second.send(Shutdown).await.expect("shutdown");
    drop(second);

    let state = StateMachine::open(&dir.path().join("state.redb")).expect("open state");
    assert_eq!(state.summary().expect("summary").commands_applied, 2);
}

#[actix_rt::test]
async fn the_supervisor_restarts_a_partition_that_failed_to_start() {
    let root = tempfile::tempdir().expect("tempdir");
    // A file where the partition directory's parent should be: opening the stores fails.
    let blocker = root.path().join("blocked");
    std::fs::write(&blocker, b"not a directory").expect("write blocker");
    let addr = actix::Supervisor::start({
        let settings = settings_with_log(&blocker.join("partition-0"), root.path());
        move |_| PartitionActor::new(settings)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = addr
        .send(GetStatus)
        .await
        .expect("the supervisor keeps the mailbox open");
    assert_eq!(status.leader, None, "cannot lead without its stores");

    // Once the disk problem is fixed, a later restart opens the stores and the group elects.
    std::fs::remove_file(&blocker).expect("remove blocker");
    until_leader(&addr).await;
    let acked = addr.send(Propose(set(1))).await.expect("mailbox");
    assert!(acked.is_ok(), "{acked:?}");
    addr.send(Shutdown).await.expect("shutdown");
}
