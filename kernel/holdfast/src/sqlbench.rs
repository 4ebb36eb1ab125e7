//! `holdfast bench sql`: SQL introspection over real partition stores holding many invocations and
//! state rows — point-lookup latency, full `count(*)` latency, and the process's memory while a
//! scan streams (it must not grow with the table).

use clap::Args;
use holdfast_introspection::{PartitionStores, QueryEngine, QueryLimits};
use holdfast_protocol::Payload;
use holdfast_raft_store::{Batch, StateMachine, TypeConfig};
use holdfast_types::{
    Command, HandlerKind, InvocationId, InvocationRequest, ObjectKey, PartitionId, Source, Target,
    routing,
};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `holdfast bench sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// A fresh directory for the partition stores.
    #[arg(long)]
    dir: PathBuf,
    /// Partitions to spread the data over.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Invocations to create (each running, with its input journaled).
    #[arg(long, default_value_t = 100_000)]
    invocations: u64,
    /// Object state rows to create (100 per object).
    #[arg(long, default_value_t = 1_000_000)]
    state_rows: u64,
    /// Point lookups to time.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
}

/// The stores, as the kernel hands them to the engine.
struct Stores(Vec<(PartitionId, StateMachine)>, u32);

impl PartitionStores for Stores {
    fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
        self.0.clone()
    }

    fn partition_count(&self) -> u32 {
        self.1
    }
}

/// Commands applied per raft entry while loading.
const LOAD_BATCH: usize = 5_000;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the benchmark and returns its JSON summary.
pub fn run(args: SqlArgs) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let count = args.partitions.max(1);
        let mut stores = Vec::new();
        for n in 0..count {
            let path = args.dir.join(format!("partition-{n}"));
            std::fs::create_dir_all(&path)?;
            stores.push((
                PartitionId(n),
                StateMachine::open(&path.join("state.redb"))?,
            ));
        }
        let loading = Instant::now();
        let mut pending: Vec<Vec<Command>> = vec![Vec::new(); count as usize];
        let mut next_index = vec![0u64; count as usize];
        let mut ids = Vec::new();
        let target = Target::new("Bench", "run", None);
        let mut flush = |partition: usize, commands: Vec<Command>| {
            next_index[partition] += 1;
            let entry = Entry::<TypeConfig> {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), next_index[partition]),
                payload: EntryPayload::Normal(Batch::new(commands)),
            };
            let mut store = stores[partition].1.clone();
            async move { store.apply(vec![entry]).await.map(|_| ()) }
        };
        for i in 0..args.invocations {
            let id = InvocationId::new(&target, routing::hash128(&[b"bench", &i.to_be_bytes()]));
            if ids.len() < 10_000 {
                ids.push(id);
            }
            let partition = id.partition(count).0 as usize;
            pending[partition].push(Command::Invoke(Box::new(InvocationRequest {
                id,
                target: target.clone(),
                kind: HandlerKind::Shared,
                argument: Payload::from(&b"{}"[..]),
                headers: Vec::new(),
                source: Source::Ingress,
                idempotency_key: None,
                retention_ms: 86_400_000,
                response: false,
                at_ms: 1_700_000_000_000,
                deployment: None,
                retry: None,
                secret: 0,
                execute_at_ms: None,
                trace: None,
            })));
            if pending[partition].len() >= LOAD_BATCH {
                flush(partition, std::mem::take(&mut pending[partition])).await?;
            }
        }
        for i in 0..args.state_rows {
            let object = ObjectKey::new("BenchObject", format!("k{}", i / 100));
            let partition = routing::partition_of(&object, count).0 as usize;
            pending[partition].push(Command::SetState {
                object,
                name: format!("n{}", i % 100),
                value: format!("{{\"value\":{i}}}").into_bytes(),
            });
            if pending[partition].len() >= LOAD_BATCH {
                flush(partition, std::mem::take(&mut pending[partition])).await?;
            }
        }
        for (partition, rest) in pending.into_iter().enumerate() {
            if !rest.is_empty() {
                flush(partition, rest).await?;
            }
        }
        let load_seconds = loading.elapsed().as_secs_f64();

        let registry = tokio::sync::watch::channel(Arc::new(holdfast_schema::Registry::new())).1;
        let engine = QueryEngine::new(
            Arc::new(Stores(stores, count)),
            registry,
            QueryLimits {
                statement_timeout: Duration::from_secs(600),
                max_rows: 10_000_000,
            },
        );
        // Warm up the engine, then time point lookups by invocation id.
        engine.query("SELECT 1").await?;
        let mut lookups = Vec::with_capacity(args.lookups);
        for n in 0..args.lookups {
            let id = ids[(n * 7919) % ids.len().max(1)];
            let sql = format!("SELECT id, status FROM sys_invocation WHERE id = '{id}'");
            let started = Instant::now();
            let result = engine.query(&sql).await?;
            lookups.push(started.elapsed());
            anyhow::ensure!(
                result.num_rows() == 1,
                "lookup of {id} found {} rows",
                result.num_rows()
            );
        }
        let lookup = crate::bench::summary(&mut lookups, Duration::from_secs(1));

        // Full scans, with the resident memory sampled while they stream.
        let rss_before = rss_kib("VmRSS:");
        let peak = Arc::new(AtomicU64::new(rss_before));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut scans = serde_json::Map::new();
        let invocations = args.invocations.to_string();
        let states = args.state_rows.to_string();
        // Each query with what its answer must show: the counts, and the web UI's pages (its
        // overview's counts by status, a page of the invocation list newest first, unfiltered
        // and filtered by service and status).
        let page = |clause: &str| {
            format!(
                "SELECT id, target, target_service_name, target_service_key, \
                 target_handler_name, status, completion_result, retry_count, journal_size, \
                 created_at, modified_at, completed_at, last_failure FROM sys_invocation \
                 {clause} ORDER BY created_at DESC, id LIMIT 51 OFFSET 0"
            )
        };
        for (name, sql, shows) in [
            (
                "count_invocations",
                "SELECT count(*) AS n FROM sys_invocation".to_owned(),
                Shows::Text(&invocations),
            ),
            (
                "count_state",
                "SELECT count(*) AS n FROM state".to_owned(),
                Shows::Text(&states),
            ),
            (
                "ui_overview",
                "SELECT status, completion_result, count(*) AS n FROM sys_invocation \
                 GROUP BY status, completion_result"
                    .to_owned(),
                Shows::Text(&invocations),
            ),
            ("ui_list_page", page(""), Shows::Rows(51)),
            (
                "ui_list_page_filtered",
                page("WHERE target_service_name = 'Bench' AND status = 'running'"),
                Shows::Rows(51),
            ),
        ] {
            let mut times = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let result = engine.query(&sql).await?;
                times.push(started.elapsed());
                let rendered = holdfast_introspection::render_table(&result);
                let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
                let shown = match shows {
                    Shows::Text(text) => rendered.contains(text),
                    Shows::Rows(n) => rows == n,
                };
                anyhow::ensure!(shown, "{sql} returned {rendered}");
            }
            times.sort();
            scans.insert(
                format!("{name}_ms"),
                (times[1].as_secs_f64() * 1000.0).into(),
            );
        }
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        let mut result = serde_json::json!({
            "bench": "sql",
            "partitions": count,
            "invocations": args.invocations,
            "state_rows": args.state_rows,
            "load_seconds": load_seconds,
            "lookup_p50_ms": lookup["p50_ms"],
            "lookup_p99_ms": lookup["p99_ms"],
            "rss_before_scans_mib": rss_before as f64 / 1024.0,
            "rss_peak_during_scans_mib": peak.load(Ordering::Relaxed) as f64 / 1024.0,
        });
        if let Some(object) = result.as_object_mut() {
            object.extend(scans);
        }
        Ok(result)
    })
}

/// What a benchmarked query's answer must show to count.
#[derive(Clone, Copy)]
enum Shows<'a> {
    /// This text somewhere in the rendered table.
    Text(&'a str),
    /// Exactly this many rows.
    Rows(usize),
}
