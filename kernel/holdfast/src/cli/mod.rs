//! The admin subcommands of `holdfast`: deployments, services, invocations, state, schedules,
//! limits, SQL and the cluster, each talking to a node's admin API through
//! [`crate::admin_client`].
//! Every one takes the connection options of [`AdminArgs`] and `--json`, which prints
//! machine-readable JSON instead of tables.

pub mod cluster;
pub mod control;
pub mod deployments;
pub mod filter;
pub mod invocations;
pub mod limits;
pub mod schedules;
pub mod services;
pub mod sql;
pub mod state;
pub mod table;

use crate::admin_client::{Admin, AdminUrl};
use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use std::io::Write as _;
use std::path::PathBuf;

/// How a command reaches a node's admin API, and how it prints. Global: they may follow the
/// subcommand (`holdfast invocations list --admin-url …`).
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Admin API and output")]
pub struct AdminArgs {
    /// The admin API's URL, `http://host:port` or `https://…`; wins over `--admin` and
    /// `--config`.
    #[arg(long, value_name = "URL", env = "HOLDFAST_ADMIN_URL", global = true)]
    admin_url: Option<AdminUrl>,
    /// The admin address of a node; default: `admin.bind_address` of the configuration, else
    /// `127.0.0.1:9070`.
    #[arg(long, value_name = "ADDR", global = true)]
    admin: Option<std::net::SocketAddr>,
    /// TOML configuration layered over the embedded single-node default; its
    /// `admin.bind_address` (and TLS) name the admin API.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Bearer token for an admin API with `admin.auth_tokens` set (prefer the environment
    /// variable: arguments are visible to other users of the machine).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HOLDFAST_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Speak HTTPS to `--admin` or the configured address (implied by `--ca-file`, and by
    /// `admin.tls_cert_file` in the configuration).
    #[arg(long, global = true)]
    https: bool,
    /// CA certificates (PEM) the admin API's certificate is verified with; default: the
    /// system's roots.
    #[arg(
        long,
        value_name = "FILE",
        env = "HOLDFAST_ADMIN_CA_FILE",
        global = true
    )]
    ca_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl AdminArgs {
    /// The admin API's URL: `--admin-url` (or `HOLDFAST_ADMIN_URL`), else `--admin`, else the
    /// configuration's `admin.bind_address` (the embedded default's `127.0.0.1:9070` without
    /// `--config`).
    fn url(&self) -> anyhow::Result<AdminUrl> {
        if let Some(url) = &self.admin_url {
            if self.https && !url.https {
                bail!("--https contradicts --admin-url {url}: use an https:// URL");
            }
            return Ok(url.clone());
        }
        let implied = self.https || self.ca_file.is_some();
        if let Some(address) = self.admin {
            return Ok(AdminUrl::of(address, implied));
        }
        let config = crate::load_config(self.config.as_deref())?;
        Ok(AdminUrl::of(
            config.admin.bind_address,
            implied || config.admin.tls.is_some(),
        ))
    }

    /// Runs `command` against the admin API these arguments name.
    pub fn run(&self, command: impl FnOnce(&Ctx<'_>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let ctx = Ctx {
            admin: Admin {
                url: self.url()?,
                token: self.token.as_deref(),
                ca_file: self.ca_file.as_deref(),
            },
            json: self.json,
        };
        command(&ctx)
    }
}

/// An admin subcommand group (`holdfast invocations …`): the connection options, then the
/// subcommand.
#[derive(clap::Args, Debug)]
pub struct AdminCommand<C: clap::Subcommand> {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: C,
}

impl<C: clap::Subcommand> AdminCommand<C> {
    /// Runs the subcommand with `run` against the admin API.
    pub fn run(self, run: impl FnOnce(&Ctx<'_>, C) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let Self { admin, command } = self;
        admin.run(|ctx| run(ctx, command))
    }
}

/// What a command runs with: the admin API and the output format.
pub struct Ctx<'a> {
    /// The admin API.
    pub admin: Admin<'a>,
    /// `--json`.
    pub json: bool,
}

/// The answer of `POST /query`.
#[derive(serde::Deserialize)]
struct QueryAnswer<T> {
    rows: Vec<T>,
}

/// Rows of a query, and whether the node cut them off (`[sql] max_rows` or `max_result_bytes`).
pub struct Rows<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// More rows matched than were sent.
    pub truncated: bool,
}

impl Ctx<'_> {
    /// Runs `sql` on the node (`POST /query`) and reads its rows as `T`.
    pub fn query<T: DeserializeOwned>(&self, sql: &str) -> anyhow::Result<Rows<T>> {
        let response =
            self.admin
                .send_json("POST", "/query", &serde_json::json!({ "query": sql }))?;
        let answer: QueryAnswer<T> =
            serde_json::from_str(&response.body).context("the admin API sent unexpected rows")?;
        Ok(Rows {
            rows: answer.rows,
            truncated: response.header("x-holdfast-truncated") == Some("true"),
        })
    }

    /// `GET path`, its body read as `T`; also the body itself, for `--json`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, String)> {
        let body = self.admin.get(path)?.body;
        Ok((parse(&body)?, body))
    }

    /// Prints `body` (JSON as the admin API sent it) with `--json`, else `text()`.
    pub fn print(&self, body: &str, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        if self.json {
            emit(&format!("{}\n", body.trim_end()))
        } else {
            emit(&text())
        }
    }

    /// Prints `value` as JSON with `--json`, else `text()`.
    pub fn print_value(
        &self,
        value: &impl serde::Serialize,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let body = if self.json {
            serde_json::to_string(value)?
        } else {
            String::new()
        };
        self.print(&body, text)
    }
}

/// A JSON body read as `T`.
pub fn parse<T: DeserializeOwned>(body: &str) -> anyhow::Result<T> {
    serde_json::from_str(body).context("the admin API sent unexpected JSON")
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `text` or `-` for a missing value.
pub fn or_dash(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

/// Percent-encodes a path segment (a service name, a deployment or invocation id).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("Notes"), "Notes");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
