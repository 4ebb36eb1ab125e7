//! `holdfast`: the kernel binary.
//!
//! - `holdfast serve [--config FILE] [--check]` runs a node (or only validates its configuration).
//! - `holdfast bench log|fsync …` measures group commit and the disk's raw fsync rate.
//! - `holdfast dump [--config FILE]` recovers every partition and prints its applied state.
//! - `holdfast keys public [--config FILE]` prints the node's request-signing public key
//!   (`publickeyv1_…`), creating the key file on first use.
//! - `holdfast sql "QUERY"`, `holdfast deployments|services|invocations|state|cluster …`,
//!   `holdfast schedules|limits …` talk to a running node's admin API (`--admin-url URL`,
//!   `--admin ADDR` or `--config FILE`; see [`cli`]) and print tables, or JSON with `--json`.
//!
//! Exit status: 0 on success, 2 when the configuration or data dir is refused, 1 on other failures.

mod admin_client;
mod bench;
mod cli;
mod cluster;
mod datadir;
mod dispatch;
mod floor;
mod kernel;
mod keys;
mod loadgen;
mod sqlbench;
mod tls;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use holdfast_config::Config;
use kernel::{BootError, Kernel};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The kernel allocates and frees many small buffers per step (frames, commands, futures):
/// mimalloc's thread-local free lists measured cheaper than glibc's malloc (docs/benchmarks.md).
/// Built without its huge-page advice (`no_thp`): it runs before `main`, and a first fault in an
/// advised region could stall start-up for seconds compacting memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "holdfast", version, about = "Durable execution kernel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        /// TOML configuration layered over the embedded single-node default.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Validate the configuration, print it, and exit.
        #[arg(long)]
        check: bool,
    },
    /// Measure the log or the disk.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Recover every partition from its data dir and print its applied state as JSON.
    Dump {
        /// TOML configuration layered over the embedded single-node default.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run a SQL query against a running node (its admin API) and print the rows as a table
    /// (`--json`: a JSON array).
    Sql {
        /// The query, e.g. `SELECT id, status FROM sys_invocation`.
        query: String,
        #[command(flatten)]
        admin: cli::AdminArgs,
    },
    /// Register, list, describe and remove deployments.
    Deployments(cli::AdminCommand<cli::deployments::DeploymentsCommand>),
    /// List and describe services, and change their settings.
    Services(cli::AdminCommand<cli::services::ServicesCommand>),
    /// List, describe and control invocations (one by id, or every match of filters).
    Invocations(cli::AdminCommand<cli::invocations::InvocationsCommand>),
    /// Read the state of virtual objects and workflows.
    State(cli::AdminCommand<cli::state::StateCommand>),
    /// List, create, pause, resume and remove schedules.
    Schedules(cli::AdminCommand<cli::schedules::SchedulesCommand>),
    /// List, create, change and remove flow-control limits, with what each has waiting.
    Limits(cli::AdminCommand<cli::limits::LimitsCommand>),
    /// Inspect the cluster through a node's admin API.
    Cluster(cli::AdminCommand<cli::cluster::ClusterCommand>),
    /// The node's request-signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Certificates for TLS listeners and mutual TLS between nodes.
    #[command(subcommand)]
    Tls(TlsCommand),
}

/// What `holdfast tls` does.
#[derive(Subcommand)]
enum TlsCommand {
    /// Issue a certificate signed by the certificate authority in `--dir` (created there as
    /// `ca.pem` + `ca-key.pem` if absent), valid for server and client authentication, written
    /// as `<name>.pem` + `<name>-key.pem`. For clusters and tests that run their own CA.
    Issue {
        /// Directory of the CA and the issued files.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// File name stem of the certificate, e.g. `node-1`.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// DNS name or IP address the certificate is for (repeatable): a node's certificate
        /// names the IP of its `[[cluster.nodes]] address`.
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
    },
}

