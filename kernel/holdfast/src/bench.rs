//! `holdfast bench`: measures group commit through the real partition actors and raft groups, and
//! the raw fsync rate of the disk as the physical limit it is compared with.

use crate::{Refused, boot, load_config};
use clap::{Args, Subcommand, ValueEnum};
use holdfast_partition::Propose;
use holdfast_types::routing::partition_of;
use holdfast_types::{Command, ObjectKey, PartitionId};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Subcommand)]
pub enum Bench {
    /// Proposals per second and acknowledgement latency through the partition log.
    Log(LogArgs),
    /// Requests per second and latency of an HTTP endpoint under closed-loop load (any engine).
    Http(crate::loadgen::HttpArgs),
    /// SQL introspection over many invocations and state rows: lookups, scans, memory.
    Sql(crate::sqlbench::SqlArgs),
    /// The least a durable engine can do per request: serves invocations on one thread with
    /// group-committed durable points and nothing else, to compare the kernel's cost with.
    Floor(crate::floor::FloorArgs),
    /// Synchronous 4 KiB writes + fdatasync per second on the disk holding DIR.
    Fsync {
        /// A directory on the disk to measure.
        #[arg(long)]
        dir: PathBuf,
        /// How long to measure, in seconds.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

/// Which partitions the proposers write to.
#[derive(Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    /// Every proposer writes to partition 0.
    One,
    /// Proposer `p` writes to partition `p mod partitions`.
    All,
}

/// Options of `holdfast bench log`.
#[derive(Args)]
pub struct LogArgs {
    /// TOML configuration layered over the embedded default (use a fresh data dir).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Concurrent proposers, each waiting for its acknowledgement before proposing again.
    #[arg(long, default_value_t = 1)]
    proposers: usize,
    /// How long to propose, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Which partitions to write to.
    #[arg(long, value_enum, default_value_t = Spread::One)]
    spread: Spread,
    /// Size of each proposed state value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Print `ack <proposer> <seq> <partition> <index>` for every acknowledgement.
    #[arg(long)]
    print_acks: bool,
    /// Prefix of every state entry name, so repeated runs on one data dir write distinct entries.
    #[arg(long, default_value = "")]
    tag: String,
}

/// The value proposer `p` writes in its `seq`-th command; checkers recompute it.
fn value_of(p: usize, seq: u64, len: usize) -> Vec<u8> {
    let mut value = format!("{p}:{seq}:").into_bytes();
    value.resize(len.max(value.len()), b'x');
    value
}

/// An object key of proposer `p` that routes to `target`.
fn object_in(target: PartitionId, partitions: u32, p: usize) -> ObjectKey {
    (0u64..)
        .map(|n| ObjectKey::new("bench", format!("p{p}-{n}")))
        .find(|object| partition_of(object, partitions) == target)
        .unwrap_or_else(|| ObjectKey::new("bench", format!("p{p}")))
}

/// CPU time this process has used so far, user and system, in seconds: what a benchmark's work
/// cost beside how long it took (the OS's side of an fsync counts as system time). `None` if the
/// OS would not say.
fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer it is given and reads nothing.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: a zero status means getrusage filled the struct.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Adds the process's CPU per operation since `cpu_before` (from [`process_cpu_seconds`]), when
/// both readings exist.
fn add_cpu(result: &mut serde_json::Value, cpu_before: Option<f64>) {
    let (Some(before), Some(after)) = (cpu_before, process_cpu_seconds()) else {
        return;
    };
    let ops = result["ops"].as_u64().unwrap_or(0).max(1) as f64;
    result["cpu_ms_per_op"] = ((after - before) * 1000.0 / ops).into();
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

pub(crate) fn summary(latencies: &mut [Duration], elapsed: Duration) -> serde_json::Value {
    latencies.sort_unstable();
    serde_json::json!({
        "ops": latencies.len(),
        "seconds": elapsed.as_secs_f64(),
        "per_second": latencies.len() as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": percentile(latencies, 1.0),
    })
}

/// Runs one benchmark and prints its result as one JSON line.
pub fn run(which: Bench) -> anyhow::Result<()> {
    let result = match which {
        Bench::Log(args) => log(args)?,
        Bench::Http(args) => crate::loadgen::run(args)?,
        Bench::Sql(args) => crate::sqlbench::run(args)?,
        Bench::Floor(args) => crate::floor::run(args)?,
        Bench::Fsync { dir, seconds } => fsync(&dir, seconds)?,
    };
    println!("{result}");
    Ok(())
}

fn log(args: LogArgs) -> anyhow::Result<serde_json::Value> {
    if args.proposers == 0 {
        return Err(Refused("--proposers must be at least 1".into()).into());
    }
    let config = load_config(args.config.as_deref())?;
    let partitions = config.cluster.partitions;
    actix_rt::System::new().block_on(async move {
        let kernel = boot(&config, holdfast_otlp::SpanSink::disabled())?;
        kernel
            .caught_up(Duration::from_secs(30))
            .await
            .map_err(anyhow::Error::msg)?;
        let log_before = kernel.raft_log().stats();
        let cpu_before = process_cpu_seconds();
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.seconds);
        // SIGTERM/SIGINT end the run early: proposers finish their in-flight proposal and stop.
        let stop = Arc::new(AtomicBool::new(false));
        let signals = crate::wait_for_signal().await?;
        let stop_on_signal = stop.clone();
        actix_rt::spawn(async move {
            let signal = signals.await;
            stop_on_signal.store(true, Ordering::Relaxed);
            tracing::info!(signal, "stopping the benchmark");
        });
        let proposers = (0..args.proposers).map(|p| {
            let target = match args.spread {
                Spread::One => PartitionId(0),
                Spread::All => PartitionId((p as u32) % partitions),
            };
            let addr = kernel.partitions()[target.0 as usize].1.clone();
            let object = object_in(target, partitions, p);
            let (print, value_bytes, tag) = (args.print_acks, args.value_bytes, args.tag.clone());
            let stop = stop.clone();
            actix_rt::spawn(async move {
                let mut latencies = Vec::new();
                let mut seq = 0u64;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let command = Command::SetState {
                        object: object.clone(),
                        name: format!("{tag}p{p}-{seq}"),
                        value: value_of(p, seq, value_bytes),
                    };
                    let sent = Instant::now();
                    match addr.send(Propose(command)).await {
                        Ok(Ok(committed)) => {
                            let index = committed.index;
                            latencies.push(sent.elapsed());
                            if print {
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(out, "ack {p} {seq} {} {index}", target.0);
                            }
                        }
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(e) => return Err(e.to_string()),
                    }
                    seq += 1;
                }
                Ok(latencies)
            })
        });
        let mut latencies = Vec::new();
        for outcome in futures::future::join_all(proposers).await {
            latencies.extend(outcome?.map_err(anyhow::Error::msg)?);
        }
        let elapsed = started.elapsed();
        let mut result = summary(&mut latencies, elapsed);
        // Everything the node did for the proposals: proposers, partitions, openraft, the log.
        add_cpu(&mut result, cpu_before);
        let batches: u64 = kernel.statuses().await.iter().map(|s| s.batches).sum();
        let log_after = kernel.raft_log().stats();
        kernel.shutdown().await;
        result["bench"] = "log".into();
        result["proposers"] = args.proposers.into();
        result["spread"] = serde_json::to_value(args.spread)?;
        result["partitions"] = partitions.into();
        result["batches"] = batches.into();
        // Every partition's appends share the node's one raft-log file and its fsyncs.
        result["log_appends"] = (log_after.appends - log_before.appends).into();
        result["log_fsyncs"] = (log_after.syncs - log_before.syncs).into();
        Ok(result)
    })
}

fn fsync(dir: &std::path::Path, seconds: f64) -> anyhow::Result<serde_json::Value> {
    let path = dir.join("holdfast-fsync-bench.tmp");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = vec![0xa5u8; 4096];
    let mut latencies = Vec::new();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut offset = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
        // Append, as a log does, wrapping at 64 MiB.
        offset = (offset + 4096) % (64 << 20);
    }
    let elapsed = started.elapsed();
    let mut result = summary(&mut latencies, elapsed);
    add_cpu(&mut result, cpu_before);
    drop(file);
    std::fs::remove_file(&path)?;
    result["bench"] = "fsync".into();
    Ok(result)
}
