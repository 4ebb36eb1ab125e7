//! How many fsyncs the node's groups share under load: `cargo test -p holdfast-raft-store
//! --test shared_log_figures -- --ignored --nocapture` prints the writer's counters for groups
//! appending one entry at a time, each waiting for its fsync (as openraft does).

use holdfast_raft_store::{Batch, GroupKey, LogStore, SharedLog};
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload};
use std::time::Instant;

const APPENDS_PER_GROUP: u64 = 200;

async fn run(groups: u32) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for group in 0..groups {
        let store: LogStore = LogStore::new(&log, GroupKey(group));
        tasks.push(tokio::spawn(async move {
            for index in 1..=APPENDS_PER_GROUP {
                let entry = Entry {
                    log_id: log_id(1, 1, index),
                    payload: EntryPayload::Normal(Batch::default()),
                };
                store.append_entries([entry]).await?;
            }
            Ok::<_, holdfast_raft_store::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let s = log.stats();
    println!(
        "{groups:>3} groups: {} appends in {} commits ({} fsyncs), {:.1} appends/fsync, \
         {:.1} groups/commit (max {}), {:.0} appends/s",
        s.appends,
        s.commits,
        s.syncs,
        s.appends as f64 / s.syncs.max(1) as f64,
        s.group_writes as f64 / s.commits.max(1) as f64,
        s.max_groups_per_commit,
        s.appends as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: prints figures"]
async fn appends_of_many_groups_share_fsyncs() -> Result<(), Box<dyn std::error::Error>> {
    for groups in [1, 4, 16, 64] {
        run(groups).await?;
    }
    Ok(())
}