/// What `holdfast keys` does.
#[derive(Subcommand)]
enum KeysCommand {
    /// Print the public key service endpoints verify requests with (`publickeyv1_…`), reading
    /// `node.signing_key_file` or `<data_dir>/signing-key` (created if absent).
    Public {
        /// TOML configuration layered over the embedded single-node default.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// A failure that maps to exit status 2: the user's configuration or data dir was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn load_config(file: Option<&std::path::Path>) -> Result<Config, Refused> {
    Config::load(file).map_err(|e| Refused(e.to_string()))
}

fn boot(config: &Config, spans: holdfast_otlp::SpanSink) -> anyhow::Result<Kernel> {
    Kernel::boot(config, spans).map_err(|e| match e {
        BootError::DataDir(_)
        | BootError::Raft(_)
        | BootError::Peers(_)
        | BootError::SigningKey(_)
        | BootError::Tls(_) => Refused(e.to_string()).into(),
        BootError::Metadata(_) | BootError::Cluster(_) => anyhow::Error::new(e),
    })
}

/// Turns transparent huge pages off for this process. The allocator returns freed memory to the
/// OS and takes it back as load comes and goes; with huge pages every such fault zeroes 2 MiB,
/// which measured as a sixth of the kernel's CPU under load (docs/benchmarks.md).
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) only sets a flag on this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_huge_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve { config, check } => serve(config, check),
        Command::Bench(which) => bench::run(which),
        Command::Dump { config } => dump(config),
        Command::Sql { query, admin } => admin.run(|ctx| cli::sql::run(ctx, &query)),
        Command::Deployments(c) => c.run(cli::deployments::run),
        Command::Services(c) => c.run(cli::services::run),
        Command::Invocations(c) => c.run(cli::invocations::run),
        Command::State(c) => c.run(cli::state::run),
        Command::Schedules(c) => c.run(cli::schedules::run),
        Command::Limits(c) => c.run(cli::limits::run),
        Command::Cluster(c) => c.run(cli::cluster::run),
        Command::Keys(KeysCommand::Public { config }) => keys_public(config),
        Command::Tls(TlsCommand::Issue { dir, name, hosts }) => {
            tls::issue(&dir, &name, &hosts).map_err(|e| Refused(e.to_string()).into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Refused>() => {
            eprintln!("holdfast: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("holdfast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn keys_public(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(config.as_deref())?;
    let signer = keys::load(&config).map_err(|e| Refused(e.to_string()))?;
    println!("{}", signer.public_key());
    Ok(())
}

fn serve(file: Option<PathBuf>, check: bool) -> anyhow::Result<()> {
    let config = load_config(file.as_deref())?;
    if check {
        tls::NodeTls::load(&config).map_err(|e| Refused(e.to_string()))?;
        println!(
            "configuration ok: node {} with {} partitions, data dir {}, admin {}, ingress {}, sql {}",
            config.node.id,
            config.cluster.partitions,
            config.node.data_dir.display(),
            config.admin.bind_address,
            config.ingress.bind_address,
            config.sql.bind_address
        );
        return Ok(());
    }
    let exporter = start_exporter(&config)?;
    let spans = exporter
        .as_ref()
        .map_or_else(holdfast_otlp::SpanSink::disabled, |exporter| {
            exporter.sink()
        });
    let node = (
        config.node.data_dir.clone(),
        config.node.id,
        config.cluster.identity(),
    );
    let served = actix_rt::System::new().block_on(async move {
        let signals = wait_for_signal().await?;
        let kernel = boot(&config, spans.clone())?;
        kernel.declare_limits(config.limits.clone());
        let query = holdfast_introspection::QueryEngine::new(
            kernel.stores(),
            kernel.registry(),
            holdfast_introspection::QueryLimits {
                statement_timeout: Duration::from_millis(config.sql.statement_timeout_ms),
                max_rows: usize::try_from(config.sql.max_rows).unwrap_or(usize::MAX),
            },
        )
        .with_resources(holdfast_introspection::ResourceLimits {
            memory_limit_bytes: usize::try_from(config.sql.memory_limit_bytes)
                .unwrap_or(usize::MAX),
            max_result_bytes: usize::try_from(config.sql.max_result_bytes).unwrap_or(usize::MAX),
        })
        .with_cluster(std::sync::Arc::new(kernel.replicas()));
        // Ingress counts responses into this handle; the admin API renders it at /metrics.
        let ingress_config = holdfast_ingress::IngressConfig {
            spans: spans.clone(),
            max_body_bytes: config.invocation.max_message_bytes,
            auth: bearer_auth(
                &config.ingress.auth_tokens,
                config.ingress.auth_token_file.as_ref(),
                &config.ingress.file_tokens,
            ),
            cors: holdfast_ingress::access::Cors::new(
                config.ingress.cors_allowed_origins.iter().cloned(),
            ),
            tls: kernel.tls().ingress.clone(),
            ..holdfast_ingress::IngressConfig::default()
        };
        warn_if_exposed(&config);
        let admin = match holdfast_admin::serve_with(
            config.admin.bind_address,
            holdfast_admin::Kernel {
                node: kernel.node(),
                partitions: kernel.partitions().to_vec(),
                metadata: kernel.metadata().clone(),
                registry: kernel.registry(),
                endpoints: kernel.endpoints().clone(),
                attempt_defaults: kernel::attempt_defaults(&config.invocation),
                query: query.clone(),
                ingress_metrics: ingress_config.metrics.clone(),
                spans: spans.clone(),
                cluster: holdfast_admin::ClusterInfo {
                    name: config.cluster.name.clone(),
                    placement: kernel.placement(),
                    transport: kernel.transport().clone(),
                },
                router: kernel.router().clone(),
                log: kernel.raft_log().clone(),
                ingress_endpoint: Some(format!(
                    "{}://{}/",
                    if config.ingress.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    },
                    config.ingress.bind_address
                )),
                trace_url: config.tracing.trace_url.clone(),
            },
            holdfast_admin::AdminAccess {
                auth: bearer_auth(
                    &config.admin.auth_tokens,
                    config.admin.auth_token_file.as_ref(),
                    &config.admin.file_tokens,
                ),
                deployment_allowlist: config.admin.deployment_allowlist.clone(),
            },
            kernel.tls().admin.clone(),
        ) {
            Ok(admin) => admin,
            Err(e) => {
                kernel.shutdown().await;
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on admin address {} (key `admin.bind_address`)",
                        config.admin.bind_address
                    )
                });
            }
        };
        let dispatcher =
            dispatch::KernelDispatcher::new(kernel.router().clone(), kernel.registry());
        let ingress = match holdfast_ingress::serve(
            config.ingress.bind_address,
            ingress_config,
            kernel.registry(),
            std::sync::Arc::new(dispatcher),
        ) {
            Ok(ingress) => ingress,
            Err(e) => {
                admin.handle().stop(true).await;
                kernel.shutdown().await;
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on ingress address {} (key `ingress.bind_address`)",
                        config.ingress.bind_address
                    )
                });
            }
        };
        let engine = query.clone();
        let pg = match holdfast_pgwire::PgServer::bind_secured(
            config.sql.bind_address,
            std::sync::Arc::new(move || engine.context()),
            holdfast_pgwire::PgLimits {
                statement_timeout: Duration::from_millis(config.sql.statement_timeout_ms),
                max_rows: usize::try_from(config.sql.max_rows).unwrap_or(usize::MAX),
                max_result_bytes: usize::try_from(config.sql.max_result_bytes)
                    .unwrap_or(usize::MAX),
                max_connections: usize::try_from(config.sql.max_connections).unwrap_or(usize::MAX),
                startup_timeout: Duration::from_millis(config.sql.startup_timeout_ms),
                idle_timeout: Duration::from_millis(config.sql.idle_timeout_ms),
                max_message_bytes: usize::try_from(config.sql.max_message_bytes)
                    .unwrap_or(usize::MAX),
            },
            holdfast_pgwire::PgSecurity {
                password: config
                    .sql
                    .password
                    .as_ref()
                    .map(|p| holdfast_pgwire::PgPassword::new(p.expose())),
                tls: kernel.tls().sql.clone(),
            },
        )
        .await
        {
            Ok(pg) => pg,
            Err(e) => {
                ingress.handle().stop(true).await;
                admin.handle().stop(true).await;
                kernel.shutdown().await;
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on sql address {} (key `sql.bind_address`)",
                        config.sql.bind_address
                    )
                });
            }
        };
        let admin_handle = admin.handle();
        let admin_task = actix_rt::spawn(admin);
        let ingress_handle = ingress.handle();
        let ingress_task = actix_rt::spawn(ingress);
        tracing::info!(
            node = config.node.id,
            partitions = config.cluster.partitions,
            admin = %config.admin.bind_address,
            ingress = %config.ingress.bind_address,
            sql = %pg.local_addr(),
            data_dir = %config.node.data_dir.display(),
            "holdfast is running"
        );
        let signal = signals.await;
        tracing::info!(signal, "shutting down: finishing in-flight commits");
        ingress_handle.stop(true).await;
        let _ = ingress_task.await;
        if let Err(e) = pg.shutdown().await {
            tracing::warn!(error = %e, "the sql endpoint did not stop cleanly");
        }
        admin_handle.stop(true).await;
        let _ = admin_task.await;
        kernel.shutdown().await;
        tracing::info!("stopped cleanly");
        Ok(())
    });
    if served.is_ok() {
        compact_data_dir(&node.0, node.1, &node.2);
    }
    if let Some(exporter) = exporter
        && !exporter.shutdown(EXPORT_SHUTDOWN)
    {
        tracing::warn!(
            "span export did not finish within {EXPORT_SHUTDOWN:?}; remaining spans dropped"
        );
    }
    served
}

/// After a clean stop, with every store closed: gives the data dir's free pages back to the
/// file system (see `DataDir::compact_files`).
fn compact_data_dir(root: &Path, node_id: u64, cluster: &holdfast_config::ClusterIdentity) {
    let started = std::time::Instant::now();
    let opened = datadir::DataDir::open(root, node_id, cluster);
    match opened {
        Ok(data_dir) => {
            let (before, after) = data_dir.compact_files();
            if before > 0 {
                tracing::info!(
                    before_bytes = before,
                    after_bytes = after,
                    ms = started.elapsed().as_millis() as u64,
                    "compacted the data dir's files"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "the data dir was not compacted"),
    }
}

/// Warns about an HTTP listener bound beyond loopback that lets anyone in: whoever reaches the
/// address can invoke services (ingress) or register, kill and query (admin).
/// A listener's tokens: the inline ones, and those of its token file, re-read when it changes.
fn bearer_auth(
    inline: &[holdfast_config::Token],
    file: Option<&PathBuf>,
    file_tokens: &[holdfast_config::Token],
) -> holdfast_ingress::access::BearerAuth {
    let auth = holdfast_ingress::access::BearerAuth::new(inline.iter().map(|t| t.expose()));
    let Some(file) = file else {
        return auth;
    };
    auth.with_token_file(
        file.clone(),
        file_tokens.iter().map(|t| t.expose()),
        |path| {
            holdfast_config::read_token_file(path)
                .map(|tokens| tokens.iter().map(|t| t.expose().to_owned()).collect())
        },
    )
}

fn warn_if_exposed(config: &Config) {
    let listeners = [
        (
            "ingress",
            config.ingress.bind_address,
            config.ingress.auth_tokens.is_empty() && config.ingress.auth_token_file.is_none(),
            config.ingress.tls.is_none(),
        ),
        (
            "admin",
            config.admin.bind_address,
            config.admin.auth_tokens.is_empty() && config.admin.auth_token_file.is_none(),
            config.admin.tls.is_none(),
        ),
        (
            "sql",
            config.sql.bind_address,
            config.sql.password.is_none(),
            config.sql.tls.is_none(),
        ),
    ];
    for (name, address, open, plain) in listeners {
        if address.ip().is_loopback() {
            continue;
        }
        if open {
            tracing::warn!(
                listener = name,
                %address,
                "the {name} listener is bound to a non-loopback address without authentication: \
                 anyone who reaches it can use it; set its tokens or password (docs/security.md)"
            );
        }
        if plain {
            tracing::warn!(
                listener = name,
                %address,
                "the {name} listener is bound to a non-loopback address without TLS: credentials \
                 and data cross the network in clear; set `{name}.tls_cert_file` and \
                 `{name}.tls_key_file` (docs/security.md)"
            );
        }
    }
    let transport = config.member().address;
    if config.cluster.tls.is_none() && !transport.ip().is_loopback() {
        tracing::warn!(
            %transport,
            "the node transport listens on a non-loopback address without TLS: anyone who \
             reaches it can pose as a peer; set `cluster.tls_ca_file`, `cluster.tls_cert_file` \
             and `cluster.tls_key_file` (docs/security.md)"
        );
    }
}

/// How long shutdown waits for queued spans to reach the collector.
const EXPORT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Starts span export when `[tracing] endpoint` is set.
fn start_exporter(config: &Config) -> anyhow::Result<Option<holdfast_otlp::Exporter>> {
    let Some(endpoint) = &config.tracing.endpoint else {
        return Ok(None);
    };
    let section = &config.tracing;
    let settings = holdfast_otlp::ExportSettings {
        endpoint: endpoint.clone(),
        service_name: section.service_name.clone(),
        node_id: config.node.id,
        queue_capacity: section.queue_capacity,
        batch_size: section.batch_size,
        flush_interval: Duration::from_millis(section.flush_interval_ms),
        export_timeout: Duration::from_millis(section.export_timeout_ms),
    };
    let exporter = holdfast_otlp::start(settings).with_context(|| {
        format!("cannot start span export to {endpoint} (key `tracing.endpoint`)")
    })?;
    tracing::info!(url = exporter.url(), "exporting spans over OTLP/HTTP");
    Ok(Some(exporter))
}

/// Installs SIGTERM and SIGINT handlers now and returns a future that resolves with the name of
/// the first one received.
async fn wait_for_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

fn dump(file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(file.as_deref())?;
    actix_rt::System::new().block_on(async {
        let kernel = boot(&config, holdfast_otlp::SpanSink::disabled())?;
        let recovered = kernel.caught_up(Duration::from_secs(60)).await;
        kernel.shutdown().await;
        recovered.map_err(anyhow::Error::msg)?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The kernel has flushed and closed every store; read them back as they are on disk.
    let data_dir = datadir::DataDir::open(
        &config.node.data_dir,
        config.node.id,
        &config.cluster.identity(),
    )
    .map_err(|e| Refused(e.to_string()))?;
    let mut partitions = Vec::new();
    for n in 0..config.cluster.partitions {
        let state =
            holdfast_raft_store::StateMachine::open(&data_dir.partition(n).join("state.redb"))?;
        let entries: Vec<_> = state
            .entries()?
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "service": e.object.service,
                    "key": e.object.key,
                    "name": e.name,
                    "value": String::from_utf8_lossy(&e.value),
                })
            })
            .collect();
        partitions.push(serde_json::json!({
            "partition": n,
            "summary": state.summary()?,
            "entries": entries,
        }));
    }
    println!("{}", serde_json::json!({ "partitions": partitions }));
    Ok(())
}
